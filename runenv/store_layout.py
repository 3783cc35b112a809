"""Where packages live in a store, in one place: object names, and digests from names and URIs.

- a directory runenv packaged: ``pkgs/<manifest digest>.zip`` (see :mod:`runenv.packaging.archive`)
- a file uploaded as it is: ``pkgs/<sha256 of the file><suffix>``; a wheel keeps its file name,
  which installers need: ``pkgs/<sha256>/<name>.whl``

A job server serves the same names under ``/api/packages/<name without pkgs/>``. Packages that
Ray's job client uploads (``/api/packages/gcs/_ray_pkg_<hex>.zip``) are named by Ray's own hash
of the directory, which runenv cannot check against the zip: they live apart, as
``ray-pkgs/_ray_pkg_<hex>.zip``, and are never taken for runenv's content-addressed packages.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from runenv.errors import StorageError
from runenv.uris import WHEEL_SUFFIX

PREFIX = "pkgs"
WHEELS_PREFIX = "wheels"  # the wheelhouse: files a lock names, ``wheels/<sha256>/<file name>``
ENVS_PREFIX = "envs"  # prebuilt envs: ``envs/<env key>-<platform>.json`` naming an archive
RAY_PREFIX = "ray-pkgs"
RAY_PROTOCOL = "gcs"  # what Ray's client names its package store in URIs and upload paths

_DIGEST = "[0-9a-f]{64}"
_NAME = re.compile(rf"^{PREFIX}/({_DIGEST})(?:\.zip|/[^/]+\.whl)$")
_WHEELHOUSE_NAME = re.compile(rf"^{WHEELS_PREFIX}/({_DIGEST})/[^/]+\.(?:whl|tar\.gz|zip)$")
_RUNENV_ARCHIVE = re.compile(rf"/{PREFIX}/({_DIGEST})\.zip$")
_RAY_PACKAGE = re.compile(r"^_ray_pkg_[0-9a-f]{1,64}\.zip$")
_RAY_ARCHIVE = re.compile(rf"/{RAY_PREFIX}/_ray_pkg_[0-9a-f]{{1,64}}\.zip$")


def archive_name(digest: str) -> str:
    """The name of a directory packaged by runenv, whose manifest digest is ``digest``."""
    return f"{PREFIX}/{digest}.zip"


def as_is_name(digest: str, filename: str) -> str:
    """The name of a file uploaded as it is (a ``.zip``, a wheel), ``digest`` being its sha256."""
    suffix = PurePosixPath(filename).suffix
    if suffix == WHEEL_SUFFIX:
        return f"{PREFIX}/{digest}/{filename}"
    return f"{PREFIX}/{digest}{suffix}"


def wheelhouse_name(digest: str, filename: str) -> str:
    """The name of a file a lock names (a wheel or an sdist), ``digest`` being its sha256."""
    return f"{WHEELS_PREFIX}/{digest}/{filename}"


def claimed_digest(name: str) -> str:
    """The digest a package's name claims; a StorageError for a name that is not a package's."""
    match = _NAME.match(name) or _WHEELHOUSE_NAME.match(name)
    if match is None:
        raise StorageError(
            f"not a package name: {name!r}",
            hint=f"packages are named {PREFIX}/<sha256>.zip or {PREFIX}/<sha256>/<name>.whl",
        )
    return match.group(1)


def served_path(name: str) -> str:
    """What follows ``/api/packages/`` on a job server for the package ``name``."""
    claimed_digest(name)
    return name.removeprefix(f"{PREFIX}/")


def name_from_served_path(path: str) -> str:
    """The package name a job server's ``/api/packages/<path>`` stands for (checked)."""
    name = f"{PREFIX}/{path}"
    claimed_digest(name)
    return name


def package_name_in_uri(uri: str) -> str | None:
    """The package name a store URI ends with (``.../pkgs/<sha256>.zip``, a wheel's
    ``.../pkgs/<sha256>/<name>.whl``), else None: such objects are checked by their digest."""
    path = urlsplit(uri).path
    for depth in (2, 3):  # pkgs/<digest>.zip, pkgs/<digest>/<name>.whl
        name = "/".join(path.split("/")[-depth:])
        if _NAME.match(name) or _WHEELHOUSE_NAME.match(name):
            return name
    return None


def runenv_archive_digest(uri: str) -> str | None:
    """The digest in a URI of the form ``.../pkgs/<sha256>.zip``, else None.

    Such archives hold a directory's content at their root (no top-level directory to lift).
    """
    match = _RUNENV_ARCHIVE.search(urlsplit(uri).path)
    return match.group(1) if match else None


def ray_package_name(protocol: str, package: str) -> str:
    """The store name of the package Ray's client calls ``<protocol>://<package>``."""
    if protocol != RAY_PROTOCOL or not _RAY_PACKAGE.match(package):
        raise StorageError(
            f"not a Ray package: {protocol}://{package}",
            hint=f"Ray's packages are named {RAY_PROTOCOL}://_ray_pkg_<hex>.zip",
        )
    return f"{RAY_PREFIX}/{package}"


def holds_content_at_root(uri: str) -> bool:
    """Whether the archive at ``uri`` holds a directory's content at its root, as runenv's own
    archives and those Ray's client uploads do: no single top-level directory to lift."""
    path = urlsplit(uri).path
    return bool(_RUNENV_ARCHIVE.search(path) or _RAY_ARCHIVE.search(path))
