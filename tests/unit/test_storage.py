"""Store and download over local, in-memory and (offline) http locations."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import fsspec
import pytest
import yarl
from fsspec.implementations.memory import MemoryFileSystem
from multidict import CIMultiDict, CIMultiDictProxy

from runenv import storage
from runenv.errors import StorageError
from runenv.storage import Store, download, normalize_uri

fsspec_registry = importlib.import_module("fsspec.registry")  # fsspec.registry is a mapping

NAME = "pkgs/0123abcd.zip"


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "RETRY_BASE_DELAY_S", 0.0)


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    source = tmp_path / "payload.zip"
    source.write_bytes(b"zip bytes " * 1000)
    return source


@pytest.fixture
def memory_base() -> str:
    return f"memory://runenv-test-{uuid.uuid4().hex[:12]}"


def assert_round_trip(store: Store, payload: Path, tmp_path: Path) -> None:
    assert not store.exists(NAME)
    assert store.put_file(payload, NAME) == f"{store.base_uri}/{NAME}"
    assert store.exists(NAME)
    fetched = tmp_path / "fetched" / "copy.zip"
    store.get_file(NAME, fetched)
    assert fetched.read_bytes() == payload.read_bytes()
    with store.open(NAME) as stream:
        assert stream.read() == payload.read_bytes()


def leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".part"))


# --- round trips and URIs ---


def test_file_uri_round_trip(tmp_path: Path, payload: Path) -> None:
    store = Store((tmp_path / "store").as_uri())
    assert_round_trip(store, payload, tmp_path)
    assert (tmp_path / "store" / NAME).read_bytes() == payload.read_bytes()


def test_plain_path_becomes_absolute_file_uri(
    tmp_path: Path, payload: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = Store("store/")
    assert store.base_uri == (tmp_path / "store").as_uri()
    assert_round_trip(store, payload, tmp_path)


def test_percent_encoded_file_uri_names_the_decoded_directory(
    tmp_path: Path, payload: Path
) -> None:
    directory = tmp_path / "with space"
    store = Store(directory.as_uri())
    assert "%20" in store.base_uri
    store.put_file(payload, NAME)
    assert (directory / NAME).is_file()


def test_memory_round_trip(memory_base: str, payload: Path, tmp_path: Path) -> None:
    assert_round_trip(Store(memory_base), payload, tmp_path)


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("s3://bucket/prefix/", "s3://bucket/prefix"),
        ("GS://bucket/prefix", "gs://bucket/prefix"),
        ("gcs://bucket/prefix//", "gs://bucket/prefix"),
        ("https://example.com/objects/", "https://example.com/objects"),
        ("memory://store", "memory://store"),
    ],
)
def test_normalize_uri(given: str, normalized: str) -> None:
    assert normalize_uri(given) == normalized


def test_uri_joins_base_and_name(memory_base: str) -> None:
    assert Store(memory_base + "/").uri(NAME) == f"{memory_base}/{NAME}"


@pytest.mark.parametrize("name", ["", "/abs.zip", "../up.zip", "pkgs/../../up.zip", "a\\b.zip"])
def test_invalid_names_are_refused(memory_base: str, name: str) -> None:
    with pytest.raises(StorageError, match="invalid object name"):
        Store(memory_base).uri(name)


def test_unsupported_scheme_is_refused() -> None:
    with pytest.raises(StorageError, match=r"unsupported storage URI: ftp://host/x") as caught:
        Store("ftp://host/x")
    assert caught.value.hint and "s3://" in caught.value.hint


# --- put_file ---


def test_second_put_of_a_name_writes_nothing(tmp_path: Path, payload: Path) -> None:
    store = Store(str(tmp_path / "store"))
    store.put_file(payload, NAME)
    target = tmp_path / "store" / NAME
    before = target.stat()
    other = tmp_path / "other.zip"
    other.write_bytes(b"different bytes")

    assert store.put_file(other, NAME) == store.uri(NAME)

    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert target.read_bytes() == payload.read_bytes()


def test_second_put_to_a_remote_store_calls_no_put(
    memory_base: str, payload: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(memory_base)
    store.put_file(payload, NAME)
    puts: list[str] = []
    real_put_file = MemoryFileSystem.put_file

    def counting_put_file(self: MemoryFileSystem, lpath: str, rpath: str, **kw: Any) -> Any:
        puts.append(rpath)
        return real_put_file(self, lpath, rpath, **kw)

    monkeypatch.setattr(MemoryFileSystem, "put_file", counting_put_file)
    store.put_file(payload, NAME)
    assert puts == []


def test_failed_copy_leaves_no_file_under_the_final_name(
    tmp_path: Path, payload: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def copy_half_then_fail(source: Path, destination: Path) -> None:
        Path(destination).write_bytes(Path(source).read_bytes()[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", copy_half_then_fail)
    store = Store(str(tmp_path / "store"))
    with pytest.raises(StorageError, match="No space left on device"):
        store.put_file(payload, NAME)
    assert not store.exists(NAME)
    assert leftovers(tmp_path / "store" / "pkgs") == []


def test_put_of_a_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not a file"):
        Store(str(tmp_path / "store")).put_file(tmp_path / "nope.zip", NAME)


def test_https_store_is_read_only(payload: Path) -> None:
    store = Store("https://downloads.example.invalid/objects")
    with pytest.raises(StorageError, match="read-only") as caught:
        store.put_file(payload, NAME)
    assert "https://downloads.example.invalid/objects/" + NAME in caught.value.message
    assert caught.value.hint and "upload_path" in caught.value.hint
    with pytest.raises(StorageError, match="read-only"):
        store.open(NAME, "wb")


# --- get_file, open and download ---


@pytest.fixture(params=["file", "memory"])
def empty_store(request: pytest.FixtureRequest, tmp_path: Path, memory_base: str) -> Store:
    return Store(str(tmp_path / "store") if request.param == "file" else memory_base)


@pytest.mark.parametrize("how", ["get_file", "open", "download"])
def test_missing_object_error_names_the_uri(empty_store: Store, tmp_path: Path, how: str) -> None:
    missing = empty_store.uri("pkgs/missing.zip")
    with pytest.raises(StorageError) as caught:
        if how == "get_file":
            empty_store.get_file("pkgs/missing.zip", tmp_path / "out.zip")
        elif how == "open":
            empty_store.open("pkgs/missing.zip")
        else:
            download(missing, tmp_path / "out.zip")
    assert caught.value.message == f"object not found: {missing}"
    assert not (tmp_path / "out.zip").exists()


def test_failed_download_keeps_the_old_file_and_no_partial(
    memory_base: str, payload: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(memory_base)
    store.put_file(payload, NAME)
    destination = tmp_path / "out.zip"
    destination.write_bytes(b"previous")

    def write_half_then_fail(self: MemoryFileSystem, rpath: str, lpath: str, **kw: Any) -> None:
        Path(lpath).write_bytes(b"half")
        raise OSError("disk went away")

    monkeypatch.setattr(MemoryFileSystem, "get_file", write_half_then_fail)
    with pytest.raises(StorageError, match="disk went away"):
        store.get_file(NAME, destination)
    assert destination.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


def test_download_streams_a_large_object(
    memory_base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)
    uri = f"{memory_base}/big.bin"
    with fsspec.open(uri, "wb") as sink:
        sink.write(big)

    def no_whole_object_reads(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("download read the whole object into memory")

    monkeypatch.setattr(MemoryFileSystem, "cat_file", no_whole_object_reads)
    monkeypatch.setattr(MemoryFileSystem, "cat", no_whole_object_reads)
    monkeypatch.setattr(MemoryFileSystem, "blocksize", 64 * 1024)  # many chunks
    download(uri, tmp_path / "big.bin")
    assert (tmp_path / "big.bin").read_bytes() == big


def test_download_from_a_plain_path(payload: Path, tmp_path: Path) -> None:
    download(str(payload), tmp_path / "deep" / "copy.zip")
    assert (tmp_path / "deep" / "copy.zip").read_bytes() == payload.read_bytes()


# --- retries ---


def flaky_get_file(monkeypatch: pytest.MonkeyPatch, failures: list[Exception]) -> list[str]:
    """Make MemoryFileSystem.get_file raise each of ``failures`` once, then work."""
    calls: list[str] = []
    real_get_file = MemoryFileSystem.get_file

    def get_file(self: MemoryFileSystem, rpath: str, lpath: str, **kw: Any) -> Any:
        calls.append(rpath)
        if failures:
            raise failures.pop(0)
        return real_get_file(self, rpath, lpath, **kw)

    monkeypatch.setattr(MemoryFileSystem, "get_file", get_file)
    return calls


def http_error(status: int) -> aiohttp.ClientResponseError:
    url = yarl.URL("http://objects.example.invalid/pkgs/a.zip")
    info = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)
    return aiohttp.ClientResponseError(info, (), status=status, message="status")


def test_transient_errors_are_retried(
    memory_base: str, payload: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(memory_base)
    store.put_file(payload, NAME)
    failures: list[Exception] = [ConnectionResetError(), TimeoutError(), http_error(503)]
    monkeypatch.setattr(storage, "RETRY_ATTEMPTS", 4)
    calls = flaky_get_file(monkeypatch, failures)
    store.get_file(NAME, tmp_path / "out.zip")
    assert len(calls) == 4
    assert (tmp_path / "out.zip").read_bytes() == payload.read_bytes()


def test_transient_errors_give_up_after_the_last_attempt(
    memory_base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures: list[Exception] = [ConnectionRefusedError("refused")] * storage.RETRY_ATTEMPTS
    calls = flaky_get_file(monkeypatch, list(failures))
    with pytest.raises(StorageError, match="cannot reach the storage endpoint"):
        Store(memory_base).get_file(NAME, tmp_path / "out.zip")
    assert len(calls) == storage.RETRY_ATTEMPTS


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (FileNotFoundError("gone"), "object not found"),
        (PermissionError("no"), "access denied"),
        (http_error(403), "access denied"),
        (http_error(404), "object not found"),
        (ValueError("bad"), "download of .* failed: bad"),
    ],
)
def test_other_errors_are_not_retried(
    memory_base: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    message: str,
) -> None:
    calls = flaky_get_file(monkeypatch, [error])
    with pytest.raises(StorageError, match=message):
        Store(memory_base).get_file(NAME, tmp_path / "out.zip")
    assert len(calls) == 1


def test_retry_waits_grow_exponentially(
    memory_base: str, payload: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "RETRY_BASE_DELAY_S", 0.2)
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    store = Store(memory_base)
    store.put_file(payload, NAME)
    flaky_get_file(monkeypatch, [ConnectionResetError(), ConnectionResetError()])
    store.get_file(NAME, tmp_path / "out.zip")
    assert waits == [0.2, 0.4]


# --- missing optional backends ---


@pytest.mark.parametrize(
    ("uri", "scheme", "package", "extra"),
    [
        ("s3://bucket/prefix", "s3", "s3fs", "runenv[s3]"),
        ("gs://bucket/prefix", "gs", "gcsfs", "runenv[gcs]"),
        ("gcs://bucket/prefix", "gs", "gcsfs", "runenv[gcs]"),
    ],
)
def test_missing_backend_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, uri: str, scheme: str, package: str, extra: str
) -> None:
    # As if the package were not installed: imports of it fail, fsspec has no class registered.
    for module in [name for name in sys.modules if name.split(".")[0] == package]:
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setitem(sys.modules, package, None)
    for protocol in ("s3", "s3a", "gs", "gcs"):
        monkeypatch.delitem(fsspec_registry._registry, protocol, raising=False)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)

    with pytest.raises(StorageError) as caught:
        Store(uri)
    assert caught.value.message == f"{scheme}:// needs the {package} package"
    assert caught.value.hint == f"pip install '{extra}'"
    with pytest.raises(StorageError, match=f"needs the {package} package"):
        download(f"{uri}/object.zip", Path("unused"))
