"""Digests and keys, one way each: sha256 in hex, and keys as the digest of canonical JSON.

- :func:`file_digest`, :func:`bytes_digest`, and :func:`stream_digest` (which may copy too)
- :func:`canonical_json` — the one canonical form of a JSON value (sorted keys, no spaces, UTF-8)
- :func:`key_of` — the key of a JSON value: an env's key, a cache entry's key.
"""

from __future__ import annotations

import hashlib
import json
from typing import IO, Any

CHUNK_BYTES = 1024 * 1024


def bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stream_digest(stream: IO[bytes], *, copy_to: IO[bytes] | None = None, head: bytes = b"") -> str:
    """The digest of ``head`` and then everything left in ``stream``, read in chunks.

    With ``copy_to`` what is read is also written there (hashing and copying in one pass).
    """
    digest = hashlib.sha256()
    chunk = head or stream.read(CHUNK_BYTES)
    while chunk:
        digest.update(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
        chunk = stream.read(CHUNK_BYTES)
    return digest.hexdigest()


def file_digest(path: str) -> str:
    with open(path, "rb") as handle:
        return stream_digest(handle)


def canonical_json(value: Any) -> str:
    """Keys sorted, no spaces, non-ASCII kept: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def key_of(value: Any) -> str:
    """The key of a JSON value: the digest of its canonical JSON."""
    return bytes_digest(canonical_json(value).encode())
