"""A small content-addressed object store over fsspec, and downloads from any supported URI.

Objects are written once under a name such as ``pkgs/<sha256>.zip`` and never rewritten: a put
of a name that already exists uploads nothing. Downloads are streamed to a temporary file beside
the destination and renamed into place, so a reader never sees a half-written file.

Backends come from fsspec by URI scheme. Endpoints and credentials come from each backend's own
configuration (``AWS_*`` variables and files for S3, ``STORAGE_EMULATOR_HOST`` and Google
credentials for GCS); keyword arguments given to :class:`Store` or :func:`download` are passed
to the backend as fsspec storage options.

Transient failures (connection errors, timeouts, 5xx and throttling) are retried here with
exponential backoff; missing objects and credential problems fail at once. Every failure
reaches the caller as a :class:`~runenv.errors.StorageError` naming the URI.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol, TypeVar, cast
from urllib.parse import unquote, urlsplit

from runenv import uris
from runenv.diskfull import disk_full_error, is_disk_full
from runenv.errors import StorageError
from runenv.redact import redact_text

logger = logging.getLogger(__name__)

# Transient failures are tried this many times in all, waiting base * 2**n seconds in between.
RETRY_ATTEMPTS = 3
RETRY_BASE_DELAY_S = 0.2

# botocore's own retries take ~8 s to give up on a closed port; runenv retries instead.
S3_CONNECT_TIMEOUT_S = 5
S3_BOTOCORE_RETRIES = {"total_max_attempts": 1}

_READ_ONLY_SCHEMES = frozenset({"http", "https"})
_BACKEND_PACKAGES = {"s3": ("s3fs", "s3"), "gs": ("gcsfs", "gcs")}
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_DENIED_STATUS = frozenset({401, 403})

T = TypeVar("T")


class PackageStore(Protocol):
    """What packaging needs of a store (a :class:`Store`, or a job server's package store)."""

    @property
    def is_local(self) -> bool: ...

    def uri(self, name: str) -> str: ...

    def exists(self, name: str) -> bool: ...

    def put_file(self, local_path: Path, name: str, *, move: bool = False) -> str: ...

    def staging_directory(self) -> Path | None: ...


class Store:
    """Write-once objects under a base URI: a directory, a bucket prefix, or read-only http."""

    def __init__(self, base_uri: str, **storage_options: Any) -> None:
        self._base_uri = normalize_uri(base_uri)
        self._scheme = uris.scheme_of(self._base_uri) or "file"
        self._fs, self._root = _filesystem_for(self._base_uri, storage_options)

    def __repr__(self) -> str:
        return f"Store({self._base_uri!r})"

    @property
    def base_uri(self) -> str:
        """The normalized base URI, without a trailing slash."""
        return self._base_uri

    def uri(self, name: str) -> str:
        """The full URI of the object called ``name`` (e.g. ``pkgs/<sha256>.zip``)."""
        return f"{self._base_uri}/{_checked_name(name)}"

    def exists(self, name: str) -> bool:
        """Whether the object is in the store (asked of the backend, not a listing cache)."""
        path = self._path(name)
        http = self._scheme in _READ_ONLY_SCHEMES
        return _call(self.uri(name), "check", lambda: _exists_uncached(self._fs, path, http))

    @property
    def is_local(self) -> bool:
        """Whether objects stay on this machine (file:// and memory://): no network between."""
        return self._scheme in ("file", "memory")

    def staging_directory(self) -> Path | None:
        """For a local store: a directory on its filesystem where a file to put can be built,
        so that putting it is a rename. None for other stores."""
        if self._scheme != "file":
            return None
        staging = Path(self._root) / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        return staging

    def put_file(self, local_path: Path, name: str, *, move: bool = False) -> str:
        """Upload ``local_path`` as ``name`` unless it is there already; return its URI.

        With ``move``, a local store may take the file by renaming it instead of copying it.
        """
        uri = self.uri(name)
        self._refuse_writes(uri)
        if not Path(local_path).is_file():
            raise StorageError(
                f"cannot upload {local_path}: not a file", hint="check that the file exists"
            )
        if self.exists(name):
            return uri  # content-addressed: an existing name already holds these bytes
        path = self._path(name)
        if self._scheme == "file":
            place = _move_atomically if move else _copy_atomically
            _call(uri, "upload", lambda: place(Path(local_path), Path(path)))
        else:
            _call(uri, "upload", lambda: _put_once(self._fs, Path(local_path), path))
        return uri

    def get_file(self, name: str, local_path: Path) -> None:
        """Stream the object to ``local_path``, which appears only once complete."""
        _download_atomically(self._fs, self._path(name), self.uri(name), Path(local_path))

    def open(self, name: str, mode: str = "rb") -> IO[bytes]:
        """A binary file object for the object; writes through it are not atomic."""
        uri = self.uri(name)
        if set(mode) & set("wax+"):
            self._refuse_writes(uri)
        path = self._path(name)
        return cast(IO[bytes], _call(uri, "open", lambda: self._fs.open(path, mode)))

    def _path(self, name: str) -> str:
        return f"{self._root}/{_checked_name(name)}"

    def _refuse_writes(self, uri: str) -> None:
        if self._scheme in _READ_ONLY_SCHEMES:
            raise StorageError(
                f"cannot upload to {uri}: {self._scheme}:// locations are read-only",
                hint="set upload_path to an s3://, gs:// or file:// location",
            )


def download(uri: str, local_path: Path, **storage_options: Any) -> None:
    """Stream the object at ``uri`` (any supported URI or a plain path) to ``local_path``."""
    normalized = normalize_uri(uri)
    fs, path = _filesystem_for(normalized, storage_options)
    _download_atomically(fs, path, normalized, Path(local_path))


def normalize_uri(location: str) -> str:
    """``location`` as a URI without a trailing slash; a plain path becomes an absolute file://."""
    scheme = uris.scheme_of(location)
    if scheme is None:
        return Path(location).expanduser().absolute().as_uri()
    if scheme not in uris.DOWNLOAD_SCHEMES:
        raise StorageError(
            f"unsupported storage URI: {location}",
            hint="use a local path or a file://, s3://, gs://, http(s):// or memory:// URI",
        )
    rest = location[len(scheme) + len("://") :].rstrip("/")
    if scheme == "gcs":
        scheme = "gs"  # one spelling, so equal objects have equal URIs
    return f"{scheme}://{rest}"


def _checked_name(name: str) -> str:
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or "\\" in name or ".." in parts or "." in parts:
        raise StorageError(
            f"invalid object name {name!r}", hint="use a relative name such as pkgs/<sha256>.zip"
        )
    return name


# --- backends ---


def _filesystem_for(uri: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    """The fsspec filesystem for ``uri`` and the path of ``uri`` within it."""
    scheme = uris.scheme_of(uri) or "file"
    # A fresh instance each time: fsspec's instance cache would keep a filesystem built from
    # environment variables that have since changed.
    options = {**storage_options, "skip_instance_cache": True}
    try:
        if scheme == "file":
            import fsspec  # here, not at the top: runenv starts faster without fsspec

            return fsspec.filesystem("file", **options), str(_file_uri_to_path(uri))
        if scheme == "s3":
            return _url_to_fs(uri, _s3_options(options))
        if scheme == "gs":
            return _gcs_filesystem(uri, options)
        return _url_to_fs(uri, options)
    except ImportError as exc:
        raise _missing_backend(scheme, exc) from exc


def _url_to_fs(uri: str, options: dict[str, Any]) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(uri, **options)
    return fs, str(path)


def _file_uri_to_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise StorageError(
            f"file URI with a host: {uri}", hint="write file:///absolute/path (three slashes)"
        )
    return Path(unquote(parts.path))  # file:// URIs are percent-encoded, as Path.as_uri makes them


def _s3_options(options: dict[str, Any]) -> dict[str, Any]:
    # Only timeouts and retries: endpoint, region and credentials stay with botocore's own
    # lookup (AWS_ENDPOINT_URL_S3, AWS_PROFILE, ~/.aws/config, ...).
    config = dict(options.get("config_kwargs") or {})
    config.setdefault("connect_timeout", S3_CONNECT_TIMEOUT_S)
    config.setdefault("retries", dict(S3_BOTOCORE_RETRIES))
    return {**options, "config_kwargs": config}


def _gcs_filesystem(uri: str, options: dict[str, Any]) -> tuple[Any, str]:
    emulated = _gcs_emulator_host() is not None or "endpoint_url" in options
    if not emulated:
        return _url_to_fs(uri, options)
    # An emulator has no credentials to check; without "anon" gcsfs goes looking for Google
    # credentials and the metadata server.
    options = {"token": "anon", **options}
    # Emulators speak only the JSON API. gcsfs's default ExtendedGcsFileSystem also probes each
    # bucket's layout over gRPC, which an emulator cannot answer; the core class does not.
    from gcsfs.core import GCSFileSystem

    fs = GCSFileSystem(**options)
    return fs, fs._strip_protocol(uri)


def _gcs_emulator_host() -> str | None:
    host = os.environ.get("STORAGE_EMULATOR_HOST", "")
    return None if host in ("", "default") else host


def _missing_backend(scheme: str, exc: ImportError) -> StorageError:
    if scheme in _BACKEND_PACKAGES:
        package, extra = _BACKEND_PACKAGES[scheme]
        return StorageError(
            f"{scheme}:// needs the {package} package", hint=f"pip install 'runenv[{extra}]'"
        )
    return StorageError(
        f"{scheme}:// support could not be loaded: {exc}", hint="reinstall runenv with pip"
    )


# --- transfers ---


def _exists_uncached(fs: Any, path: str, http: bool) -> bool:
    fs.invalidate_cache(path)  # another writer may have added it since a listing was cached
    if http:  # without strict, fsspec's http answers False when the server cannot be reached
        return bool(fs.exists(path, strict=True))
    return bool(fs.exists(path))


def _put_once(fs: Any, local_path: Path, path: str) -> None:
    fs.put_file(str(local_path), path)
    fs.invalidate_cache(path)


def _copy_atomically(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with _temporary_beside(destination) as partial:
        shutil.copyfile(source, partial)
        _fsync(partial)  # the bytes reach the disk before the name does
        partial.replace(destination)


def _move_atomically(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    _fsync(source)  # the bytes reach the disk before the name does
    try:
        source.replace(destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_atomically(source, destination)  # another filesystem: a rename cannot work


def _download_atomically(fs: Any, path: str, uri: str, local_path: Path) -> None:
    local_path.parent.mkdir(parents=True, exist_ok=True)

    def fetch() -> None:
        with _temporary_beside(local_path) as partial:
            # get_file streams in chunks on every backend; it never holds the whole object
            fs.get_file(path, str(partial))
            partial.replace(local_path)

    _call(uri, "download", fetch)


@contextmanager
def _temporary_beside(target: Path) -> Iterator[Path]:
    """A unique temporary name next to ``target`` (same filesystem, so a rename is atomic)."""
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        yield partial
    finally:
        partial.unlink(missing_ok=True)  # already gone after a successful rename


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# --- retries and errors ---


def _call(uri: str, action: str, operation: Callable[[], T]) -> T:
    """Run ``operation``, retrying transient failures; failures become StorageErrors."""
    for attempt in range(RETRY_ATTEMPTS):
        try:
            return operation()
        except StorageError:
            raise
        except Exception as exc:
            if attempt + 1 < RETRY_ATTEMPTS and _is_transient(exc):
                delay = RETRY_BASE_DELAY_S * 2**attempt
                logger.debug(
                    "%s %s failed (%s); retrying in %.1fs", action, redact_text(uri), exc, delay
                )
                time.sleep(delay)
                continue
            raise _storage_error(exc, uri, action) from exc
    raise AssertionError("unreachable: the last attempt returns or raises")


def _storage_error(exc: Exception, uri: str, action: str) -> StorageError:
    scheme = uris.scheme_of(uri) or "file"
    if isinstance(exc, OSError) and is_disk_full(exc):
        destination = exc.filename2 or exc.filename or uri
        return disk_full_error(destination, "", exc, StorageError)
    if _is_missing(exc):
        if action == "upload":
            return StorageError(
                f"cannot upload to {uri}: the bucket or directory does not exist",
                hint="create it first, or choose another upload_path",
            )
        return StorageError(
            f"object not found: {uri}",
            hint="check the URI; the object may never have been uploaded, or was deleted",
        )
    if _is_missing_credentials(exc):
        return StorageError(f"no credentials to access {uri}", hint=_credentials_hint(scheme))
    if _is_denied(exc):
        return StorageError(f"access denied to {uri}: {exc}", hint=_credentials_hint(scheme))
    if _is_transient(exc):
        return StorageError(
            f"cannot reach the storage endpoint for {uri}: {_describe(exc)}",
            hint=_endpoint_hint(scheme),
        )
    return StorageError(f"{action} of {uri} failed: {_describe(exc)}", hint=_endpoint_hint(scheme))


def _credentials_hint(scheme: str) -> str:
    if scheme == "s3":
        return (
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with "
            "~/.aws/credentials, and check the bucket policy"
        )
    if scheme == "gs":
        return (
            "run `gcloud auth application-default login` or set "
            "GOOGLE_APPLICATION_CREDENTIALS, and check the bucket's IAM roles"
        )
    return "check the permissions of the location"


def _endpoint_hint(scheme: str) -> str:
    if scheme == "s3":
        return "check the network and AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL if you set one"
    if scheme == "gs":
        return "check the network and STORAGE_EMULATOR_HOST if you set one"
    return "check the network and that the location is right"


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from (backends wrap errors in several layers)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _loaded_types(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """Exception classes of an optional package, if it is loaded.

    A backend that was never imported cannot have raised anything, so there is no need to
    import it just to classify an error.
    """
    loaded = sys.modules.get(module)
    if loaded is None:
        return ()
    return tuple(getattr(loaded, name) for name in names if hasattr(loaded, name))


def _status(exc: BaseException) -> int | None:
    """The HTTP status behind an aiohttp, gcsfs or botocore error, if there is one."""
    if isinstance(exc, _loaded_types("aiohttp", "ClientResponseError")):
        return int(getattr(exc, "status", 0)) or None
    code = getattr(exc, "code", None)  # gcsfs HttpError
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)  # botocore ClientError
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status if isinstance(status, int) else None
    return None


def _is_missing(exc: BaseException) -> bool:
    return isinstance(exc, FileNotFoundError) or _status(exc) == 404


def _is_missing_credentials(exc: BaseException) -> bool:
    missing = _loaded_types(
        "botocore.exceptions", "NoCredentialsError", "PartialCredentialsError"
    ) + _loaded_types("google.auth.exceptions", "DefaultCredentialsError")
    return any(isinstance(error, missing) for error in _chain(exc))


def _is_denied(exc: BaseException) -> bool:
    for error in _chain(exc):
        if isinstance(error, PermissionError) or _status(error) in _DENIED_STATUS:
            return True
        if isinstance(error, OSError) and str(error).startswith("Forbidden"):  # gcsfs's 403
            return True
    return False


def _is_transient(exc: BaseException) -> bool:
    """Worth another try: connection failures, timeouts, throttling and server errors."""
    if _is_missing(exc) or _is_missing_credentials(exc) or _is_denied(exc):
        return False
    transient: tuple[type[BaseException], ...] = (
        ConnectionError,
        TimeoutError,
        asyncio.TimeoutError,
        *_loaded_types("aiohttp", "ClientConnectionError", "ClientPayloadError"),
        *_loaded_types("botocore.exceptions", "ConnectionError", "HTTPClientError"),
        *_loaded_types("requests.exceptions", "ConnectionError", "Timeout"),
    )
    for error in _chain(exc):
        if isinstance(error, transient) or _status(error) in _RETRYABLE_STATUS:
            return True
        if isinstance(error, OSError) and error.errno == getattr(errno, "EREMOTEIO", None):
            return True  # s3fs's translation of a 5xx InternalError
    return False
