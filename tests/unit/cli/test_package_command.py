"""`runenv package` and `runenv env ...` run as the user runs them: a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUNENV = [sys.executable, "-m", "runenv"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "main.py").write_text("print('hi')\n")
    (root / "notes.log").write_text("log\n")
    (root / "data" / "big.csv").write_text("x\n" * 1000)
    (root / ".gitignore").write_text("data/\n")
    return root


def run(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNENV_HOME": str(home)}
    env.pop("RUNENV_MAX_PACKAGE_MB", None)
    return subprocess.run(
        [*RUNENV, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def test_package_prints_uri_and_exclusions(project: Path, tmp_path: Path) -> None:
    result = run("package", str(project), "--exclude", "*.log", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    store = (tmp_path / "home" / "store").as_uri()
    assert lines[0].startswith(f"uri:      {store}/pkgs/") and lines[0].endswith(".zip")
    assert "included: 2 files" in result.stdout  # main.py and .gitignore
    assert "excluded: 2 files (directories: 1), 2.0 KiB" in result.stdout
    assert "data/" in result.stdout and "notes.log" in result.stdout
    assert "uploaded: yes" in result.stdout
    again = run("package", str(project), "--exclude", "*.log", home=tmp_path / "home")
    assert "uploaded: no, already in the store" in again.stdout


def test_package_json(project: Path, tmp_path: Path) -> None:
    store = tmp_path / "elsewhere"
    result = run(
        "package", str(project), "--json", "--upload-path", str(store), home=tmp_path / "home"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["uri"] == f"{store.as_uri()}/pkgs/{report['digest']}.zip"
    assert Path(store / "pkgs" / f"{report['digest']}.zip").is_file()
    assert report["included"] == {"files": 3, "bytes": 12 + 4 + 6}
    assert report["excluded"]["files"] == 1
    assert report["excluded"]["largest"] == [{"path": "data/", "bytes": 2000}]
    assert sorted(report["files"]) == [".gitignore", "main.py", "notes.log"]


def test_package_list(project: Path, tmp_path: Path) -> None:
    result = run("package", str(project), "--list", home=tmp_path / "home")
    assert result.stdout.splitlines() == [".gitignore", "main.py", "notes.log"]
    assert "uri:" in result.stderr


def test_package_over_the_limit_is_an_error_with_a_hint(project: Path, tmp_path: Path) -> None:
    result = run("package", str(project), "--max-size-mb", "0.00001", home=tmp_path / "home")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "over the limit" in result.stderr
    assert "\nhint: add large paths to `excludes`" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "store").exists()


def test_package_missing_directory(tmp_path: Path) -> None:
    result = run("package", str(tmp_path / "nope"), home=tmp_path / "home")
    assert result.returncode == 1
    assert f"error: runtime_env.working_dir: directory not found: {tmp_path / 'nope'}" in (
        result.stderr
    )


def test_env_validate_prints_normalized_env(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("six\n")
    (tmp_path / "env.yaml").write_text("pip: requirements.txt\nenv_vars: {A: '1'}\n")
    result = run("env", "validate", "env.yaml", home=tmp_path / "home", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "pip": {"packages": ["six"], "pip_check": False},
        "env_vars": {"A": "1"},
    }
    assert "valid runtime_env, key " in result.stderr


def test_env_validate_reports_errors(tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text("pip: [six, 3]\nenv_var: {}\n")
    result = run("env", "validate", "env.yaml", home=tmp_path / "home", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "runtime_env.pip[1]: expected a string, got int" in result.stderr
    assert "runtime_env.env_var: unknown field 'env_var'; did you mean 'env_vars'?" in result.stderr


def test_env_schema_is_json_schema(tmp_path: Path) -> None:
    result = run("env", "schema", home=tmp_path / "home")
    schema = json.loads(result.stdout)
    assert schema["title"] == "runtime_env"
    assert "working_dir" in schema["properties"]


def test_usage_error_exit_code(tmp_path: Path) -> None:
    result = run("package", home=tmp_path / "home")
    assert result.returncode == 2
    assert "Missing argument" in result.stderr
