"""The archive layout: a deterministic zip of a walked tree, its digest, and safe unpacking.

Archives are byte-identical for identical trees on any machine: entries sorted, fixed timestamps,
Unix permissions normalized to 0644/0755, and compression decided by the content alone.
The digest is the sha256 of the sorted manifest (path, mode, content sha256), so two trees get the
same digest exactly when they would unpack to the same files.
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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runenv import store_layout
from runenv.digests import CHUNK_BYTES, bytes_digest, file_digest, stream_digest
from runenv.errors import PackagingError, RunenvError, StorageError, UnsafeArchiveError
from runenv.packaging.walk import FileEntry, Tree

MANIFEST_VERSION = "runenv-manifest-v1"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
COMPRESS_LEVEL = 1  # gzip -1: 5x the speed of level 6 for ~15% larger text
# Content that deflate shrinks by less than this is stored as is (already compressed data).
_STORE_RATIO = 0.9
_SAMPLE_BYTES = 64 * 1024
_SAMPLED_FROM_BYTES = 256 * 1024
# ZipInfo's per-entry level: public since Python 3.13, private before.
_LEVEL_ATTRIBUTE = (
    "compress_level" if hasattr(zipfile.ZipInfo, "compress_level") else "_compresslevel"
)


def file_mode(entry: FileEntry) -> int:
    return 0o755 if entry.executable else 0o644


def manifest_digest(tree: Tree, hashes: Mapping[str, str]) -> str:
    """sha256 over the sorted manifest of ``tree``; ``hashes`` maps paths to content hashes."""
    rows = [_row(path, None, "") for path in tree.directories]
    rows += [_row(e.path, file_mode(e), hashes[e.path]) for e in tree.files]
    return _digest_of(rows)


def zip_digest(archive: Path) -> str:
    """The manifest digest of a zip runenv made (what its ``pkgs/<digest>.zip`` name claims)."""
    rows = []
    with zipfile.ZipFile(archive) as source:
        for info in source.infolist():
            if info.filename.endswith("/"):
                rows.append(_row(info.filename, None, ""))
                continue
            with source.open(info) as member:
                content_hash = stream_digest(member)
            mode = 0o755 if (info.external_attr >> 16) & stat.S_IXUSR else 0o644
            rows.append(_row(info.filename, mode, content_hash))
    return _digest_of(rows)


def verify_package(path: Path, name: str) -> None:
    """Check that an uploaded file is what its content-addressed ``name`` says it is."""
    try:
        claimed = store_layout.claimed_digest(name)
    except StorageError as error:
        raise PackagingError(error.message, hint=error.hint) from None
    if file_digest(str(path)) == claimed:  # a file stored as it is (a wheel, a user's zip)
        return
    try:
        if name.endswith(".zip") and zip_digest(path) == claimed:
            return
    except (zipfile.BadZipFile, OSError):
        pass
    raise PackagingError(
        f"the uploaded {name} does not match its digest",
        hint="the upload was corrupted or the name is wrong; upload it again",
    )


def verify_foreign_zip(path: Path, name: str, max_bytes: int) -> None:
    """Check a zip whose name says nothing runenv can verify (Ray's ``_ray_pkg_<hash>.zip``):
    a zip, no entry that would unpack outside its directory, at most ``max_bytes`` unpacked."""
    try:
        with zipfile.ZipFile(path) as source:
            unpacked = sum(info.file_size for info in source.infolist())
            if unpacked > max_bytes:
                raise PackagingError(
                    f"{name} unpacks to {unpacked} bytes, over the limit of {max_bytes}",
                    hint="raise RUNENV_MAX_PACKAGE_MB on the server, or exclude large files",
                )
            root = "/" + uuid.uuid4().hex  # names are checked against a root; nothing is written
            for member in _zip_members(source):
                _safe_target(root, member.name)
                if member.kind == "symlink":
                    _check_link(root, member.name, member.link)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        raise PackagingError(
            f"the uploaded {name} is not a readable zip: {error}",
            hint="upload it again",
        ) from None


def _row(path: str, mode: int | None, content_hash: str) -> str:
    # One line per entry: path NUL mode NUL content hash (a path never holds a NUL).
    return f"{path}\0dir\0" if mode is None else f"{path}\0{mode:o}\0{content_hash}"


def _digest_of(rows: list[str]) -> str:
    manifest = "\n".join([MANIFEST_VERSION, *sorted(rows)]) + "\n"
    return bytes_digest(manifest.encode("utf-8", "surrogateescape"))


def write_zip(tree: Tree, destination: Path, *, compress: bool = True) -> dict[str, str]:
    """Write ``tree`` as a deterministic zip; returns each file's content sha256 by path.

    With ``compress``, files that shrink are deflated (for uploads over a network); without it
    every entry is stored, which is faster when the archive stays on this machine.
    """
    hashes: dict[str, str] = {}
    entries: list[tuple[str, FileEntry | None]] = [(path, None) for path in tree.directories]
    entries += [(entry.path, entry) for entry in tree.files]
    with zipfile.ZipFile(destination, "w", allowZip64=True) as archive:
        for path, entry in sorted(entries, key=lambda item: item[0]):
            if entry is None:
                archive.writestr(_directory_info(path), b"")
            else:
                hashes[path] = _write_file(archive, entry, compress)
    return hashes


def _write_file(archive: zipfile.ZipFile, entry: FileEntry, compress: bool) -> str:
    with _reading(entry), open(entry.source, "rb") as source:
        head = source.read(_SAMPLE_BYTES)
        info = _file_info(entry, compress and _worth_compressing(entry.size, head))
        with archive.open(info, "w", force_zip64=entry.size > 2**31) as sink:
            return stream_digest(source, copy_to=sink, head=head)


@contextmanager
def _reading(entry: FileEntry) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise PackagingError(
            f"cannot read {entry.source}: {error.strerror}",
            hint="fix its permissions, or leave it out with `excludes`",
        ) from None


def _directory_info(path: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, date_time=ZIP_EPOCH)
    info.create_system = 3  # Unix, so external_attr carries the mode
    info.external_attr = ((stat.S_IFDIR | 0o755) << 16) | 0x10
    return info


def _file_info(entry: FileEntry, deflate: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(entry.path, date_time=ZIP_EPOCH)
    info.create_system = 3
    info.external_attr = (stat.S_IFREG | file_mode(entry)) << 16
    info.file_size = entry.size
    if deflate:
        info.compress_type = zipfile.ZIP_DEFLATED
        setattr(info, _LEVEL_ATTRIBUTE, COMPRESS_LEVEL)
    return info


def _worth_compressing(size: int, head: bytes) -> bool:
    """Small files are deflated; a large one only if its head shrinks (not media, weights)."""
    if size < _SAMPLED_FROM_BYTES:
        return size > 0
    return len(zlib.compress(head, 1)) < _STORE_RATIO * len(head)


# ---------------------------------------------------------------------------------------------
# Unpacking


def unpack(archive: Path, destination: Path, *, lift_single_directory: bool = False) -> Path:
    """Unpack a .zip or .tar.gz into ``destination``, which must not exist yet.

    Entries with absolute paths, ``..`` or links leading outside are refused with
    :class:`UnsafeArchiveError`. Everything is unpacked into a temporary directory beside
    ``destination`` and renamed into place, so ``destination`` appears complete or not at all.
    With ``lift_single_directory``, an archive holding one top-level directory is unpacked
    without it (Ray's rule for remote working_dir archives).
    """
    if destination.exists():
        raise FileExistsError(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.parent / f".{destination.name}.unpack-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        _extract(archive, staging)
        os.rename(_lifted(staging) if lift_single_directory else staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def _extract(archive: Path, staging: Path) -> None:
    root = str(staging.resolve())
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as source:
                _write_members(_zip_members(source), root)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as source:
                _write_members(_tar_members(source), root)
        else:
            raise PackagingError(
                f"{archive} is not a zip or tar archive",
                hint="code archives must be .zip, .tar.gz or .tgz files",
            )
    except RunenvError:
        raise
    # Corrupt data, encryption, an unknown compression, two entries claiming one name...
    except (
        zipfile.BadZipFile,
        tarfile.TarError,
        zlib.error,
        EOFError,
        RuntimeError,
        NotImplementedError,
        OSError,
    ) as error:
        raise PackagingError(
            f"cannot unpack {archive}: {error}", hint="check the archive, or upload it again"
        ) from None


def _lifted(staging: Path) -> Path:
    children = list(staging.iterdir())
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        return children[0]
    return staging


@dataclass(frozen=True)
class _Member:
    """An archive entry, whatever the archive format."""

    name: str
    kind: str  # "dir", "file", "symlink" or "hardlink"
    link: str = ""  # a symlink's text, or the entry a hard link points to
    executable: bool = False
    content: Callable[[], IO[bytes]] | None = None


def _zip_members(source: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in source.infolist():
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            link = source.read(info).decode("utf-8", errors="replace")
            members.append(_Member(info.filename, "symlink", link))
        elif info.filename.endswith(("/", "\\")):
            members.append(_Member(info.filename, "dir"))
        else:
            opener = functools.partial(source.open, info)
            members.append(_Member(info.filename, "file", "", bool(mode & stat.S_IXUSR), opener))
    return members


def _tar_members(source: tarfile.TarFile) -> list[_Member]:
    members = []
    for info in source.getmembers():
        if info.isdir():
            members.append(_Member(info.name, "dir"))
        elif info.issym():
            members.append(_Member(info.name, "symlink", info.linkname))
        elif info.islnk():
            members.append(_Member(info.name, "hardlink", info.linkname))
        elif info.isfile():
            opener = functools.partial(_tar_stream, source, info)
            members.append(_Member(info.name, "file", "", bool(info.mode & stat.S_IXUSR), opener))
        else:
            raise UnsafeArchiveError(
                f"archive entry {info.name!r} is a device or special file",
                hint="code archives may hold only files, directories and links",
            )
    return members


def _write_members(members: list[_Member], root: str) -> None:
    """Directories and files first, while no link exists that a path could pass through; links
    last, each checked against what is on disk, so no chain of links can lead outside."""
    for member in members:  # every name checked before anything is written
        _safe_target(root, member.name)
        if member.kind == "symlink":
            _check_link(root, member.name, member.link)
        elif member.kind == "hardlink":
            _safe_target(root, member.link)
    for member in members:
        target = _safe_target(root, member.name)
        if member.kind == "dir":
            os.makedirs(target, exist_ok=True)
        elif member.kind == "file":
            _write_file_member(member, target)
    for member in members:
        if member.kind in ("symlink", "hardlink"):
            _write_link_member(member, root)


def _write_file_member(member: _Member, target: str) -> None:
    assert member.content is not None
    os.makedirs(os.path.dirname(target), exist_ok=True)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with member.content() as data, open(descriptor, "wb") as sink:
        shutil.copyfileobj(data, sink, CHUNK_BYTES)
    os.chmod(target, 0o755 if member.executable else 0o644)


def _write_link_member(member: _Member, root: str) -> None:
    target = _safe_target(root, member.name)
    parent = os.path.dirname(target)
    if os.path.realpath(parent) != parent:  # the entry's own path goes through a link
        raise _outside(member.name)
    os.makedirs(parent, exist_ok=True)
    if member.kind == "symlink":
        resolved = os.path.realpath(os.path.join(parent, member.link))
        if not _is_inside(root, resolved):
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


def _safe_target(root: str, name: str) -> str:
    """The path an entry unpacks to, refusing absolute paths and ``..``."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
        raise _outside(name)
    target = os.path.normpath(os.path.join(root, *[part for part in parts if part]))
    if not _is_inside(root, target):
        raise _outside(name)
    return target


def _check_link(root: str, name: str, link: str) -> None:
    directory = os.path.dirname(os.path.join(root, name.replace("\\", "/")))
    resolved = os.path.normpath(link if os.path.isabs(link) else os.path.join(directory, link))
    if not _is_inside(root, resolved):
        raise _link_outside(name, link)


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
