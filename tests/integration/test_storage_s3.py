"""Store against a real S3 API (moto_server), configured only through AWS_* variables."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runenv import storage
from runenv.errors import StorageError
from runenv.storage import Store, download

if TYPE_CHECKING:
    from conftest import MotoS3

NAME = "pkgs/0123abcd.zip"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    source = tmp_path / "payload.zip"
    source.write_bytes(b"zip bytes " * 1000)
    return source


def test_round_trip(s3_bucket: str, payload: Path, tmp_path: Path) -> None:
    store = Store(f"s3://{s3_bucket}/runenv/")
    assert store.base_uri == f"s3://{s3_bucket}/runenv"
    assert not store.exists(NAME)
    assert store.put_file(payload, NAME) == f"s3://{s3_bucket}/runenv/{NAME}"
    assert store.exists(NAME)
    store.get_file(NAME, tmp_path / "copy.zip")
    assert (tmp_path / "copy.zip").read_bytes() == payload.read_bytes()
    with store.open(NAME) as stream:
        assert stream.read() == payload.read_bytes()
    download(store.uri(NAME), tmp_path / "again.zip")
    assert (tmp_path / "again.zip").read_bytes() == payload.read_bytes()


def test_endpoint_comes_from_aws_endpoint_url_s3(
    s3_bucket: str, moto_s3: MotoS3, payload: Path
) -> None:
    # no storage options at all: botocore reads AWS_ENDPOINT_URL_S3 (set by the fixture)
    Store(f"s3://{s3_bucket}").put_file(payload, NAME)
    assert moto_s3.count_requests("PUT", f"/{s3_bucket}/{NAME}") == 1


def test_endpoint_comes_from_aws_endpoint_url(
    s3_bucket: str, moto_s3: MotoS3, payload: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint_url)
    Store(f"s3://{s3_bucket}").put_file(payload, NAME)
    assert moto_s3.count_requests("PUT", f"/{s3_bucket}/{NAME}") == 1


def test_second_put_of_a_name_sends_no_put(s3_bucket: str, moto_s3: MotoS3, payload: Path) -> None:
    store = Store(f"s3://{s3_bucket}/runenv")
    store.put_file(payload, NAME)
    store.put_file(payload, NAME)
    Store(f"s3://{s3_bucket}/runenv").put_file(payload, NAME)  # a new Store, no shared cache
    key_path = f"/{s3_bucket}/runenv/{NAME}"
    assert moto_s3.count_requests("PUT", key_path) == 1
    assert moto_s3.count_requests("HEAD", key_path) >= 3


def test_missing_object(s3_bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{s3_bucket}/runenv/pkgs/missing.zip"
    with pytest.raises(StorageError) as caught:
        download(uri, tmp_path / "out" / "copy.zip")
    assert caught.value.message == f"object not found: {uri}"
    assert not list((tmp_path / "out").iterdir())


def test_missing_bucket_on_upload(s3_bucket: str, payload: Path) -> None:
    store = Store("s3://runenv-no-such-bucket/runenv")
    with pytest.raises(StorageError, match="the bucket or directory does not exist"):
        store.put_file(payload, NAME)


def test_unreachable_endpoint_fails_fast(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", closed)
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        Store(f"s3://{s3_bucket}/runenv").get_file(NAME, tmp_path / "out.zip")
    elapsed = time.monotonic() - started
    uri = f"s3://{s3_bucket}/runenv/{NAME}"
    assert caught.value.message.startswith(f"cannot reach the storage endpoint for {uri}")
    assert closed in caught.value.message
    assert caught.value.hint and "AWS_ENDPOINT_URL_S3" in caught.value.hint
    # all retries included: RETRY_ATTEMPTS quick refusals and the waits between them
    assert elapsed < 3.0, elapsed
    assert storage.RETRY_ATTEMPTS > 1


def test_missing_credentials_are_reported_not_sent_anonymously(
    s3_bucket: str, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch, payload: Path
) -> None:
    # isolated_aws (under s3_bucket) already emptied ~/.aws and the config files
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = Store(f"s3://{s3_bucket}/runenv")
    with pytest.raises(StorageError) as caught:
        store.put_file(payload, NAME)
    assert caught.value.message == f"no credentials to access s3://{s3_bucket}/runenv/{NAME}"
    assert caught.value.hint and "AWS_ACCESS_KEY_ID" in caught.value.hint
    # s3fs does not fall back to anonymous requests: botocore stops before sending anything
    assert moto_s3.count_requests("HEAD", f"/{s3_bucket}/") == 0
    assert moto_s3.count_requests("PUT", f"/{s3_bucket}/") == 0


def test_credentials_from_the_shared_credentials_file(
    s3_bucket: str,
    isolated_aws: Path,
    moto_s3: MotoS3,
    monkeypatch: pytest.MonkeyPatch,
    payload: Path,
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    credentials = "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    (isolated_aws / "credentials").write_text(credentials)
    Store(f"s3://{s3_bucket}").put_file(payload, NAME)
    assert moto_s3.count_requests("PUT", f"/{s3_bucket}/{NAME}") == 1
