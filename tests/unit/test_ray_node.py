"""The node side of runenv's Ray plugin without a cluster: checking the env a driver sent, the
overlay of the cluster's Ray, and how a worker's start is composed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from uv import find_uv_bin

from runenv.cache import ResourceCache
from runenv.context import Context
from runenv.deadline import Deadline
from runenv.errors import EnvSetupError, SpecError
from runenv.ray import node, overlay
from runenv.ray.translate import ACTIVE_VARIABLE

LOCK = {"python": "3.0.1", "requirements": ["a==1"]}


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))


def python_lock() -> dict[str, object]:
    version = ".".join(map(str, sys.version_info[:3]))
    return {"python": version, "requirements": ["a==1"]}


@pytest.mark.parametrize(
    ("runtime_env", "error", "words"),
    [
        ({"runenv": "x"}, SpecError, "must be a runtime_env dict"),
        ({"runenv": {"working_dir": "/tmp"}}, SpecError, "names local paths: /tmp"),
        ({"runenv": {"pip": ["a"]}}, SpecError, "pip packages are not locked"),
        (
            {"runenv": {"pip": {"packages": ["a"], "lock": LOCK}}},
            EnvSetupError,
            "locked for Python 3.0.1",
        ),
    ],
)
def test_an_env_that_is_not_prepared_is_refused(
    runtime_env: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        node.field_env(runtime_env)


def test_rays_own_package_fields_cannot_go_with_runenvs() -> None:
    env = {"runenv": {"pip": {"packages": ["a"], "lock": python_lock()}}, "pip": ["b"]}
    with pytest.raises(SpecError, match="sets Ray's pip besides runenv's field"):
        node.field_env(env)
    assert node.field_env({"runenv": env["runenv"]}).python_packages is not None


def test_the_closure_is_rays_requirements_and_runenvs_worker_api() -> None:
    names = {dist.name for dist in overlay.closure()}
    assert {"ray", "runenv", "cloudpickle", "uv", "aiohttp", "protobuf"} <= names  # [default]
    assert not names & {"moto", "boto3", "pytest", "mypy"}


def test_a_venv_with_the_overlay_imports_ray_and_nothing_else(tmp_path: Path) -> None:
    layer = overlay.acquire(Deadline(None), ResourceCache(tmp_path / "cache"))
    again = overlay.acquire(Deadline(None), ResourceCache(tmp_path / "cache"))
    assert (layer.entry.built, again.entry.built) == (True, False)
    venv = tmp_path / "venv"
    subprocess.run([find_uv_bin(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    (venv / "lib").joinpath(f"python{sys.version_info[0]}.{sys.version_info[1]}").joinpath(
        "site-packages", "six.py"
    ).write_text("ENV_OWN = True\n")
    script = (
        "import importlib.util as u, sys, ray, runenv, six, uv\n"
        "assert uv.find_uv_bin().startswith(sys.argv[1])\n"
        "print(six.ENV_OWN, [u.find_spec(n) is None for n in ('moto', 'boto3', 'pytest')])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(layer.hook)}
    finished = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script, str(layer.site)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split() == ["True", "[True,", "True,", "True]"]  # the env's six wins


def test_a_users_sitecustomize_still_runs_after_the_overlays(tmp_path: Path) -> None:
    layer = overlay.acquire(Deadline(None), ResourceCache(tmp_path / "cache"))
    user = tmp_path / "user"
    user.mkdir()
    (user / "sitecustomize.py").write_text("import os\nos.environ['USER_HOOK'] = 'ran'\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(layer.hook), str(user)])}
    script = "import os, runenv; print(os.environ.get('USER_HOOK'))"
    command = [sys.executable, "-c", script]
    finished = subprocess.run(command, env=env, capture_output=True, text=True)
    assert finished.stdout.strip() == "ran", finished.stderr


def node_env(tmp_path: Path, **changes: object) -> node.NodeEnv:
    venv = tmp_path / "venv"
    context = Context(
        env_key="k",
        python_executable=str(venv / "bin" / "python"),
        path=(str(venv / "bin"),),
        env_vars={"VIRTUAL_ENV": str(venv), "GREETING": "hi"},
        unset_vars=("PYTHONPATH", "PYTHONHOME"),
        pythonpath=("/cache/code",),
        cwd="/cache/code",
    ).with_changes(**changes)
    layer = overlay.acquire(Deadline(None), ResourceCache(tmp_path / "cache"))
    return node.NodeEnv("key", context, layer, built=True, seconds=0.1)


def test_a_worker_starts_with_the_envs_python_and_rays_entries_after_runenvs(
    tmp_path: Path,
) -> None:
    ready = node_env(tmp_path)
    host = {"PATH": "/usr/bin", "PYTHONPATH": "/host/lib", "PYTHONHOME": "/host"}
    ray_vars = {"PYTHONPATH": "/ray/working_dir:/host/lib", "RAY_JOB": "1"}
    start = node.worker_start(ready, ray_vars, host)
    venv = tmp_path / "venv"
    assert start.py_executable == str(venv / "bin" / "python")
    assert start.command_prefix == ["cd", "/cache/code", "&&"]
    assert start.env_vars == {
        "PATH": f"{venv}/bin:/usr/bin",
        "VIRTUAL_ENV": str(venv),
        "GREETING": "hi",
        "PYTHONHOME": "",  # Ray can only set variables: an empty one is ignored by Python
        "PYTHONPATH": f"{ready.overlay.hook}:/cache/code:/ray/working_dir",  # type: ignore[union-attr]
        "RAY_JOB": "1",
        ACTIVE_VARIABLE: "key",
    }


def test_an_env_without_its_own_python_keeps_the_hosts_pythonpath(tmp_path: Path) -> None:
    ready = node_env(tmp_path, unset_vars=(), cwd=None)
    ready = node.NodeEnv(ready.key, ready.context, None, built=False, seconds=0.0)
    start = node.worker_start(ready, {}, {"PATH": "/usr/bin", "PYTHONPATH": "/host/lib"})
    assert start.env_vars["PYTHONPATH"] == "/cache/code:/host/lib"
    assert start.command_prefix == []
