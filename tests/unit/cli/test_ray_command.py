"""``runenv ray start`` / ``runenv ray plugin-env``: a fake ``ray`` on PATH records how it ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runenv.cli import ray_commands
from runenv.errors import RunenvError
from runenv.ray.translate import plugins_variable_value

RUNENV = [sys.executable, "-m", "runenv"]
OTHER_PLUGIN = {"class": "other.Plugin", "priority": 20}


def fake_ray(directory: Path, record: Path) -> Path:
    """A ``ray`` that writes its arguments and RAY_RUNTIME_ENV_PLUGINS to ``record``."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "ray"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(record)!r}, 'w') as out:\n"
        "    json.dump({'argv': sys.argv[1:], 'pid': os.getpid(),\n"
        "               'plugins': os.environ.get('RAY_RUNTIME_ENV_PLUGINS')}, out)\n"
        "sys.exit(7)\n"
    )
    script.chmod(0o755)
    return script


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNENV, *args], env=env, capture_output=True, text=True, timeout=60)


def test_start_runs_ray_start_with_the_plugin_registered(tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    fake_ray(tmp_path / "bin", record)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_RUNTIME_ENV_PLUGINS", None)
    finished = run(["ray", "start", "--head", "--port=6390", "--help"], env)
    assert finished.returncode == 7, finished.stderr  # ray's own exit code: it was exec'd
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["start", "--head", "--port=6390", "--help"]
    assert json.loads(seen["plugins"]) == json.loads(plugins_variable_value())


def test_start_keeps_the_users_other_plugins(tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    fake_ray(tmp_path / "bin", record)
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "RAY_RUNTIME_ENV_PLUGINS": json.dumps([OTHER_PLUGIN]),
    }
    assert run(["ray", "start"], env).returncode == 7
    plugins = json.loads(json.loads(record.read_text())["plugins"])
    assert plugins == [OTHER_PLUGIN, *json.loads(plugins_variable_value())]


def test_plugin_env_prints_the_value_and_a_bad_one_is_an_error() -> None:
    env = {key: value for key, value in os.environ.items() if key != "RAY_RUNTIME_ENV_PLUGINS"}
    printed = run(["ray", "plugin-env"], env)
    assert printed.returncode == 0 and printed.stdout.strip() == plugins_variable_value()
    shell = run(["ray", "plugin-env", "--shell"], env).stdout.strip()
    assert shell == f"export RAY_RUNTIME_ENV_PLUGINS='{plugins_variable_value()}'"
    bad = run(["ray", "plugin-env"], {**env, "RAY_RUNTIME_ENV_PLUGINS": "not json"})
    assert bad.returncode == 1
    assert "error: RAY_RUNTIME_ENV_PLUGINS is set to 'not json'" in bad.stderr


def test_registered_once_even_when_already_there() -> None:
    value = plugins_variable_value()
    assert ray_commands.merged_plugins(value) == value


def test_no_ray_anywhere_is_a_runenv_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(RunenvError, match="Ray is not installed here") as caught:
        ray_commands.ray_command()
    assert caught.value.hint and "runenv[ray]" in caught.value.hint
