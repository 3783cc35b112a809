"""`runenv run` and `runenv env create/list/gc`, as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SIGTERM_EXITS_42
from wheels import build_wheel

RUNENV = [sys.executable, "-m", "runenv"]


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "RUNENV_HOME": str(tmp_path / "home")}
    env.pop("UV_CACHE_DIR", None)
    return env


def runenv(
    *args: str, environ: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNENV, *args], capture_output=True, text=True, env=environ, cwd=cwd, timeout=120
    )


def test_exit_code_is_passed_through(environ: dict[str, str]) -> None:
    result = runenv("run", "-q", "--", "python", "-c", "import sys; sys.exit(7)", environ=environ)
    assert result.returncode == 7


def test_working_dir_pip_and_env_var_flags(environ: dict[str, str], tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text(
        "import os, runenv_demo_a\n"
        "print(open('note.txt').read().strip(), runenv_demo_a.VERSION, os.environ['GREETING'])\n"
    )
    (project / "note.txt").write_text("from the working dir\n")
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "runenv-demo-a", "1.0")
    env_file = tmp_path / "env.yaml"
    env_file.write_text(
        json.dumps(
            {
                "pip": {
                    "packages": ["runenv-demo-a"],
                    "pip_install_options": ["--no-index", "--find-links", str(wheels)],
                },
                "env_vars": {"GREETING": "file", "OTHER": "kept"},
            }
        )
    )
    result = runenv(
        "run",
        "--runtime-env",
        str(env_file),
        "--working-dir",
        str(project),
        "--env-var",
        "GREETING=flag",
        "--",
        "python",
        "main.py",
        environ=environ,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from the working dir 1.0 flag"
    assert "runenv: installing runenv-demo-a==1.0" in result.stderr  # plain progress lines


def test_setup_failure_prints_error_hint_and_log(environ: dict[str, str], tmp_path: Path) -> None:
    options = json.dumps(
        {
            "pip": {
                "packages": ["nope-not-here"],
                "pip_install_options": ["--no-index", "--find-links", str(tmp_path)],
            }
        }
    )
    result = runenv(
        "run", "--runtime-env-json", options, "--", "python", "-c", "1", environ=environ
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(
        line.startswith("error: resolving pip packages ['nope-not-here'] failed") for line in lines
    )
    assert any(line.startswith("hint: ") for line in lines)
    assert any(line.startswith("setup log: ") for line in lines)
    assert "Traceback" not in result.stderr


def test_bad_flags_are_errors(environ: dict[str, str]) -> None:
    result = runenv("run", "--env-var", "NOEQUALS", "--", "true", environ=environ)
    assert result.returncode == 1
    assert "error: --env-var 'NOEQUALS': expected NAME=VALUE" in result.stderr
    result = runenv("run", "--runtime-env-json", "{not json", "--", "true", environ=environ)
    assert "error: --runtime-env-json is not valid JSON" in result.stderr
    result = runenv("run", "--", "no-such-command-xyz", environ=environ)
    assert (result.returncode, result.stderr.strip()) == (
        1,
        "error: command not found: no-such-command-xyz\n"
        "hint: check the name; the env's bin directory is first on PATH",
    )


def test_signals_are_forwarded(environ: dict[str, str]) -> None:
    child = SIGTERM_EXITS_42
    process = subprocess.Popen(
        [*RUNENV, "run", "-q", "--", "python", "-c", child],
        stdout=subprocess.PIPE,
        text=True,
        env=environ,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 42


def test_env_create_list_show_gc(environ: dict[str, str], tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "a.py").write_text("")
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({"working_dir": str(project)}))
    created = runenv("env", "create", str(env_file), "-q", environ=environ)
    assert created.returncode == 0, created.stderr
    listed = json.loads(runenv("env", "list", "--json", environ=environ).stdout)
    assert [(entry["kind"], entry["in_use"]) for entry in listed] == [("working_dir", False)]
    code = f"{listed[0]['path']}/code"  # the entry, not the copy its command worked in
    assert f"code:   {code} (read-only: each run works in a copy of its own)" in created.stdout
    shown = json.loads(runenv("env", "show", listed[0]["key"][:10], environ=environ).stdout)
    assert shown["path"] == listed[0]["path"]
    table = runenv("env", "list", environ=environ).stdout
    assert "working_dir" in table and listed[0]["key"][:12] in table
    collected = runenv("env", "gc", "--max-size", "0", environ=environ)
    assert f"removed working_dir {listed[0]['key'][:12]}" in collected.stdout
    assert json.loads(runenv("env", "list", "--json", environ=environ).stdout) == []
    assert runenv("env", "gc", "--max-size", "lots", environ=environ).returncode == 1


def test_progress_is_a_live_line_on_a_terminal(environ: dict[str, str], tmp_path: Path) -> None:
    import pty

    wheels = tmp_path / "wheels"
    build_wheel(wheels, "runenv-demo-a", "1.0")
    env = json.dumps(
        {
            "pip": {
                "packages": ["runenv-demo-a"],
                "pip_install_options": ["--no-index", "--find-links", str(wheels)],
            }
        }
    )
    master, terminal = pty.openpty()
    process = subprocess.Popen(
        [*RUNENV, "run", "--runtime-env-json", env, "--", "python", "-c", "print('ran')"],
        stdout=subprocess.PIPE,
        stderr=terminal,
        env={**environ, "TERM": "xterm"},
    )
    os.close(terminal)
    out, _ = process.communicate(timeout=120)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal's other end is closed: all was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert (process.returncode, out) == (0, b"ran\n")
    assert b"\x1b[?25l" in shown  # a live status line (rich hides the cursor while it runs)
    assert b"runenv: " not in shown  # not the plain lines written when stderr is not a terminal
