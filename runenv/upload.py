"""Making a RuntimeEnv portable: local code packaged and stored, replaced by URIs.

The portable env holds no local paths, so it means the same on every machine that reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from runenv import settings, uris
from runenv.spec import RuntimeEnv

# Packaging and storage load only for envs with local code: most materializations have none.
if TYPE_CHECKING:
    from runenv.packaging import Package
    from runenv.storage import PackageStore, Store

PackagedCallback = Callable[[str, "Package"], None]


def store_for(env: RuntimeEnv) -> Store:
    """The env's ``upload_path``, or the node-local store under ``RUNENV_HOME``."""
    from runenv.storage import Store

    return Store(env.upload_path or settings.default_store_uri())


def make_portable(
    env: RuntimeEnv,
    on_packaged: PackagedCallback | None = None,
    store: PackageStore | None = None,
) -> RuntimeEnv:
    """Package and store the env's local working_dir and py_modules; return the env with URIs.

    ``store`` defaults to the env's ``upload_path``, else the store under ``RUNENV_HOME``.
    """
    if not _has_local_code(env):
        return env
    store = store or store_for(env)
    changes: dict[str, object] = {}
    if env.working_dir and not uris.scheme_of(env.working_dir):
        package = _package_working_dir(Path(env.working_dir), env, store)
        _notify(on_packaged, env.working_dir, package)
        changes["working_dir"] = package.uri
    if any(not uris.scheme_of(module) for module in env.py_modules):
        changes["py_modules"] = [
            _portable_module(module, env, store, on_packaged) for module in env.py_modules
        ]
    # excludes only shape local directories; the URIs already reflect them
    return env.replace(**changes, excludes=None)


def _has_local_code(env: RuntimeEnv) -> bool:
    locations = [env.working_dir] if env.working_dir else []
    return any(not uris.scheme_of(location) for location in [*locations, *env.py_modules])


def _package_working_dir(path: Path, env: RuntimeEnv, store: PackageStore) -> Package:
    from runenv.packaging import package_directory, upload_file_as_is

    if path.is_file():  # a local .zip, used as it is
        return upload_file_as_is(path, store)
    return package_directory(path, store, excludes=env.excludes)


def _portable_module(
    module: str, env: RuntimeEnv, store: PackageStore, on_packaged: PackagedCallback | None
) -> str:
    from runenv.packaging import package_directory, package_file, upload_file_as_is

    if uris.scheme_of(module):
        return module
    path = Path(module)
    if path.is_dir():
        package = package_directory(path, store, excludes=env.excludes, top_level_directory=True)
    elif path.suffix == uris.WHEEL_SUFFIX:
        package = upload_file_as_is(path, store)
    else:
        package = package_file(path, store)
    _notify(on_packaged, module, package)
    return package.uri


def _notify(callback: PackagedCallback | None, location: str, package: Package) -> None:
    if callback is not None:
        callback(location, package)
