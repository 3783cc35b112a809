"""The wheelhouse: every file a lock names, in the env's store, so nodes install without an index.

With ``upload_path``, the machine that locks an env uploads each wheel and sdist its lock names
(for every target platform) once, as ``wheels/<sha256>/<file name>`` — the sha256 the lock
already gives, so any node finds the file from the lock alone and checks it against its name.
A node then installs the lock with each file it needs taken from the store (downloaded and
checked, or read in place from a local store) instead of from its URL; a file the store lacks
keeps its URL. The env's key does not change: the lock names the same files either way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runenv import store_layout, uris
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
    files = list(_files(lock))

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
                package = _built_once(package, lock, store, directory, setup)
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


def _built_once(
    package: Mapping[str, Any], lock: Lock, store: Store, directory: Path, setup: Setup
) -> dict[str, Any]:
    """The package with the wheel built from its sdist for this platform and Python: the one
    the first node built and shared (``wheels/<sdist sha256>/built-<platform>-<python>.json``
    names it), else built here from the sdist and shared."""
    sdist = package["sdist"]
    digest = str(sdist.get("hashes", {}).get("sha256", ""))
    if not digest:
        return dict(package)
    python = "cp" + "".join(lock.python.split(".")[:2])
    pointer = f"{store_layout.WHEELS_PREFIX}/{digest}/built-{pylock.here()}-{python}.json"
    if store.exists(pointer):
        with store.open(pointer) as stream:
            built = json.loads(stream.read())
        wheel = {"url": "", "name": built["filename"], "hashes": {"sha256": built["sha256"]}}
        shared = _from_store(wheel, store, directory, setup)
        if shared["url"]:
            return _with_wheel(package, shared)
    source = _from_store(sdist, store, directory, setup)
    wheel_path = _build_wheel(source, directory / "built", setup)
    wheel_digest = file_digest(str(wheel_path))
    name = store_layout.wheelhouse_name(wheel_digest, wheel_path.name)
    if uris.scheme_of(store.base_uri) not in ("http", "https"):  # else read-only
        store.put_file(wheel_path, name)
        record = directory / f"{wheel_path.name}.json"
        record.write_text(json.dumps({"filename": wheel_path.name, "sha256": wheel_digest}))
        store.put_file(record, pointer)
    wheel = {"url": wheel_path.resolve().as_uri(), "hashes": {"sha256": wheel_digest}}
    return _with_wheel(package, wheel)


def _with_wheel(package: Mapping[str, Any], wheel: Mapping[str, Any]) -> dict[str, Any]:
    kept = {key: value for key, value in package.items() if key != "sdist"}
    return {**kept, "wheels": [dict(wheel)]}


def _build_wheel(sdist: Mapping[str, Any], out_dir: Path, setup: Setup) -> Path:
    from urllib.parse import unquote, urlsplit

    from uv import find_uv_bin

    from runenv.envs import uv

    location = str(sdist.get("url") or sdist.get("path"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if location.startswith("file:"):
        source = unquote(urlsplit(location).path)
    else:  # fetched first: uv builds from a file
        digest = str(sdist.get("hashes", {}).get("sha256", ""))
        target = out_dir.parent / pylock.wheel_name(sdist)
        with archives.as_setup_error(STEP, setup):
            source = str(_fetched(location, digest, target))
    setup.report("build", pylock.wheel_name(sdist))
    command = [find_uv_bin(), "build", "--wheel", "--out-dir", str(out_dir), source]
    setup.run(command, f"building a wheel from {pylock.wheel_name(sdist)}", uv.env())
    wheels = sorted(out_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise _setup_error(f"building {source} gave {len(wheels)} wheels", None, setup)
    return wheels[0]


def _files(lock: Lock) -> Iterator[tuple[str, str, str]]:
    """(sha256, file name, URL) of every wheel the lock names by URL and hash, and of each
    sdist a target platform needs (one without a wheel for it)."""
    assert lock.pylock is not None
    targets = [pylock.PLATFORMS[name] for name in lock.platforms if name in pylock.PLATFORMS]
    for package in lock.pylock.get("packages", []):
        files = list(package.get("wheels", []))
        if "sdist" in package and _needs_sdist(package, targets, lock.python):
            files.append(package["sdist"])
        for file in files:
            digest = file.get("hashes", {}).get("sha256")
            location = file.get("url") or file.get("path")
            if digest and location:
                yield str(digest), pylock.wheel_name(file), str(location)


def _needs_sdist(package: Mapping[str, Any], targets: list[pylock.Platform], python: str) -> bool:
    """Whether a platform that needs ``package`` has no wheel of it (every platform, for a
    lock used as it is: its platforms are not known)."""
    names = [pylock.wheel_name(wheel) for wheel in package.get("wheels", [])]
    if not targets:
        return not names
    return any(
        pylock.marker_holds(package, target, python)
        and not any(pylock.wheel_fits(name, target, python) for name in names)
        for target in targets
    )


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
