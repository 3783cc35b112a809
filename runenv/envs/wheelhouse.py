"""The wheelhouse: every file a lock names, in the env's store, so nodes install without an index.

With ``upload_path``, the machine that locks an env uploads each wheel and sdist its lock names
(for every target platform) once, as ``wheels/<sha256>/<file name>`` — the sha256 the lock
already gives, so any node finds the file from the lock alone and checks it against its name.
A node then installs the lock with each file it needs taken from the store (downloaded and
checked, or read in place from a local store) instead of from its URL; a file the store lacks
keeps its URL. The env's key does not change: the lock names the same files either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runenv import store_layout
from runenv.digests import file_digest, key_of
from runenv.envs import archives, pylock
from runenv.envs.setup import Setup
from runenv.errors import EnvSetupError, RunenvError
from runenv.spec import Lock

if TYPE_CHECKING:
    from runenv.storage import Store

KIND = "wheelhouse"
STEP = "wheelhouse"


def publish(lock: Lock, store: Store, setup: Setup, *, strict: bool = True) -> None:
    """Upload the files ``lock`` names that ``store`` lacks. ``strict``: a file that cannot be
    fetched from its URL is an error (else it is left out, said in the log)."""
    if lock.pylock is None:
        return
    files = list(_files(lock.pylock))

    def build(staging: Path) -> dict[str, object]:
        uploaded = 0
        for digest, filename, url in files:
            name = store_layout.wheelhouse_name(digest, filename)
            if store.exists(name):
                continue
            setup.report("upload", filename)
            try:
                local = _fetched(url, digest, staging / filename)
            except RunenvError as error:
                if strict:
                    raise _setup_error(f"{filename}: {error.message}", error.hint, setup) from None
                setup.log.write(f"wheelhouse: {filename} left out: {error.message}")
                continue
            store.put_file(local, name, move=True)
            local.unlink(missing_ok=True)
            uploaded += 1
        return {"store": store.base_uri, "files": len(files), "uploaded": uploaded}

    key = key_of({"lock": lock.to_field(), "store": store.base_uri})
    setup.acquire(KIND, key, build, f"wheelhouse of {len(files)} files in {store.base_uri}")


def localized(lock: Lock, store: Store, directory: Path, setup: Setup) -> dict[str, Any]:
    """``lock``'s pylock with each file this node installs taken from ``store`` (into
    ``directory`` unless the store is local), checked by its digest; files the store lacks
    keep their URLs."""
    assert lock.pylock is not None
    target = pylock.PLATFORMS.get(pylock.here())
    if target is None:
        return dict(lock.pylock)
    packages = []
    for package in lock.pylock.get("packages", []):
        if pylock.marker_holds(package, target, lock.python):
            wheels = [
                wheel
                for wheel in package.get("wheels", [])
                if pylock.wheel_fits(pylock.wheel_name(wheel), target, lock.python)
            ]
            if wheels:
                local = [_from_store(wheel, store, directory, setup) for wheel in wheels]
                package = {**package, "wheels": local}
            elif "sdist" in package:
                package = {
                    **package,
                    "sdist": _from_store(package["sdist"], store, directory, setup),
                }
        packages.append(package)
    return {**lock.pylock, "packages": packages}


def _from_store(file: Mapping[str, Any], store: Store, directory: Path, setup: Setup) -> Any:
    digest = str(file.get("hashes", {}).get("sha256", ""))
    filename = pylock.wheel_name(file)
    if not digest:
        return file
    name = store_layout.wheelhouse_name(digest, filename)
    if not store.exists(name):
        setup.log.write(f"wheelhouse: {filename} is not in {store.base_uri}; from its URL")
        return file
    directory.mkdir(parents=True, exist_ok=True)
    local = archives.fetch(store.uri(name), directory, setup, STEP)
    place = {key: value for key, value in file.items() if key not in ("url", "path")}
    return {**place, "url": local.resolve().as_uri()}


def _files(lock: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(sha256, file name, URL) of every wheel and sdist the lock names by URL and hash."""
    for package in lock.get("packages", []):
        for file in [
            *package.get("wheels", []),
            *([package["sdist"]] if "sdist" in package else []),
        ]:
            digest = file.get("hashes", {}).get("sha256")
            location = file.get("url") or file.get("path")
            if digest and location:
                yield str(digest), pylock.wheel_name(file), str(location)


def _fetched(url: str, digest: str, target: Path) -> Path:
    from runenv.errors import StorageError
    from runenv.storage import download

    download(url, target)
    if file_digest(str(target)) != digest:
        target.unlink(missing_ok=True)
        raise StorageError(
            f"{url} does not match the sha256 the lock gives it",
            hint="the index serves other bytes than it did when the env was locked; lock again",
        )
    return target


def _setup_error(message: str, hint: str | None, setup: Setup) -> EnvSetupError:
    setup.log.write(f"{STEP}: {message}")
    return EnvSetupError(f"{STEP}: {message}", hint=hint, step=STEP, log_path=str(setup.log.path))
