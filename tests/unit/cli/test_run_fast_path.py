"""The fast path of `runenv run`: a set-up env is recognised, and never when an input changed.

A slow run writes "runenv: ..." progress lines to stderr (a pipe here); the fast path writes
nothing, so an empty stderr means the run took the fast path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SIGTERM_EXITS_42

RUNENV = [sys.executable, "-m", "runenv"]
RACY_WINDOW_S = 2.0  # runenv.packaging.hashes.RACY_WINDOW_NS
SHOW = "import os; print(open('note.txt').read().strip(), os.environ.get('V'))"


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "RUNENV_HOME": str(tmp_path / "home")}
    env.pop("UV_CACHE_DIR", None)
    return env


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "note.txt").write_text("one\n")
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    (root / ".gitignore").write_text("secret.txt\n")
    (root / "secret.txt").write_text("hidden\n")
    (tmp_path / "env.json").write_text(json.dumps({"env_vars": {"V": "a"}}))
    return root


def runenv(*args: str, environ: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNENV, *args], capture_output=True, text=True, env=environ, cwd=cwd, timeout=120
    )


def run_show(environ: dict[str, str], cwd: Path, *flags: str) -> tuple[str, bool]:
    """The program's output, and whether the run took the fast path."""
    result = runenv(
        "run", "--runtime-env", "../env.json", "--working-dir", ".", *flags, "--",
        "python", "-c", SHOW, environ=environ, cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), result.stderr == ""


def settle(*roots: Path) -> None:
    """Wait until every file under the roots is older than the racy window (else a run would
    rightly not record its recipe): polls the clock against the newest ctime."""
    newest = max(max(info.st_mtime_ns, info.st_ctime_ns) for root in roots for info in _stats(root))
    deadline = time.monotonic() + 10
    while time.time_ns() <= newest + RACY_WINDOW_S * 1e9:
        assert time.monotonic() < deadline, "the clock did not move on"
        time.sleep(0.05)


def _stats(root: Path) -> Iterator[os.stat_result]:
    yield root.stat()
    for path in root.rglob("*"):
        yield path.stat()


def warm(environ: dict[str, str], project: Path) -> None:
    settle(project, project.parent / "env.json")
    assert run_show(environ, project) == ("one a", False)  # sets up, records the recipe
    assert run_show(environ, project) == ("one a", True)


def test_second_run_is_fast_and_the_same(environ: dict[str, str], project: Path) -> None:
    warm(environ, project)
    assert run_show(environ, project, "-q") == ("one a", True)  # -q doesn't change the env
    code = "import sys; sys.exit(7)"
    args = ["run", "--runtime-env", "../env.json", "--working-dir", ".", "--", "python", "-c"]
    assert runenv(*args, code, environ=environ, cwd=project).returncode == 7
    missing = runenv(*args[:-2], "no-such-command-xyz", environ=environ, cwd=project)
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        "error: command not found: no-such-command-xyz\n"
        "hint: check the name; the env's bin directory is first on PATH",
    )


