"""Setup cut short: the timeout kills the running step; a SIGKILL mid-build leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import GatedIndex, processes_under

from runenv import RuntimeEnv
from runenv.errors import SetupTimeoutError
from runenv.materialize import materialize

WAIT_S = 60


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    return tmp_path / "home"


def slow_env(index: GatedIndex, timeout: int = -1) -> RuntimeEnv:
    """An env already locked, so the first download is the install's (not the resolution's)."""
    return RuntimeEnv(
        pip=index.locked_pip(),
        config={"setup_timeout_seconds": timeout},
    )


def python_entries(home: Path) -> list[str]:
    bucket = home / "runtime_resources" / "python-v1"
    return sorted(p.name for p in bucket.iterdir() if p.is_dir()) if bucket.exists() else []


def uv_processes_under(home: Path) -> list[str]:
    return processes_under(home, " pip install ")


def test_timeout_kills_the_install_and_leaves_nothing(gated_index: GatedIndex, home: Path) -> None:
    started = time.monotonic()
    with pytest.raises(SetupTimeoutError) as caught:
        materialize(slow_env(gated_index, timeout=2))
    elapsed = time.monotonic() - started
    assert gated_index.requested.is_set()  # it was stuck downloading, not failing early
    assert 2 <= elapsed < 15
    error = caught.value
    assert "timed out after 2 s during installing pip packages" in error.message
    assert "pip install" in error.message  # the last lines of the setup log
    assert "setup_timeout_seconds" in (error.hint or "")
    assert error.step == "installing pip packages"
    assert python_entries(home) == []
    assert uv_processes_under(home) == []


def test_sigkill_mid_build_then_retry(gated_index: GatedIndex, home: Path) -> None:
    env = slow_env(gated_index)
    script = (
        "import json, sys\n"
        "from runenv import RuntimeEnv\n"
        "from runenv.materialize import materialize\n"
        "materialize(RuntimeEnv.from_dict(json.loads(sys.argv[1])))\n"
    )
    victim = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(env.to_dict())], env=dict(os.environ)
    )
    assert gated_index.requested.wait(WAIT_S), "the build never reached the download"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(WAIT_S)
    assert [name for name in python_entries(home) if not name.startswith(".")] == []
    deadline = time.monotonic() + WAIT_S
    while uv_processes_under(home) and time.monotonic() < deadline:
        time.sleep(0.05)  # the kernel delivers the installer's parent-death signal
    assert uv_processes_under(home) == []

    gated_index.gate.set()
    context = materialize(env)  # retried: builds again, cleaning up the killed build
    result = subprocess.run(
        [context.python_executable, "-c", "import runenv_slow; print(runenv_slow.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
        env=context.environment(),
    )
    assert result.stdout.strip() == "1.0"
    entries = python_entries(home)
    assert len(entries) == 1 and not entries[0].startswith(".")
