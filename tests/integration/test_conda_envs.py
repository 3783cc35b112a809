"""Conda envs from a definition, solved and installed by py-rattler from a local channel.

The channel (tests/conda_channel.py, the ``conda_channel`` fixture) holds a ``python`` stand-in
linking to this machine's interpreter, tinyfoo 1.0/2.0, tinybar (needs tinyfoo >=2), a CLI
package, a conflicting pair and a package built only for another platform.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from conda_channel import CONFLICT_PAIR, OTHER_PLATFORM_ONLY, CondaChannel, python_module_package
from conftest import gated_server, make_changeable
from wheels import build_wheel

import runenv
from runenv import RuntimeEnv
from runenv.errors import EnvSetupError
from runenv.materialize import materialize, prepare, release

cloudpickle.register_pickle_by_value(sys.modules[__name__])
RUNENV = str(Path(sys.executable).parent / "runenv")
MATERIALIZE = """
import json, sys
from runenv import RuntimeEnv
from runenv.materialize import materialize
env = RuntimeEnv.from_dict(json.loads(sys.argv[1]))
context = materialize(env, on_stage=lambda stage, detail: print("stage", stage, flush=True))
print("python", context.python_executable, flush=True)
"""


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    for name in ("UV_CACHE_DIR", "RUNENV_FAILURE_TTL_SECONDS", "RUNENV_CONDA_CHANNELS"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path / "home"
    runenv.shutdown()


def conda(channel: CondaChannel, *specs: str, pip: list[str] | None = None) -> dict[str, Any]:
    dependencies: list[Any] = list(specs)
    if pip is not None:
        dependencies.append({"pip": pip})
    return {"conda": {"channels": [channel.url], "dependencies": dependencies}}


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUNENV, *args], capture_output=True, text=True, timeout=300, cwd=cwd, check=False
    )


def test_inline_env_runs_its_cli_and_module_and_not_the_hosts(
    conda_channel: CondaChannel, tmp_path: Path
) -> None:
    (tmp_path / "env.json").write_text(json.dumps(conda(conda_channel, "tinybar", "tinycli")))
    code = (
        "import subprocess, sys, tinybar, importlib.util as u; "
        "print(tinybar.FOO_VERSION, sys.prefix); "
        "print(u.find_spec('pydantic') is None, u.find_spec('runenv') is None); "
        "subprocess.run(['tinycli', 'hello'], check=True)"
    )
    env_file = str(tmp_path / "env.json")
    # from tmp_path: `python -c` puts the cwd first on sys.path, and runenv's source tree is one
    result = run_cli("run", "--runtime-env", env_file, "--", "python", "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    version, prefix = lines[0].split()
    assert version == "2.0"
    assert prefix.endswith("/prefix") and "/conda-v1/" in prefix
    assert lines[1] == "True True"  # the host's packages (and runenv) are not there
    assert lines[2] == "tinycli 1.0 hello"


def test_environment_yml_create_prints_prefix_and_show_lists_packages(
    conda_channel: CondaChannel, tmp_path: Path
) -> None:
    (tmp_path / "environment.yml").write_text(
        f"name: demo\nchannels:\n  - {conda_channel.url}\ndependencies:\n  - tinyfoo=1.0\n"
    )
    created = run_cli("env", "create", "-q", str(tmp_path / "environment.yml"))
    assert created.returncode == 0, created.stderr
    fields = dict(line.split(":", 1) for line in created.stdout.splitlines())
    prefix, python = fields["prefix"].strip(), fields["python"].strip()
    assert python == f"{prefix}/bin/python"
    version = subprocess.run([python, "-m", "tinyfoo"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == "1.0"
    key = Path(prefix).parent.name
    shown = run_cli("env", "show", key[:12])
    assert shown.returncode == 0, shown.stderr
    description = json.loads(shown.stdout)["description"]
    assert "tinyfoo 1.0 0_runenv" in description["packages"]
    assert any(package.startswith("python 3.") for package in description["packages"])


def test_python_is_the_submitters_unless_the_spec_names_one(conda_channel: CondaChannel) -> None:
    prepared = prepare(RuntimeEnv.from_dict(conda(conda_channel, "tinyfoo")))
    assert prepared.conda["lock"]["python"] == conda_channel.python.version  # type: ignore[index]
    other = conda_channel.other_python.version
    pinned = prepare(RuntimeEnv.from_dict(conda(conda_channel, "tinyfoo", f"python={other}")))
    assert pinned.conda["lock"]["python"] == other  # type: ignore[index]


def test_the_lock_pins_urls_and_hashes_and_holds_when_the_channel_moves(
    conda_channel: CondaChannel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = conda_channel.copy_to(tmp_path / "channel")
    prepared = prepare(RuntimeEnv.from_dict(conda(channel, "tinyfoo")))
    lock = prepared.conda["lock"]  # type: ignore[index]
    tinyfoo = next(package for package in lock["packages"] if package["name"] == "tinyfoo")
    archive = channel.path / "noarch" / tinyfoo["file_name"]
    assert tinyfoo["url"] == archive.as_uri()
    import hashlib

    assert tinyfoo["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    channel.add([python_module_package("tinyfoo", "3.0")])  # the channel moves on
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "node"))  # another node, nothing cached
    context = materialize(prepared)
    try:
        assert _module_version(context.python_executable, "tinyfoo") == "2.0"
    finally:
        release(context)
    fresh = prepare(RuntimeEnv.from_dict(conda(channel, "tinyfoo")))  # a new solve sees 3.0
    assert any(p["version"] == "3.0" for p in fresh.conda["lock"]["packages"])  # type: ignore[index]


def _module_version(python: str, module: str) -> str:
    found = subprocess.run([python, "-m", module], capture_output=True, text=True, check=True)
    return found.stdout.strip()


def test_pip_sub_list_from_local_wheels(conda_channel: CondaChannel, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "runenv-demo-a", "1.0")
    build_wheel(wheels, "runenv-demo-b", "1.0", requires=["runenv-demo-a"])
    options = ["--no-index", f"--find-links {wheels}"]
    env = RuntimeEnv.from_dict(conda(conda_channel, "tinyfoo", pip=[*options, "runenv-demo-b"]))
    prepared = prepare(env)
    pins = prepared.conda["lock"]["pip"]["requirements"]  # type: ignore[index]
    assert pins == ["runenv-demo-a==1.0", "runenv-demo-b==1.0"]
    context = materialize(prepared)
    try:
        code = "import runenv_demo_a, runenv_demo_b, tinyfoo; print(runenv_demo_b.VERSION)"
        found = subprocess.run(
            [context.python_executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert found.returncode == 0, found.stderr
        assert found.stdout.strip() == "1.0"
    finally:
        release(context)


@runenv.remote
def foo_version() -> str:
    import tinyfoo

    return str(tinyfoo.VERSION)


@runenv.remote
class FooActor:
    def version(self) -> str:
        import sys

        import tinyfoo

        return f"{tinyfoo.VERSION} {sys.prefix}"


def test_tasks_and_actors_in_conflicting_conda_envs_in_one_program(
    conda_channel: CondaChannel,
) -> None:
    runenv.init()
    old, new = conda(conda_channel, "tinyfoo=1.0"), conda(conda_channel, "tinyfoo=2.0")
    assert runenv.get(foo_version.options(runtime_env=old).remote(), timeout=240) == "1.0"
    assert runenv.get(foo_version.options(runtime_env=new).remote(), timeout=240) == "2.0"
    actor = FooActor.options(runtime_env=new).remote()
    version, prefix = runenv.get(actor.version.remote(), timeout=240).split()
    assert version == "2.0" and "/conda-v1/" in prefix


def test_eight_processes_build_once(conda_channel: CondaChannel, home: Path) -> None:
    prepared = prepare(RuntimeEnv.from_dict(conda(conda_channel, "tinybar")))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MATERIALIZE, json.dumps(prepared.to_dict())],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [process.communicate(timeout=240) for process in processes]
    assert [process.returncode for process in processes] == [0] * 8, outputs
    pythons = {line for out, _ in outputs for line in out.splitlines() if line.startswith("python")}
    assert len(pythons) == 1
    assert sum(out.count("stage install") for out, _ in outputs) == 1


def test_a_modified_entry_is_built_again(conda_channel: CondaChannel) -> None:
    prepared = prepare(RuntimeEnv.from_dict(conda(conda_channel, "tinyfoo")))
    context = materialize(prepared)
    release(context)
    prefix = Path(context.env_vars["CONDA_PREFIX"])
    module = next(prefix.glob("lib/python*/site-packages/tinyfoo/__init__.py"))
    assert not os.stat(module).st_mode & 0o222  # published read-only (and sealed as root)
    make_changeable(module)  # what changing it takes on purpose
    module.unlink()
    (module.parent / "__init__.py").write_text("VERSION = 'tampered'\n")
    stages: list[str] = []
    again = materialize(prepared, on_stage=lambda stage, detail: stages.append(stage))
    try:
        assert "rebuilt" in stages
        assert _module_version(again.python_executable, "tinyfoo") == "2.0"
    finally:
        release(again)


def setup_error(env: dict[str, Any]) -> EnvSetupError:
    with pytest.raises(EnvSetupError) as caught:
        prepare(RuntimeEnv.from_dict(env))
    assert caught.value.hint
    return caught.value


def test_unsolvable_spec_names_the_conflict(conda_channel: CondaChannel) -> None:
    error = setup_error(conda(conda_channel, *CONFLICT_PAIR))
    assert "cannot be solved" in error.message
    for name in (*CONFLICT_PAIR, "tinyfoo"):
        assert name in error.message


def test_missing_package_and_other_platform_only_package(conda_channel: CondaChannel) -> None:
    missing = setup_error(conda(conda_channel, "no-such-package"))
    assert "no conda package no-such-package" in missing.message
    other = setup_error(conda(conda_channel, OTHER_PLATFORM_ONLY))
    assert "not built for this platform" in other.message
    assert f"{OTHER_PLATFORM_ONLY} only for osx-arm64" in other.message


def test_unreachable_channel(tmp_path: Path) -> None:
    error = setup_error(
        {"conda": {"channels": [(tmp_path / "none").as_uri()], "dependencies": ["x"]}}
    )
    assert "cannot read conda channels" in error.message
    assert str(tmp_path / "none") in error.message


def test_sigkill_mid_install_leaves_no_entry_that_looks_complete(
    conda_channel: CondaChannel, home: Path
) -> None:
    import signal
    import time

    prepared = prepare(RuntimeEnv.from_dict(conda(conda_channel, "tinybar", "tinycli")))
    bucket = home / "runtime_resources" / "conda-v1"
    process = subprocess.Popen(
        [sys.executable, "-c", MATERIALIZE, json.dumps(prepared.to_dict())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list(bucket.glob(".build-*/prefix")) and time.monotonic() < deadline:
        assert process.poll() is None, "the build finished before it could be killed"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not [path for path in bucket.iterdir() if path.is_dir() and path.name[0] != "."]
    context = materialize(prepared)  # the next request builds it whole
    try:
        assert _module_version(context.python_executable, "tinyfoo") == "2.0"
    finally:
        release(context)


@pytest.fixture
def gated_channel(conda_channel: CondaChannel, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """The channel over HTTP; package downloads wait until the test opens the gate."""
    directory = conda_channel.copy_to(tmp_path / "served").path
    with gated_server(directory, ".conda") as served:
        yield served.url.rstrip("/"), served.gate


def test_an_install_past_the_setup_timeout_is_killed_and_retried_at_once(
    gated_channel: tuple[str, Any],
) -> None:
    import time

    from runenv.errors import SetupTimeoutError

    url, gate = gated_channel
    definition = {"channels": [url], "dependencies": ["tinyfoo"]}
    env = RuntimeEnv(conda=definition, config={"setup_timeout_seconds": 3})
    prepared = prepare(env)  # solving reads the index: not gated
    assert prepared.conda["lock"]["packages"][0]["url"].startswith(url)  # type: ignore[index]
    with pytest.raises(SetupTimeoutError) as caught:
        materialize(prepared)
    assert caught.value.step == "conda install"
    gate.set()
    started = time.monotonic()
    context = materialize(prepared)  # a timeout is not remembered as a failure
    try:
        assert _module_version(context.python_executable, "tinyfoo") == "2.0"
        assert time.monotonic() - started < 60
    finally:
        release(context)


def test_a_warm_run_takes_the_fast_path(conda_channel: CondaChannel, tmp_path: Path) -> None:
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps(conda(conda_channel, "tinyfoo")))
    # Inputs changed within the racy window are not recorded (runenv.cli.recipes): wait it out.
    while time.time_ns() <= env_file.stat().st_ctime_ns + 2.1e9:
        time.sleep(0.05)
    args = ["run", "--runtime-env", str(env_file), "--", "python", "-m", "tinyfoo"]
    cold = run_cli(*args, cwd=tmp_path)
    warm = run_cli(*args, cwd=tmp_path)
    assert cold.returncode == warm.returncode == 0, cold.stderr + warm.stderr
    assert cold.stdout == warm.stdout == "2.0\n"
    assert "runenv:" in cold.stderr and warm.stderr == ""  # no setup output: the fast path


def test_a_job_uses_the_cli_tool_and_the_python_package(
    conda_channel: CondaChannel, tmp_path: Path
) -> None:
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps(conda(conda_channel, "tinybar", "tinycli")))
    entrypoint = "tinycli from-a-job && python -c 'import tinybar; print(tinybar.FOO_VERSION)'"
    submitted = run_cli(
        "job", "submit", "--runtime-env", str(env_file), "--", "sh", "-c", entrypoint
    )
    assert submitted.returncode == 0, submitted.stderr
    assert "tinycli 1.0 from-a-job\n2.0\n" in submitted.stdout
    assert "succeeded" in submitted.stderr
