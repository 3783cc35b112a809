"""The archive layout: a deterministic zip of a walked tree, its digest, and safe unpacking.

Archives are byte-identical for identical trees on any machine: entries sorted, fixed timestamps,
Unix permissions normalized to 0644/0755, and compression decided by the content alone.
The digest is the sha256 of the sorted manifest (path, mode, content sha256), so two trees get the
same digest exactly when they would unpack to the same files.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, cast

from runenv import store_layout
from runenv.digests import bytes_digest, file_digest, stream_digest
from runenv.diskfull import is_disk_full, writing
from runenv.errors import PackagingError, StorageError
from runenv.packaging.unpack import Budget, UnpackLimits, precheck
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


def zip_digest(archive: Path, limits: UnpackLimits | None = None) -> str:
    """The manifest digest of a zip runenv made (what its ``pkgs/<digest>.zip`` name claims),
    read within the limits of unpacking: a compression bomb is refused, not decompressed."""
    rows = []
    budget = Budget(archive, limits or UnpackLimits.from_settings())
    with zipfile.ZipFile(archive) as source:
        infos = source.infolist()
        budget.check_declared([i.filename for i in infos], [i.file_size for i in infos])
        for info in infos:
            if info.filename.endswith("/"):
                rows.append(_row(info.filename, None, ""))
                continue
            with source.open(info) as member:
                content_hash = stream_digest(cast("IO[bytes]", _Counted(member, budget)))
            mode = 0o755 if (info.external_attr >> 16) & stat.S_IXUSR else 0o644
            rows.append(_row(info.filename, mode, content_hash))
    return _digest_of(rows)


def verify_package(path: Path, name: str, source: str | None = None) -> None:
    """Check that a package file is what its content-addressed ``name`` says it is: an upload
    to a job server, or (``source`` being its URI) an archive fetched from a store."""
    try:
        claimed = store_layout.claimed_digest(name)
    except StorageError as error:
        raise PackagingError(error.message, hint=error.hint) from None
    if file_digest(str(path)) == claimed:  # a file stored as it is (a wheel, a user's zip)
        return
    try:
        if name.endswith(".zip") and zip_digest(path) == claimed:
            return
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError):
        pass  # not a readable zip: not what its name claims
    if source is None:
        raise PackagingError(
            f"the uploaded {name} does not match its digest",
            hint="the upload was corrupted or the name is wrong; upload it again",
        )
    raise PackagingError(
        f"{source} does not match the digest in its name: it was not used",
        hint="the stored copy is damaged or was replaced; package and upload the code again "
        "(a changed file gets a new name, so nothing else needs to change)",
    )


class _Counted:
    """A member's stream whose reads count against the unpacking budget."""

    def __init__(self, stream: IO[bytes], budget: Budget) -> None:
        self.stream = stream
        self.budget = budget

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.budget.add(len(chunk))
        return chunk


def verify_foreign_zip(path: Path, name: str) -> None:
    """Check a zip whose name says nothing runenv can verify (Ray's ``_ray_pkg_<hash>.zip``)
    as far as it can be without unpacking it: readable, within the bounds of unpacking, every
    name and link text inside its directory. (Unpacking it judges its links as a whole.)"""
    precheck(path)


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
    with (
        writing(destination, "the archive", PackagingError),
        zipfile.ZipFile(destination, "w", allowZip64=True) as archive,
    ):
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
        if is_disk_full(error):
            raise  # writing the archive failed, not reading this file
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
