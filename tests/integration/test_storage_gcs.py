"""Store against a GCS emulator (gcp-storage-emulator), found through STORAGE_EMULATOR_HOST."""

from __future__ import annotations

from pathlib import Path

import pytest

from runenv.errors import StorageError
from runenv.storage import Store, download

NAME = "pkgs/0123abcd.zip"


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    source = tmp_path / "payload.zip"
    source.write_bytes(b"zip bytes " * 1000)
    return source


def test_round_trip(gcs_bucket: str, payload: Path, tmp_path: Path) -> None:
    store = Store(f"gs://{gcs_bucket}/runenv/")
    assert store.base_uri == f"gs://{gcs_bucket}/runenv"
    assert not store.exists(NAME)
    assert store.put_file(payload, NAME) == f"gs://{gcs_bucket}/runenv/{NAME}"
    assert store.exists(NAME)
    store.get_file(NAME, tmp_path / "out" / "copy.zip")
    assert (tmp_path / "out" / "copy.zip").read_bytes() == payload.read_bytes()
    with store.open(NAME) as stream:
        assert stream.read() == payload.read_bytes()


def test_gcs_scheme_is_the_same_store(gcs_bucket: str, payload: Path, tmp_path: Path) -> None:
    Store(f"gs://{gcs_bucket}/runenv").put_file(payload, NAME)
    store = Store(f"gcs://{gcs_bucket}/runenv")
    assert store.uri(NAME) == f"gs://{gcs_bucket}/runenv/{NAME}"
    assert store.exists(NAME)
    download(f"gcs://{gcs_bucket}/runenv/{NAME}", tmp_path / "copy.zip")
    assert (tmp_path / "copy.zip").read_bytes() == payload.read_bytes()


def test_second_put_keeps_the_first_object(gcs_bucket: str, payload: Path, tmp_path: Path) -> None:
    store = Store(f"gs://{gcs_bucket}/runenv")
    store.put_file(payload, NAME)
    other = tmp_path / "other.zip"
    other.write_bytes(b"different bytes")
    store.put_file(other, NAME)
    with store.open(NAME) as stream:
        assert stream.read() == payload.read_bytes()


def test_missing_object(gcs_bucket: str, tmp_path: Path) -> None:
    uri = f"gs://{gcs_bucket}/runenv/pkgs/missing.zip"
    with pytest.raises(StorageError) as caught:
        download(uri, tmp_path / "out" / "copy.zip")
    assert caught.value.message == f"object not found: {uri}"
    assert not list((tmp_path / "out").iterdir())
