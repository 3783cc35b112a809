"""Downloads from a plain http server: read-only locations."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fsspec.implementations.http import HTTPFileSystem

from runenv.errors import StorageError
from runenv.storage import Store, download

if TYPE_CHECKING:
    from conftest import HttpServer


def test_download(http_server: HttpServer, tmp_path: Path) -> None:
    (http_server.directory / "small.zip").write_bytes(b"small zip")
    download(f"{http_server.base_url}/small.zip", tmp_path / "out" / "small.zip")
    assert (tmp_path / "out" / "small.zip").read_bytes() == b"small zip"


def test_download_streams_a_large_object(
    http_server: HttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = os.urandom(12 * 1024 * 1024 + 5)  # more than fsspec's 5 MiB http chunk
    (http_server.directory / "big.bin").write_bytes(big)

    def no_whole_object_reads(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("download read the whole object into memory")

    monkeypatch.setattr(HTTPFileSystem, "_cat_file", no_whole_object_reads)
    download(f"{http_server.base_url}/big.bin", tmp_path / "big.bin")
    assert (tmp_path / "big.bin").read_bytes() == big


def test_store_over_http(http_server: HttpServer, tmp_path: Path) -> None:
    (http_server.directory / "objects" / "pkgs").mkdir(parents=True)
    (http_server.directory / "objects" / "pkgs" / "a.zip").write_bytes(b"a zip")
    store = Store(f"{http_server.base_url}/objects/")
    assert store.exists("pkgs/a.zip")
    assert not store.exists("pkgs/b.zip")
    store.get_file("pkgs/a.zip", tmp_path / "a.zip")
    assert (tmp_path / "a.zip").read_bytes() == b"a zip"
    with store.open("pkgs/a.zip") as stream:
        assert stream.read() == b"a zip"


def test_missing_object(http_server: HttpServer, tmp_path: Path) -> None:
    uri = f"{http_server.base_url}/pkgs/missing.zip"
    with pytest.raises(StorageError) as caught:
        download(uri, tmp_path / "out" / "missing.zip")
    assert caught.value.message == f"object not found: {uri}"
    assert not list((tmp_path / "out").iterdir())


def test_upload_is_refused(http_server: HttpServer, tmp_path: Path) -> None:
    payload = tmp_path / "payload.zip"
    payload.write_bytes(b"zip")
    with pytest.raises(StorageError, match="read-only"):
        Store(http_server.base_url).put_file(payload, "pkgs/a.zip")
    assert not (http_server.directory / "pkgs").exists()


def test_unreachable_server_is_an_error_not_a_missing_object(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    store = Store(f"{closed}/objects")
    with pytest.raises(StorageError, match="cannot reach the storage endpoint"):
        store.exists("pkgs/a.zip")
    with pytest.raises(StorageError, match="cannot reach the storage endpoint"):
        download(f"{closed}/objects/pkgs/a.zip", tmp_path / "a.zip")
