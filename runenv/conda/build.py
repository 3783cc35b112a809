"""Locking a conda env on the submitting machine, and installing a lock into the node's cache.

Both run py-rattler in a child process (:mod:`runenv.conda.child`). A lock is cached by what it
solves (kind ``conda-lock``), as pip locks are; an installed env is an entry of kind ``conda``
(``conda-v1/<key>/prefix``), built in its staging directory with the final prefix patched into
its files, published read-only with its manifest. Packages come from one rattler package cache
per node (:func:`runenv.settings.conda_cache_dir`), copied or cloned into each env, never hard
linked (``RUNENV_LINK_MODE=hardlink`` allows it), so a process writing into one env's file
cannot change another's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from runenv import integrity, process, settings
from runenv.conda import channels as channel_urls
from runenv.conda.lock import CondaLock, LockedPackage, current_platform
from runenv.conda.spec import CondaEnv, match_spec_name
from runenv.context import Context
from runenv.digests import key_of
from runenv.envs import uv
from runenv.envs.setup import TIMEOUT_HINT, Setup
from runenv.errors import EnvSetupError, SetupTimeoutError
from runenv.spec import PythonPackages

KIND = "conda"
LOCK_KIND = "conda-lock"
LOCK_FILE = "conda-lock.json"
PREFIX = "prefix"
# Host variables that would let the env see or load what it did not ask for.
HOST_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")


def lock_env(env: CondaEnv, setup: Setup) -> CondaEnv:
    """``env`` with its lock: solved here (once per definition and platform, then cached)."""
    platform = current_platform()
    specs = list(env.specs)
    if not any(match_spec_name(spec) == "python" for spec in specs):
        specs.append(f"python {'.'.join(uv.python_version().split('.')[:2])}.*")
    channels = channel_urls.channels_for(env.channels)

    def build(staging: Path) -> dict[str, object]:
        lock = _solve(env, specs, channels, platform, setup)
        (staging / LOCK_FILE).write_text(json.dumps(lock.to_field()))
        return {"platform": platform, "python": lock.python, "packages": list(specs)}

    key = key_of({"platform": platform, "specs": specs, "channels": channels, **env.without_lock()})
    entry = setup.acquire(LOCK_KIND, key, build, f"conda lock of {', '.join(specs)}")
    lock = CondaLock.from_field(json.loads((entry / LOCK_FILE).read_text()))
    return dataclasses.replace(env, lock=lock)


def _solve(
    env: CondaEnv, specs: list[str], channels: tuple[str, ...], platform: str, setup: Setup
) -> CondaLock:
    setup.report("solve", ", ".join(specs))
    setup.log.write(f"solving conda specs {specs} from {list(channels)} for {platform}")
    request = {
        "op": "solve",
        "channels": [channel_urls.expand(channel) for channel in channels],
        "specs": specs,
        "platform": platform,
        "repodata_cache": str(settings.conda_cache_dir() / "repodata"),
    }
    result = _run_child(request, setup, "solve")
    if not result["ok"]:
        raise _solve_error(result, specs, channels, platform, setup)
    packages = tuple(_locked(package, channels) for package in result["packages"])
    python = next((p.version for p in packages if p.name == "python"), None)
    if python is None:
        raise EnvSetupError(
            "the solved conda env has no python package",
            hint="add python to the env's dependencies, or a channel that has it",
            step="solve",
        )
    setup.log.write("locked: " + ", ".join(package.spec for package in packages))
    pip_lock = None
    if env.pip:
        pip = PythonPackages("uv", env.pip, install_options=env.pip_options)
        setup.report("resolve", ", ".join(env.pip))
        pip_lock = uv.resolve_for_python(pip, python, setup.deadline.remaining())
    return CondaLock(platform, python, channels, packages, pip_lock)


def _locked(package: dict[str, Any], channels: tuple[str, ...]) -> LockedPackage:
    if not package.get("sha256"):
        raise EnvSetupError(
            f"conda package {package['url']} has no sha256 in its channel's index",
            hint="re-index the channel (rattler-index, conda index) so that it lists sha256",
            step="solve",
        )
    package["url"] = channel_urls.hidden(package["url"], channels)
    package["channel"] = channel_urls.hidden(package["channel"], channels)
    return LockedPackage.from_field(package)


def _solve_error(
    result: dict[str, Any], specs: list[str], channels: tuple[str, ...], platform: str, setup: Setup
) -> EnvSetupError:
    kind, message = result["kind"], result["message"]
    where = f"channels {', '.join(channels)}"
    if kind == "unsolvable":
        text = f"the conda env cannot be solved; the packages that conflict:\n{message}"
        hint = "relax the versions of the packages named, or drop one of them"
    elif kind == "platform":
        found = "; ".join(
            f"{name} only for {', '.join(subdirs)}" for name, subdirs in result["found"].items()
        )
        text = f"not built for this platform ({platform}) in {where}: {found}"
        hint = f"drop it, or use a package built for {platform} or noarch"
    elif kind == "missing":
        text = f"no conda package {', '.join(result['names'])} in {where} ({platform}, noarch)"
        hint = "check the name, and the channels (the spec's, else RUNENV_CONDA_CHANNELS)"
    elif kind == "channel":
        text = f"cannot read conda {where}: {message}"
        hint = "check the channel names and URLs, and that this machine reaches them"
    else:
        text = f"solving the conda env {specs} failed: {message}"
        hint = "the setup log has the details"
    setup.log.write(text)
    return EnvSetupError(text, hint=hint, step="solve", log_path=str(setup.log.path))


def apply_built(env: CondaEnv, setup: Setup, context: Context) -> Context:
    """The context of ``env`` (prepared: locked) installed in this node's cache."""
    lock = env.lock
    if lock is None:  # prepare() locks every env before its steps run
        raise RuntimeError("conda apply needs a prepared env: see runenv.materialize")
    key = key_of({"lock": lock.to_field(), "pip_options": list(env.pip_options)})
    final = setup.cache.entry_path(KIND, key) / PREFIX

    def build(staging: Path) -> dict[str, object]:
        _install(env, lock, staging / PREFIX, final, setup)
        return {
            "python": lock.python,
            "platform": lock.platform,
            "prefix": str(final),
            "channels": list(lock.channels),
            "packages": [package.spec for package in lock.packages],
            "pip": list(lock.pip.requirements) if lock.pip else [],
        }

    what = f"conda env {', '.join(p.name for p in lock.packages)}"
    prefix = setup.acquire(KIND, key, build, what) / PREFIX
    return context.with_changes(
        python_executable=str(prefix / "bin" / "python"),
        path=(str(prefix / "bin"), *context.path),
        env_vars={
            **context.env_vars,
            "CONDA_PREFIX": str(prefix),
            "CONDA_DEFAULT_ENV": env.name or str(prefix),
            **integrity.USE_WITHOUT_WRITING,
            **env.variables,
        },
        unset_vars=(*context.unset_vars, *HOST_VARIABLES),
    )


