"""The local conda channel works with py-rattler itself: solve, install, an isolated python.

Every solve runs in a child (tests/rattler_solve.py) that ends with os._exit: py-rattler can
crash an interpreter that finalizes right after a call (see that script's docstring).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conda_channel import (
    CONFLICT_PAIR,
    OTHER_PLATFORM,
    OTHER_PLATFORM_ONLY,
    CondaChannel,
    cli_package,
)
from wheels import build_wheel

SOLVE_SCRIPT = Path(__file__).resolve().parent.parent / "rattler_solve.py"
UV = Path(sys.executable).parent / "uv"


@dataclass
class Solved:
    code: int
    records: dict[str, dict[str, str]]  # by package name
    stderr: str


def rattler_solve(
    channel: CondaChannel, *specs: str, prefix: Path | None = None, **options: str
) -> Solved:
    command = [sys.executable, str(SOLVE_SCRIPT), "--channel", channel.url]
    if prefix is not None:
        command += ["--prefix", str(prefix), "--cache", str(prefix.parent / "pkgs")]
    for option, value in options.items():
        command += [f"--{option}", value]
    result = subprocess.run(
        [*command, *specs], capture_output=True, text=True, timeout=120, check=False
    )
    records: list[dict[str, str]] = json.loads(result.stdout)["records"] if result.stdout else []
    return Solved(result.returncode, {r["name"]: r for r in records}, result.stderr)


def run_python(prefix: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(prefix / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def tinybar_env(conda_channel: CondaChannel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("tinybar") / "env"
    solved = rattler_solve(
        conda_channel, f"python={conda_channel.python.major_minor}", "tinybar", "tinycli",
        prefix=prefix,
    )  # fmt: skip
    assert solved.code == 0, solved.stderr
    versions = {name: record["version"] for name, record in solved.records.items()}
    assert versions == {
        "python": conda_channel.python.version,
        "tinybar": "1.0",
        "tinyfoo": "2.0",
        "tinycli": "1.0",
    }
    assert all(record["url"].startswith(conda_channel.url) for record in solved.records.values())
    assert all(len(record["sha256"]) == 64 for record in solved.records.values())
    return prefix


def test_solved_env_has_its_packages_and_an_isolated_python(tinybar_env: Path) -> None:
    probe = run_python(
        tinybar_env,
        "import sys, tinybar; print(sys.prefix); print(tinybar.VERSION, tinybar.FOO_VERSION)",
    )
    assert probe.returncode == 0, probe.stderr
    prefix_line, versions = probe.stdout.splitlines()
    assert Path(prefix_line) == tinybar_env
    assert versions == "1.0 2.0"
    host_only = run_python(tinybar_env, "import pytest")  # installed on the host, not here
    assert "No module named 'pytest'" in host_only.stderr
    command = subprocess.run(
        [str(tinybar_env / "bin" / "tinycli"), "hello"], capture_output=True, text=True, timeout=30
    )
    assert command.stdout.strip() == "tinycli 1.0 hello"


def test_uv_installs_a_pip_sub_list_into_the_env_python(tinybar_env: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "tinywheel", "3.0")
    python = str(tinybar_env / "bin" / "python")
    install = [str(UV), "pip", "install", "--python", python, "--no-index", "--find-links"]
    result = subprocess.run(
        [*install, str(wheels), "tinywheel"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert f"environment at: {tinybar_env}" in result.stderr
    probe = run_python(tinybar_env, "import tinywheel, tinyfoo; print(tinywheel.__file__)")
    assert probe.stdout.startswith(str(tinybar_env / "lib")), probe.stderr
    listed = subprocess.run(
        [str(UV), "pip", "list", "--python", python], capture_output=True, text=True, timeout=60
    )
    assert "tinyfoo" in listed.stdout  # conda's dist-info: uv sees conda packages as installed


def test_python_pin_picks_the_other_minor_version(conda_channel: CondaChannel) -> None:
    other = conda_channel.other_python
    solved = rattler_solve(conda_channel, f"python={other.major_minor}", "tinyfoo")
    assert solved.code == 0, solved.stderr
    assert solved.records["python"]["version"] == other.version
    assert solved.records["tinyfoo"]["version"] == "2.0"


def test_older_version_when_asked(conda_channel: CondaChannel) -> None:
    solved = rattler_solve(conda_channel, "tinyfoo<2")
    assert solved.records["tinyfoo"]["version"] == "1.0", solved.stderr


def test_conflicting_pair_is_unsolvable_and_named(conda_channel: CondaChannel) -> None:
    solved = rattler_solve(conda_channel, *CONFLICT_PAIR)
    assert solved.code == 3
    assert "incompatible" in solved.stderr
    assert all(name in solved.stderr for name in CONFLICT_PAIR)


def test_other_platform_package_is_missing_here(conda_channel: CondaChannel) -> None:
    here = rattler_solve(conda_channel, OTHER_PLATFORM_ONLY)
    assert here.code == 3
    assert f"No candidates were found for {OTHER_PLATFORM_ONLY}" in here.stderr
    there = rattler_solve(conda_channel, OTHER_PLATFORM_ONLY, platform=OTHER_PLATFORM)
    assert there.code == 0, there.stderr
    assert f"/{OTHER_PLATFORM}/" in there.records[OTHER_PLATFORM_ONLY]["url"]


def test_a_copy_takes_new_versions(conda_channel: CondaChannel, tmp_path: Path) -> None:
    copy = conda_channel.copy_to(tmp_path / "channel")
    copy.add([cli_package("tinycli", "2.0")])
    assert rattler_solve(copy, "tinycli").records["tinycli"]["version"] == "2.0"
    assert rattler_solve(conda_channel, "tinycli").records["tinycli"]["version"] == "1.0"


def test_solve_and_install_children_exit_cleanly(
    conda_channel: CondaChannel, tmp_path: Path
) -> None:
    """The crash trap: a child that ends with os._exit never dies of a signal (10 runs)."""
    codes: list[Any] = []
    for run in range(10):
        prefix = tmp_path / str(run) / "env"
        codes.append(rattler_solve(conda_channel, "tinyfoo", prefix=prefix, exit="os-exit").code)
    assert codes == [0] * 10
