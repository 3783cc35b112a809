"""Driver-side envs on Ray: each call's options as the Ray ``runtime_env`` it runs with.

The env of a task is merged from its parent's as on the embedded engine (the job env in the
driver, the current work's env inside a task), *prepared* once per env (local code packaged,
Python packages locked, so every node installs the same versions) and translated for the
cluster's mode. Code without an ``upload_path`` goes to Ray's own package store in its GCS.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runenv import store_layout
from runenv.core.runtime import CallOptions
from runenv.errors import UsageError
from runenv.ray import translate
from runenv.ray.translate import Mode
from runenv.spec import RuntimeEnv, merge

MODE_VARIABLE = "RUNENV_RAY_MODE"
MODES = ("auto", "plugin", "stock")
_CACHED_OPTIONS = 1024


def mode_setting() -> str:
    value = os.environ.get(MODE_VARIABLE, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise UsageError(
            f"{MODE_VARIABLE}={value!r} is not a mode", hint=f"use one of: {', '.join(MODES)}"
        )
    return value


class RayEnvs:
    """Ray runtime_env dicts for calls, cached per options object and per env."""

    def __init__(
        self, parent: RuntimeEnv | None, detect_mode: Callable[[], Mode], *, explicit: bool
    ) -> None:
        """``parent`` is the env new work inherits; ``explicit`` says whether work without an
        env of its own is given it here (a driver's init(runtime_env=...)) or inherits it from
        Ray (a task's nested work, a Ray job's driver: Ray passes the parent's env down)."""
        self.parent = parent
        self.explicit = explicit
        self._detect_mode = detect_mode
        self._mode: Mode | None = None
        self._lock = threading.Lock()
        self._by_options: OrderedDict[int, tuple[CallOptions, dict[str, Any] | None]] = (
            OrderedDict()
        )
        self._by_env: dict[tuple[str, str | None], dict[str, Any]] = {}

    @property
    def mode(self) -> Mode:
        if self._mode is None:
            self._mode = self._detect_mode()
        return self._mode

    def for_options(self, options: CallOptions) -> dict[str, Any] | None:
        """The runtime_env for work started with ``options`` (None: inherit as Ray does)."""
        cached = self._by_options.get(id(options))
        if cached is not None and cached[0] is options:
            return cached[1]
        ray_env = self._translate(options.runtime_env)
        with self._lock:
            self._by_options[id(options)] = (options, ray_env)
            while len(self._by_options) > _CACHED_OPTIONS:
                self._by_options.popitem(last=False)
        return ray_env

    def job_env(self) -> dict[str, Any] | None:
        return self.for_env(self.parent) if self.parent is not None else None

    def for_env(self, env: RuntimeEnv) -> dict[str, Any]:
        key = (env.key, env.upload_path)
        found = self._by_env.get(key)
        if found is None:
            found = translate.to_ray(prepare_for_ray(env), self.mode)
            self._by_env[key] = found
        return found

    def _translate(self, requested: dict[str, Any] | None) -> dict[str, Any] | None:
        if requested is None:
            return self.job_env() if self.explicit else None
        child = requested if isinstance(requested, RuntimeEnv) else _validated(requested)
        env = merge(self.parent, child) if self.parent is not None else child
        return self.for_env(env)


def _validated(requested: Any) -> RuntimeEnv:
    if not isinstance(requested, dict):
        raise UsageError(
            f"runtime_env must be a dict, not {type(requested).__name__}",
            hint='e.g. runtime_env={"pip": ["requests"]}',
        )
    return RuntimeEnv.from_dict(requested, base_dir=Path.cwd())


def prepare_for_ray(env: RuntimeEnv) -> RuntimeEnv:
    """Package and lock ``env`` here; code goes to ``upload_path`` or else to Ray's GCS."""
    from runenv.materialize import prepare

    store = None if env.upload_path else RayPackageStore()
    return prepare(env, store=store, on_stage=_print_stage)


def _print_stage(stage: str, detail: str) -> None:
    if stage in ("package", "resolve"):
        print(f"runenv: {stage} {detail}", file=sys.stderr)


class RayPackageStore:
    """Ray's package store in the cluster's GCS, as runenv's packaging sees a store: the same
    content-addressed names, as ``gcs://_ray_pkg_<sha256>.zip`` URIs that Ray's nodes read."""

    is_local = False

    def uri(self, name: str) -> str:
        if not name.endswith(".zip"):
            raise UsageError(
                f"{name}: only directories and .zip files can go to Ray's package store",
                hint="set upload_path (s3://…, gs://…, or a path every node reads) for wheels",
            )
        return f"{translate.RAY_PACKAGE_PREFIX}{store_layout.claimed_digest(name)}.zip"

    def exists(self, name: str) -> bool:
        from ray._private.runtime_env.packaging import package_exists

        return bool(package_exists(self.uri(name)))

    def put_file(self, local_path: Path, name: str, *, move: bool = False) -> str:
        from ray._private.runtime_env.packaging import upload_package_to_gcs

        uri = self.uri(name)
        upload_package_to_gcs(uri, local_path.read_bytes())
        if move:
            local_path.unlink(missing_ok=True)
        return uri

    def staging_directory(self) -> Path | None:
        return None
