"""Code packaging: a local directory or file becomes a content-addressed archive in a store.

``package_directory`` walks the tree (:mod:`.walk`), refuses it when it is over the size limit,
hashes the files through a stat-keyed cache (:mod:`.hashes`), and writes a deterministic zip
(:mod:`.archive`) named as :mod:`runenv.store_layout` says — unless the store already holds it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runenv import settings
from runenv.digests import file_digest
from runenv.errors import PackagingError
from runenv.packaging.archive import manifest_digest, write_zip
from runenv.packaging.hashes import HashCache, now_ns
from runenv.packaging.limits import check_size
from runenv.packaging.unpack import unpack
from runenv.packaging.walk import (
    DEFAULT_EXCLUDES,
    IGNORE_FILES,
    Excluded,
    Tree,
    single_file_tree,
    walk_tree,
)
from runenv.storage import PackageStore
from runenv.store_layout import archive_name, as_is_name

__all__ = [
    "DEFAULT_EXCLUDES",
    "Package",
    "hash_cache_path",
    "package_directory",
    "package_file",
    "unpack",
]


@dataclass
class Package:
    """A packaged directory or file, and what happened on the way."""

    digest: str
    uri: str
    uploaded: bool  # False when the store already held this archive
    total_bytes: int  # included content, before compression
    files: list[str] = field(default_factory=list)  # archive paths of the included files
    archive_bytes: int | None = None  # None when nothing was written
    excluded: Excluded = field(default_factory=Excluded)
    external_links: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files_read: int = 0  # how many files had to be read (the rest came from the hash cache)


def hash_cache_path() -> Path:
    return settings.runenv_home() / "cache" / "file-hashes-v1.sqlite"


def package_directory(
    root: Path,
    store: PackageStore,
    *,
    excludes: Sequence[str] = (),
    max_bytes: int | None = None,
    default_excludes: Sequence[str] = DEFAULT_EXCLUDES,
    top_level_directory: bool = False,
    compress: bool | None = None,
) -> Package:
    """Package ``root`` into ``store`` under its manifest digest (``pkgs/<digest>.zip``).

    ``top_level_directory`` keeps the directory's own name in the archive (py_modules packages).
    ``compress`` deflates what shrinks; by default only for stores across a network (s3, gs),
    since for a store on this machine it costs time both ways and saves nothing that matters.
    Nothing is written or uploaded when the tree is over ``max_bytes``
    (default ``RUNENV_MAX_PACKAGE_MB``, 100 MiB): a :class:`PackagingError` lists the largest paths.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise PackagingError(f"not a directory: {root}", hint="check the path")
    prefix = root.name + "/" if top_level_directory else ""
    tree = walk_tree(
        root,
        excludes=excludes,
        default_excludes=default_excludes,
        ignore_files=(".runenvignore",) if settings.ignore_gitignore() else IGNORE_FILES,
        prefix=prefix,
    )
    limit = settings.max_package_bytes() if max_bytes is None else max_bytes
    check_size(tree, limit)
    return _store_tree(tree, store, compress)


def package_file(path: Path, store: PackageStore) -> Package:
    """Package one ``.py`` file (a py_modules entry) into ``store``."""
    path = Path(path).resolve()
    if not path.is_file():
        raise PackagingError(f"not a file: {path}", hint="check the path")
    return _store_tree(single_file_tree(path, path.name), store)


def upload_file_as_is(path: Path, store: PackageStore) -> Package:
    """Upload a file that already is an archive (a ``.whl`` or ``.zip``), named by its sha256.

    A wheel keeps its file name (installers need it): ``pkgs/<sha256>/<name>.whl``.
    """
    path = Path(path).resolve()
    digest = file_digest(str(path))
    name = as_is_name(digest, path.name)
    uploaded = not store.exists(name)
    if uploaded:
        store.put_file(path, name)
    size = path.stat().st_size
    return Package(digest, store.uri(name), uploaded, size, [path.name], archive_bytes=size)


def _store_tree(tree: Tree, store: PackageStore, compress: bool | None = None) -> Package:
    cache = HashCache(hash_cache_path())
    try:
        cached = cache.lookup(tree.files)
        package = _package_from_cache(tree, store, cached)
        if package is None:
            deflate = not store.is_local if compress is None else compress
            package = _write_and_upload(tree, store, cache, deflate)
    finally:
        cache.close()
    package.files = [entry.path for entry in tree.files]
    package.excluded = tree.excluded
    package.external_links = tree.external_links
    package.skipped = tree.skipped
    return package


def _package_from_cache(tree: Tree, store: PackageStore, cached: dict[str, str]) -> Package | None:
    """When every hash is cached and the store has the archive: done without reading a file."""
    if len(cached) < len(tree.files):
        return None
    digest = manifest_digest(tree, {entry.path: cached[entry.source] for entry in tree.files})
    name = archive_name(digest)
    if not store.exists(name):
        return None
    return Package(digest, store.uri(name), uploaded=False, total_bytes=tree.total_bytes)


def _write_and_upload(tree: Tree, store: PackageStore, cache: HashCache, compress: bool) -> Package:
    """One pass over the files: hash and compress them together, then upload if new."""
    staging = store.staging_directory()
    with tempfile.TemporaryDirectory(prefix="runenv-package-", dir=staging) as scratch:
        archive = Path(scratch) / "package.zip"
        started = now_ns()
        hashes = write_zip(tree, archive, compress=compress)
        for entry in tree.files:
            cache.record(entry, hashes[entry.path], started)
        digest = manifest_digest(tree, hashes)
        name = archive_name(digest)
        archive_bytes = archive.stat().st_size
        uploaded = not store.exists(name)
        if uploaded:
            store.put_file(archive, name, move=True)
        return Package(
            digest,
            store.uri(name),
            uploaded=uploaded,
            total_bytes=tree.total_bytes,
            archive_bytes=archive_bytes,
            files_read=len(tree.files),
        )
