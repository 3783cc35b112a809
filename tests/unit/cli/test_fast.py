"""The fast path's own pieces: what it parses, and that it agrees with the slow path's code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runenv import settings
from runenv.cli import fast
from runenv.cli.recipes import context_record
from runenv.context import Context


def test_the_plain_form_is_parsed() -> None:
    parsed = fast.parse_run(
        ["run", "--runtime-env", "e.yaml", "-q", "--pip=a", "--pip", "b", "--", "x", "--pip", "c"]
    )
    assert parsed is not None
    assert (parsed.options, parsed.flags, parsed.command) == (
        {"--runtime-env": "e.yaml", "--pip": ["a", "b"]},
        {"-q"},
        ["x", "--pip", "c"],
    )


def test_only_a_local_submit_without_waiting_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["job", "submit", "--working-dir", ".", "--no-wait", "--submission-id=s1", "--", "a"]
    parsed = fast.parse_submit(args)
    assert parsed is not None and parsed.options == {"--working-dir": ".", "--submission-id": "s1"}
    assert fast.parse_submit([arg for arg in args if arg != "--no-wait"]) is None
    assert fast.parse_submit([*args[:2], "--address", "http://x", *args[2:]]) is None
    monkeypatch.setenv("RUNENV_ADDRESS", "http://x")
    assert fast.parse_submit(args) is None


@pytest.mark.parametrize(
    "args",
    [
        ["run", "python", "main.py"],  # no "--": Click decides what is an option
        ["run", "--help", "--", "x"],
        ["run", "--working-dir", "a", "--working-dir", "b", "--", "x"],
        ["run", "--runtime-env", "--", "x"],
        ["run", "--runtime-env"],
        ["run", "--"],
        ["job", "list"],
        [],
    ],
)
def test_anything_else_is_left_to_the_slow_path(args: list[str]) -> None:
    assert fast.parse_run(args) is None


def test_environment_is_the_contexts(monkeypatch: pytest.MonkeyPatch) -> None:
    context = Context(
        env_key="k",
        python_executable="/env/bin/python",
        cwd="/code",
        env_vars={"A": "1", "PATH": "/override"},
        pythonpath=("/code", "/mods"),
        path=("/env/bin",),
        unset_vars=("PYTHONHOME", "GONE"),
    )
    for base in (
        {"PATH": "/usr/bin", "PYTHONPATH": "/host", "PYTHONHOME": "/h", "B": "2"},
        {"B": "2"},
    ):
        without_override = context.with_changes(env_vars={"A": "1"})
        for ctx in (context, without_override):
            assert fast.environment(context_record(ctx), base) == ctx.environment(base)


def test_runenv_home_is_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for value in (str(tmp_path / "link"), "~/x/../y"):
        monkeypatch.setenv("RUNENV_HOME", value)
        assert fast.runenv_home() == str(settings.runenv_home())
    monkeypatch.delenv("RUNENV_HOME")
    assert fast.runenv_home() == str(settings.runenv_home())


def test_the_fast_path_loads_no_heavy_module() -> None:
    probe = (
        "import sys\n"
        "from runenv.cli import fast\n"
        "fast.try_fast_path(['run', '--runtime-env', 'none.yaml', '--', 'true'])\n"
        "heavy = {'typer', 'click', 'rich', 'pydantic', 'typing', 'json', 'subprocess'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr
