"""runenv.digests: one sha256 of files and streams, one canonical JSON, one key."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from runenv.digests import (
    CHUNK_BYTES,
    bytes_digest,
    canonical_json,
    file_digest,
    key_of,
    stream_digest,
)


def test_file_digest_over_several_chunks(tmp_path: Path) -> None:
    content = bytes(range(256)) * (CHUNK_BYTES * 5 // 2 // 256)
    (tmp_path / "f").write_bytes(content)
    assert file_digest(str(tmp_path / "f")) == hashlib.sha256(content).hexdigest()
    assert bytes_digest(content) == hashlib.sha256(content).hexdigest()


def test_stream_digest_counts_the_head_and_copies_everything() -> None:
    content = b"x" * (CHUNK_BYTES + 7)
    source = io.BytesIO(content)
    head = source.read(10)
    copy = io.BytesIO()
    assert stream_digest(source, copy_to=copy, head=head) == hashlib.sha256(content).hexdigest()
    assert copy.getvalue() == content
    assert stream_digest(io.BytesIO(b"")) == hashlib.sha256(b"").hexdigest()


def test_canonical_json_and_key() -> None:
    assert canonical_json({"b": [1, "é"], "a": None}) == '{"a":null,"b":[1,"é"]}'
    assert key_of({"b": 1, "a": 2}) == key_of({"a": 2, "b": 1})
    assert key_of({"a": 2}) == hashlib.sha256(b'{"a":2}').hexdigest()
    assert key_of({"uri": "s3://b/x.zip"}) != key_of({"uri": "s3://b/y.zip"})