def test_an_edit_keeping_size_and_mtime_is_seen(environ: dict[str, str], project: Path) -> None:
    warm(environ, project)
    note = project / "note.txt"
    before = note.stat()
    note.write_text("two\n")
    os.utime(note, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert note.stat().st_size == before.st_size and note.stat().st_mtime_ns == before.st_mtime_ns
    assert run_show(environ, project) == ("two a", False)


@pytest.mark.parametrize("change", ["add", "remove", "nested", "ignore_file", "chmod"])
def test_a_changed_tree_is_seen(environ: dict[str, str], project: Path, change: str) -> None:
    warm(environ, project)
    check = "import pathlib; print(sorted(str(p) for p in pathlib.Path('.').rglob('*.*')))"
    args = ["run", "--runtime-env", "../env.json", "--working-dir", ".", "--", "python", "-c"]
    if change == "add":
        (project / "new.txt").write_text("")
    elif change == "remove":
        (project / "pkg" / "mod.py").unlink()
    elif change == "nested":
        (project / "pkg" / "other.py").write_text("")
    elif change == "ignore_file":
        (project / ".gitignore").write_text("# nothing left out\n")
    else:
        (project / "pkg" / "mod.py").chmod(0o755)
        check = "import os; print(os.access('pkg/mod.py', os.X_OK))"
    result = runenv(*args, check, environ=environ, cwd=project)
    assert result.returncode == 0 and result.stderr != "", result.stderr  # not the fast path
    shown = result.stdout
    expected = {
        "add": "new.txt" in shown,
        "remove": "pkg/mod.py" not in shown,
        "nested": "pkg/other.py" in shown,
        "ignore_file": "secret.txt" in shown,
        "chmod": shown.strip() == "True",
    }
    assert expected[change], shown


def test_runtime_env_file_and_variables(environ: dict[str, str], project: Path) -> None:
    env_file = project.parent / "env.json"
    env_file.write_text(json.dumps({"env_vars": {"V": "${OUTER}"}}))
    environ["OUTER"] = "a"
    warm(environ, project)
    environ["OUTER"] = "b"  # what ${OUTER} expands to changed
    assert run_show(environ, project) == ("one b", False)
    environ["RUNENV_IGNORE_GITIGNORE"] = "1"  # a setting that changes what is packaged
    result = runenv(
        "run", "--runtime-env", "../env.json", "--working-dir", ".", "--",
        "python", "-c", "import os; print(os.path.exists('secret.txt'))",
        environ=environ, cwd=project,
    )  # fmt: skip
    assert (result.stdout.strip(), result.stderr != "") == ("True", True)
    del environ["RUNENV_IGNORE_GITIGNORE"]
    env_file.write_text(json.dumps({"env_vars": {"V": "c"}}))
    assert run_show(environ, project) == ("one c", False)


def test_a_symlinked_working_dir_pointed_elsewhere(environ: dict[str, str], tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    for name in ("r1", "r2"):
        (releases / name).mkdir(parents=True)
        (releases / name / "note.txt").write_text(f"{name}\n")
    (tmp_path / "env.json").write_text(json.dumps({"env_vars": {"V": "a"}}))
    work = tmp_path / "work"
    work.mkdir()
    (work / "current").symlink_to(releases / "r1")
    settle(releases, work, tmp_path / "env.json")
    flags = ("--runtime-env", "../env.json", "--working-dir", "current")
    assert run_show_in(environ, work, *flags) == ("r1 a", False)
    assert run_show_in(environ, work, *flags) == ("r1 a", True)
    (work / "current").unlink()
    (work / "current").symlink_to(releases / "r2")
    assert run_show_in(environ, work, *flags) == ("r2 a", False)


def run_show_in(environ: dict[str, str], cwd: Path, *flags: str) -> tuple[str, bool]:
    result = runenv("run", *flags, "--", "python", "-c", SHOW, environ=environ, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), result.stderr == ""


def test_collected_entries_are_set_up_again(environ: dict[str, str], project: Path) -> None:
    warm(environ, project)
    collected = runenv("env", "gc", "--max-size", "0", environ=environ, cwd=project)
    assert "removed working_dir" in collected.stdout, collected.stdout
    assert run_show(environ, project) == ("one a", False)  # not the fast path: entries gone
    assert run_show(environ, project) == ("one a", True)


def test_entries_in_use_by_a_fast_run_are_not_collected(
    environ: dict[str, str], project: Path
) -> None:
    warm(environ, project)
    child = "import sys, time; print('ready', flush=True); sys.stdin.read()"
    process = subprocess.Popen(
        [*RUNENV, "run", "--runtime-env", "../env.json", "--working-dir", ".", "--",
         "python", "-c", child],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=environ, cwd=project,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        collected = runenv("env", "gc", "--max-size", "0", environ=environ, cwd=project)
        assert "kept    working_dir" in collected.stdout, collected.stdout
    finally:
        _, errors = process.communicate("", timeout=30)
    assert (process.returncode, errors) == (0, "")  # it was the fast path


def test_a_corrupt_recipe_means_the_slow_path(environ: dict[str, str], project: Path) -> None:
    warm(environ, project)
    recipes = list((Path(environ["RUNENV_HOME"]) / "recipes").iterdir())
    assert len(recipes) == 1
    for garbage in (b"", b"\x00garbage", recipes[0].read_bytes()[:40]):
        recipes[0].write_bytes(garbage)
        result = runenv(
            "run", "--runtime-env", "../env.json", "--working-dir", ".", "--",
            "python", "-c", SHOW, environ=environ, cwd=project,
        )  # fmt: skip
        assert (result.returncode, result.stdout.strip()) == (0, "one a")
        assert "Traceback" not in result.stderr and result.stderr != ""
    assert run_show(environ, project) == ("one a", True)  # recorded again


def test_inputs_changed_just_now_are_not_recorded(environ: dict[str, str], project: Path) -> None:
    # The project was written just now: within the racy window, a stat is not yet trusted.
    assert run_show(environ, project) == ("one a", False)
    assert run_show(environ, project) == ("one a", False)


def test_signals_reach_the_command_on_the_fast_path(environ: dict[str, str], project: Path) -> None:
    warm(environ, project)
    child = SIGTERM_EXITS_42
    process = subprocess.Popen(
        [*RUNENV, "run", "--runtime-env", "../env.json", "--working-dir", ".", "--",
         "python", "-c", child],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ, cwd=project,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 42
    assert process.stderr is not None and process.stderr.read() == ""


def test_an_included_requirements_file_edited(environ: dict[str, str], tmp_path: Path) -> None:
    from wheels import build_wheel

    for version in ("1.0", "2.0"):
        build_wheel(tmp_path / "wheels", "runenv-demo-a", version)
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("--no-index\n-f ../wheels\n-r pins.txt\n")
    pins = project / "pins.txt"
    pins.write_text("runenv-demo-a==1.0\n")
    (tmp_path / "env.json").write_text(json.dumps({"pip": "requirements.txt"}))
    show = "import runenv_demo_a; print(runenv_demo_a.VERSION)"
    args = ["run", "--runtime-env", "../env.json", "--", "python", "-c", show]
    settle(project, tmp_path / "env.json")
    first = runenv(*args, environ=environ, cwd=project)
    assert (first.returncode, first.stdout.strip()) == (0, "1.0"), first.stderr
    second = runenv(*args, environ=environ, cwd=project)
    assert (second.stdout.strip(), second.stderr) == ("1.0", "")  # the fast path
    before = pins.stat()
    pins.write_text("runenv-demo-a==2.0\n")  # same size; the mtime put back
    os.utime(pins, ns=(before.st_atime_ns, before.st_mtime_ns))
    third = runenv(*args, environ=environ, cwd=project)
    assert (third.returncode, third.stdout.strip()) == (0, "2.0"), third.stderr


def test_job_submit_no_wait(environ: dict[str, str], project: Path) -> None:
    settle(project, project.parent / "env.json")
    args = ["job", "submit", "--runtime-env", "../env.json", "--working-dir", ".", "--no-wait"]

    def submit(*more: str) -> tuple[str, bool]:
        """The job's output, and whether the submission took the fast path."""
        result = runenv(*args, *more, "--", "python", "-c", SHOW, environ=environ, cwd=project)
        assert result.returncode == 0, result.stderr
        job_id = result.stdout.strip()
        said = [line for line in result.stderr.splitlines() if line.startswith("runenv: ")]
        assert f"submitted {job_id}" in result.stderr
        logs = runenv("job", "logs", job_id, "--follow", environ=environ, cwd=project)
        status = runenv("job", "status", job_id, environ=environ, cwd=project)
        assert status.stdout.startswith("SUCCEEDED"), logs.stdout
        shown = [line for line in logs.stdout.splitlines() if not line.startswith("[runenv]")]
        return "\n".join(shown), not said

    assert submit() == ("one a", False)
    assert submit() == ("one a", True)
    assert submit("--submission-id", "mine", "--metadata-json", '{"a": 1}') == ("one a", True)
    shown = runenv("job", "show", "mine", environ=environ, cwd=project).stdout
    assert json.loads(shown)["metadata"] == {"a": "1"}
    duplicate = runenv(*args, "--submission-id", "mine", "--", "true", environ=environ, cwd=project)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr
    (project / "note.txt").write_text("two\n")
    assert submit() == ("two a", False)


def test_each_fast_run_works_in_a_fresh_copy(environ: dict[str, str], project: Path) -> None:
    warm(environ, project)
    vandal = (
        "import os; print(os.getcwd()); open('note.txt', 'w').write('vandalised\\n'); "
        "os.remove('pkg/mod.py'); open('output.csv', 'w').write('1')"
    )
    args = ["run", "--runtime-env", "../env.json", "--working-dir", ".", "--", "python", "-c"]
    first = runenv(*args, vandal, environ=environ, cwd=project)
    assert (first.returncode, first.stderr) == (0, "")  # the fast path, writing into its cwd
    second = runenv(*args, "import os; print(os.getcwd()); " + SHOW, environ=environ, cwd=project)
    assert second.stderr == ""  # still the fast path: the entry itself was never touched
    first_cwd, (second_cwd, shown) = first.stdout.strip(), second.stdout.strip().split("\n")
    assert first_cwd != second_cwd and shown == "one a"
    assert not Path(first_cwd).exists()  # that run was over: the next one swept its copy
    assert (project / "note.txt").read_text() == "one\n"  # the user's files, of course
