"""Telling URIs from local paths, and which archives a URI names."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")

# Where code archives can be fetched from, and where they can be uploaded to.
DOWNLOAD_SCHEMES = frozenset({"s3", "gs", "gcs", "http", "https", "file", "memory"})
UPLOAD_SCHEMES = frozenset({"s3", "gs", "gcs", "file", "memory"})
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
WHEEL_SUFFIX = ".whl"


def scheme_of(location: str) -> str | None:
    """The URI scheme of ``location`` in lower case, or None for a plain path."""
    match = _SCHEME.match(location)
    return match.group(1).lower() if match else None


def archive_suffix(uri: str) -> str | None:
    """The archive suffix of a URI's path (query and fragment ignored), or None."""
    parts = urlsplit(uri)
    path = (parts.path or parts.netloc).lower()  # Ray's gcs://_ray_pkg_<hash>.zip has no path
    for suffix in (*ARCHIVE_SUFFIXES, WHEEL_SUFFIX):
        if path.endswith(suffix):
            return suffix
    return None
