"""Unpacking an archive nobody vouches for: bounded, inside its directory, checked as a whole.

An archive may come from a bucket anyone can write to, so unpacking assumes the worst:

- **Bounded.** Before anything is written: the entry count, each path's depth, the sizes the
  archive declares and their compression ratio. While writing: the bytes actually produced,
  against the total and against the archive's own size (a header can lie; the stream cannot).
- **Inside.** No entry may be absolute or hold ``..``; links are written last, and once every
  entry is in place every link in the tree is resolved as the kernel would, through any chain
  of other links, whatever the order the archive listed them in: one that leads outside refuses
  the whole archive.
- **All or nothing.** Everything goes into a staging directory renamed into place at the end.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import tarfile
import uuid
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runenv import settings
from runenv.digests import CHUNK_BYTES
from runenv.diskfull import disk_full_error, is_disk_full
from runenv.errors import PackagingError, RunenvError, UnsafeArchiveError
from runenv.units import human_bytes

# Below this many bytes produced, no ratio is judged: small archives of padding are harmless.
RATIO_FREE_BYTES = 1 << 20


@dataclass(frozen=True)
class UnpackLimits:
    """What one archive may expand to (each from a setting; see :mod:`runenv.settings`)."""

    max_bytes: int
    max_entries: int
    max_depth: int
    max_ratio: float

    @classmethod
    def from_settings(cls) -> UnpackLimits:
        return cls(
            max_bytes=settings.max_unpack_bytes(),
            max_entries=settings.max_unpack_entries(),
            max_depth=settings.max_unpack_depth(),
            max_ratio=settings.max_compression_ratio(),
        )


class Budget:
    """Bytes produced while unpacking (or reading) an archive, against its limits."""

    def __init__(self, archive: Path, limits: UnpackLimits) -> None:
        self.archive = archive
        self.limits = limits
        self.archive_bytes = max(archive.stat().st_size, 1)
        self.produced = 0

    def check_declared(self, names: list[str], sizes: list[int]) -> None:
        """What the archive says about itself, before a byte is decompressed."""
        if len(names) > self.limits.max_entries:
            raise self._over(
                f"holds {len(names)} entries, over the limit of {self.limits.max_entries}",
                "RUNENV_MAX_UNPACK_ENTRIES",
            )
        for name in names:
            depth = len([part for part in name.replace("\\", "/").split("/") if part])
            if depth > self.limits.max_depth:
                raise self._over(
                    f"holds an entry {depth} directories deep, over the limit of "
                    f"{self.limits.max_depth} ({name[:80]!r}…)",
                    "RUNENV_MAX_UNPACK_DEPTH",
                )
        self.check(sum(sizes), declared=True)

    def add(self, count: int) -> None:
        self.produced += count
        self.check(self.produced)

    def check(self, total: int, *, declared: bool = False) -> None:
        said = "declares" if declared else "expands to"
        if total > self.limits.max_bytes:
            raise self._over(
                f"{said} over {human_bytes(self.limits.max_bytes)}", "RUNENV_MAX_UNPACK_MB"
            )
        ratio = total / self.archive_bytes
        if total > RATIO_FREE_BYTES and ratio > self.limits.max_ratio:
            raise self._over(
                f"{said} over {self.limits.max_ratio:g} times its own size "
                f"({human_bytes(self.archive_bytes)}): a compression bomb?",
                "RUNENV_MAX_COMPRESSION_RATIO",
            )

    def copy(self, source: IO[bytes], sink: IO[bytes] | None) -> None:
        """Copy (or, without a sink, read through) ``source``, counting what it produces."""
        while chunk := source.read(CHUNK_BYTES):
            self.add(len(chunk))
            if sink is not None:
                sink.write(chunk)

    def _over(self, what: str, setting: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"the archive {self.archive.name} {what}; it was not unpacked",
            hint=f"if the archive is genuine, raise the limit with {setting}; else do not use it",
        )


def unpack(
    archive: Path,
    destination: Path,
    *,
    lift_single_directory: bool = False,
    limits: UnpackLimits | None = None,
) -> Path:
    """Unpack a .zip or .tar.gz into ``destination``, which must not exist yet.

    With ``lift_single_directory``, an archive holding one top-level directory is unpacked
    without it (Ray's rule for remote working_dir archives).
    """
    if destination.exists():
        raise FileExistsError(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.parent / f".{destination.name}.unpack-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        budget = Budget(archive, limits or UnpackLimits.from_settings())
        with _Opened(archive, budget) as members:
            _write_members(members, str(staging.resolve()), budget)
        placed = _lifted(staging) if lift_single_directory else staging
        check_links_inside(placed, staging)  # where the tree ends up: lifting moves its top
        os.rename(placed, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def precheck(archive: Path, limits: UnpackLimits | None = None) -> None:
    """What can be judged of an archive without writing it anywhere: readable, within the
    bounds it declares, every entry's name and every link's text inside its directory."""
    root = "/" + uuid.uuid4().hex  # names are judged against a root; nothing is written there
    with _Opened(archive, Budget(archive, limits or UnpackLimits.from_settings())) as members:
        _check_names(members, root)


def check_links_inside(root: Path, names_from: Path | None = None) -> None:
    """Every symbolic link under ``root`` resolves inside it (through any chain of links).
    An offending link is named relative to ``names_from`` (the archive's own root)."""
    top = os.path.realpath(root)
    named_from = os.path.realpath(names_from or root)
    for directory, subdirectories, files in os.walk(top):  # os.walk never follows links
        for name in (*subdirectories, *files):
            path = os.path.join(directory, name)
            if os.path.islink(path) and not _is_inside(top, os.path.realpath(path)):
                link = os.readlink(path)
                raise _link_outside(os.path.relpath(path, named_from), link)


@dataclass(frozen=True)
class Member:
    """An archive entry, whatever the archive format."""

    name: str
    kind: str  # "dir", "file", "symlink" or "hardlink"
    link: str = ""  # a symlink's text, or the entry a hard link points to
    executable: bool = False
    content: Callable[[], IO[bytes]] | None = None


@functools.lru_cache(maxsize=1)
def _archive_errors() -> tuple[type[BaseException], ...]:
    # Corrupt data, encryption, an unknown compression, two entries claiming one name...
    return (
        zipfile.BadZipFile,
        tarfile.TarError,
        zlib.error,
        EOFError,
        RuntimeError,
        NotImplementedError,
        OSError,
        UnicodeDecodeError,
    )


class _Opened:
    """The members of an archive, its file open while they are read."""

    def __init__(self, archive: Path, budget: Budget) -> None:
        self.archive = archive
        self.budget = budget
        self.source: zipfile.ZipFile | tarfile.TarFile | None = None

    def __enter__(self) -> list[Member]:
        try:
            if zipfile.is_zipfile(self.archive):
                zipped = self.source = zipfile.ZipFile(self.archive)
                infos = zipped.infolist()
                self.budget.check_declared(
                    [info.filename for info in infos], [info.file_size for info in infos]
                )
                return zip_members(zipped)
            if tarfile.is_tarfile(self.archive):
                tarred = self.source = tarfile.open(self.archive)
                headers = tarred.getmembers()
                self.budget.check_declared([h.name for h in headers], [h.size for h in headers])
                return _tar_members(tarred, headers)
        except RunenvError:
            self.__exit__()
            raise
        except _archive_errors() as error:
            self.__exit__()
            raise _unreadable(self.archive, error) from None
        raise PackagingError(
            f"{self.archive} is not a zip or tar archive",
            hint="code archives must be .zip, .tar.gz or .tgz files",
        )

    def __exit__(self, *exc_info: object) -> None:
        if self.source is not None:
            self.source.close()


def zip_members(source: zipfile.ZipFile) -> list[Member]:
    members = []
    for info in source.infolist():
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            if info.file_size > 4096:
                raise UnsafeArchiveError(f"archive entry {info.filename!r} is a link too long")
            link = source.read(info).decode("utf-8", errors="replace")
            members.append(Member(info.filename, "symlink", link))
        elif info.filename.endswith(("/", "\\")):
            members.append(Member(info.filename, "dir"))
        else:
            opener = functools.partial(source.open, info)
            members.append(Member(info.filename, "file", "", bool(mode & stat.S_IXUSR), opener))
    return members


def _tar_members(source: tarfile.TarFile, headers: list[tarfile.TarInfo]) -> list[Member]:
    members = []
    for info in headers:
        if info.isdir():
            members.append(Member(info.name, "dir"))
        elif info.issym():
            members.append(Member(info.name, "symlink", info.linkname))
        elif info.islnk():
            members.append(Member(info.name, "hardlink", info.linkname))
        elif info.isfile():
            opener = functools.partial(_tar_stream, source, info)
            members.append(Member(info.name, "file", "", bool(info.mode & stat.S_IXUSR), opener))
        else:
            raise UnsafeArchiveError(
                f"archive entry {info.name!r} is a device or special file",
                hint="code archives may hold only files, directories and links",
            )
    return members


def _write_members(members: list[Member], root: str, budget: Budget) -> None:
    """Names checked first, then directories and files, then links (so no path is written
    through a link); the finished tree's links are judged as a whole by the caller."""
    _check_names(members, root)
    try:
        for member in members:
            target = _safe_target(root, member.name)
            if member.kind == "dir":
                os.makedirs(target, exist_ok=True)
            elif member.kind == "file":
                _write_file_member(member, target, budget)
        for member in members:
            if member.kind in ("symlink", "hardlink"):
                _write_link_member(member, root)
    except RunenvError:
        raise
    except _archive_errors() as error:
        if isinstance(error, OSError) and is_disk_full(
            error
        ):  # not the archive's fault: say where the space ran out
            raise disk_full_error(root, "into", error, PackagingError) from None
        raise _unreadable(Path(budget.archive), error) from None


def _check_names(members: list[Member], root: str) -> None:
    """Every entry's name, and every link's text, inside ``root`` (before anything is written)."""
    for member in members:
        _safe_target(root, member.name)
        if member.kind == "symlink":
            _check_link_text(root, member.name, member.link)
        elif member.kind == "hardlink":
            _safe_target(root, member.link)


def _write_file_member(member: Member, target: str, budget: Budget) -> None:
    assert member.content is not None
    os.makedirs(os.path.dirname(target), exist_ok=True)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with member.content() as data, open(descriptor, "wb") as sink:
        budget.copy(data, sink)
    os.chmod(target, 0o755 if member.executable else 0o644)


def _write_link_member(member: Member, root: str) -> None:
    target = _safe_target(root, member.name)
    parent = os.path.dirname(target)
    if os.path.realpath(parent) != parent:  # the entry's own path goes through a link
        raise _outside(member.name)
    os.makedirs(parent, exist_ok=True)
    if member.kind == "symlink":
        # What it resolves to now; links written after it are judged with the whole tree.
        if not _is_inside(root, os.path.realpath(os.path.join(parent, member.link))):
            raise _link_outside(member.name, member.link)
        os.symlink(member.link, target)
        return
    source = _safe_target(root, member.link)
    if os.path.realpath(source) != source or not os.path.isfile(source):
        raise _link_outside(member.name, member.link)
    os.link(source, target)


def _tar_stream(source: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    data = source.extractfile(member)
    if data is None:
        raise UnsafeArchiveError(f"archive entry {member.name!r} has no data")
    return data


def _lifted(staging: Path) -> Path:
    children = list(staging.iterdir())
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        return children[0]
    return staging


def _safe_target(root: str, name: str) -> str:
    """The path an entry unpacks to, refusing absolute paths and ``..``."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
        raise _outside(name)
    if "\0" in name:
        raise _outside(name)
    target = os.path.normpath(os.path.join(root, *[part for part in parts if part]))
    if not _is_inside(root, target):
        raise _outside(name)
    return target


def _check_link_text(root: str, name: str, link: str) -> None:
    """A first, cheap refusal of links whose text alone leads outside."""
    directory = os.path.dirname(os.path.join(root, name.replace("\\", "/")))
    resolved = os.path.normpath(link if os.path.isabs(link) else os.path.join(directory, link))
    if not _is_inside(root, resolved) or "\0" in link:
        raise _link_outside(name, link)


def _unreadable(archive: Path, error: BaseException) -> PackagingError:
    return PackagingError(
        f"cannot unpack {archive}: {error}", hint="check the archive, or upload it again"
    )


def _outside(name: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"archive entry {name!r} points outside the directory it is unpacked into",
        hint="the archive may be malicious; it was not unpacked",
    )


def _link_outside(name: str, link: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"archive entry {name!r} is a link to {link!r}, outside the directory it is unpacked into",
        hint="the archive may be malicious; it was not unpacked",
    )


def _is_inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root