def _install(env: CondaEnv, lock: CondaLock, prefix: Path, final: Path, setup: Setup) -> None:
    if lock.platform != current_platform():
        raise EnvSetupError(
            f"the conda env was locked for {lock.platform}; this node is {current_platform()}",
            hint="prepare (lock) the env on a machine of the nodes' platform",
            step="conda install",
        )
    setup.report("install", f"{len(lock.packages)} conda packages")
    setup.log.write("installing conda packages: " + ", ".join(p.spec for p in lock.packages))
    request = {
        "op": "install",
        "packages": [
            {**package.to_field(), "url": channel_urls.expand(package.url)}
            for package in lock.packages
        ],
        "prefix": str(prefix),
        "final_prefix": str(final),
        "platform": lock.platform,
        "package_cache": str(settings.conda_cache_dir() / "pkgs"),
        "hard_links": uv.link_mode() == "hardlink",
    }
    result = _run_child(request, setup, "conda install")
    if not result["ok"]:
        setup.log.write(result["message"])
        raise EnvSetupError(
            f"installing the conda env failed: {result['message']}",
            hint="the setup log has the details; a sha256 mismatch means a channel's file "
            "changed since the env was locked",
            step="conda install",
            log_path=str(setup.log.path),
        )
    python = prefix / "bin" / "python"
    if lock.pip is not None and lock.pip.requirements:
        requirements = prefix.parent / "pip-requirements.lock"
        requirements.write_text("\n".join(lock.pip.requirements) + "\n")
        setup.report("install", ", ".join(lock.pip.requirements))
        command = uv.install_command(python, requirements, env.pip_options)
        setup.run([*command, "--break-system-packages"], "installing pip packages", uv.env())
        _retarget_scripts(prefix / "bin", prefix, final)
    _compile(python, lock.python, prefix, final, setup)


def _retarget_scripts(bin_dir: Path, staging: Path, final: Path) -> None:
    """Scripts uv wrote name the staging prefix in their ``#!`` line: name the final one."""
    old, new = str(staging).encode(), str(final).encode()
    for path in bin_dir.iterdir():
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 65536:
            continue
        content = path.read_bytes()
        if content.startswith(b"#!") and old in content:
            path.write_bytes(content.replace(old, new))


def _compile(python: Path, version: str, prefix: Path, final: Path, setup: Setup) -> None:
    """Bytecode for the env's packages, naming their final paths: entries are used without
    writing, so without it every start would compile them again."""
    site = prefix / "lib" / f"python{'.'.join(version.split('.')[:2])}" / "site-packages"
    if site.is_dir():
        command = [str(python), "-m", "compileall", "-q", "-f", "-j0"]
        setup.run([*command, "-s", str(prefix), "-p", str(final), str(site)], "compiling bytecode")


def _run_child(request: dict[str, Any], setup: Setup, step: str) -> dict[str, Any]:
    """One py-rattler operation in :mod:`runenv.conda.child`; its result."""
    command = [sys.executable, "-m", "runenv.conda.child"]
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        finished = process.run(
            command,
            timeout=setup.deadline.remaining(),
            env=environment,
            input=json.dumps(request).encode(),
        )
    except subprocess.TimeoutExpired:
        raise SetupTimeoutError(
            f"conda {step} timed out after {setup.deadline.seconds:g} s",
            hint=TIMEOUT_HINT,
            step=step,
            log_path=str(setup.log.path),
        ) from None
    stderr = finished.stderr.decode(errors="replace").strip()
    if stderr:
        setup.log.write(stderr)
    try:
        result: dict[str, Any] = json.loads(finished.stdout)
    except ValueError:
        raise EnvSetupError(
            f"conda {step} ended without a result (exit status {finished.returncode})"
            + (f":\n{stderr[-2000:]}" if stderr else ""),
            hint="the setup log has the process's output",
            step=step,
            log_path=str(setup.log.path),
        ) from None
    return result
