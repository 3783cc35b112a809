"""The process launcher: groups, death signals, deadlines, threads, output (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from runenv import process
from runenv.cache import ResourceCache
from runenv.deadline import Deadline
from runenv.envs.setup import Setup
from runenv.errors import EnvSetupError, SetupTimeoutError
from runenv.setup_log import SetupLog

WAIT_S = 30.0
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")


def wait_for(condition: object, what: str, deadline_s: float = WAIT_S) -> None:
    assert callable(condition)
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} after {deadline_s:g} s"
        time.sleep(0.02)


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie nobody has reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def open_pipes() -> set[int]:
    """Our descriptors that are pipes: what a launch opens (a leak would be one). Other files
    are left out: threads of earlier tests' servers open and close theirs at any time."""
    pipes = set()
    for fd in open_fds():
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
                pipes.add(fd)
        except OSError:
            continue  # closed meanwhile
    return pipes


def children() -> set[int]:
    """Our child processes (the session's test servers are among them)."""
    return {child.pid for child in psutil.Process().children()}


def test_fifty_threads_start_processes_at_once_all_reaped() -> None:
    pipes_before, children_before = open_pipes(), children()
    barrier = threading.Barrier(50)
    results: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def launch(index: int) -> None:
        try:
            barrier.wait(WAIT_S)
            done = process.run(["/bin/sh", "-c", f"echo {index}"], timeout=WAIT_S)
            results.append((done.returncode, done.stdout.decode().strip()))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=launch, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert errors == []
    assert sorted(results) == sorted((0, str(i)) for i in range(50))
    assert children() == children_before  # all reaped: no zombie among them
    assert open_pipes() <= pipes_before


# A real parent running the launcher: it starts sleepers from its main thread, from threads that
# exit before it is killed, and a Python that arms its own death signal (as workers do).
PARENT = """
import json, os, sys, threading, time
from runenv import process

ARMS_ITSELF = (
    "import sys; from runenv.core.lifetime import die_with_parent; "
    "die_with_parent(int(sys.argv[1])); print('armed', flush=True); sys.stdin.read()"
)
pids = {}
pids["main thread"] = process.start(["sleep", "300"]).pid
armed = process.start(
    [sys.executable, "-c", ARMS_ITSELF, str(os.getpid())],
    stdin=-1, stdout=-1, arms_itself=True,
)
armed.stdout.readline()
pids["arms itself"] = armed.pid
tids = []

def from_a_thread(name):
    tids.append(threading.get_native_id())
    pids[name] = process.start(["sleep", "300"], own_group=name != "exited thread 0").pid

threads = [threading.Thread(target=from_a_thread, args=(f"exited thread {i}",)) for i in range(3)]
for thread in threads:
    thread.start()
    thread.join()
deadline = time.monotonic() + 30
while any(os.path.exists(f"/proc/self/task/{tid}") for tid in tids):
    assert time.monotonic() < deadline
    time.sleep(0.01)
# The threads are gone; their children must still run (the kernel sends the death signal
# when the thread that forked a child exits, so the launcher forks from a thread that stays).
alive = {name: os.waitpid(pid, os.WNOHANG) == (0, 0) for name, pid in pids.items()}
print(json.dumps({"pids": pids, "alive": alive}), flush=True)
sys.stdin.read()
"""


@linux_only
def test_children_die_with_a_sigkilled_parent_even_from_exited_threads() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=dict(os.environ),
    )
    assert parent.stdout is not None
    report = json.loads(parent.stdout.readline() or "{}")
    try:
        assert report["alive"] == {name: True for name in report["pids"]}
        assert len(report["pids"]) == 5
    finally:
        parent.kill()
        parent.wait(WAIT_S)
    for name, pid in report["pids"].items():
        wait_for(lambda pid=pid: gone(pid), f"{name}'s child {pid} still runs")


def test_deadline_kills_the_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    script = f"sleep 300 & echo $! > {pid_file}; wait"
    children_before = children()
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        process.run(["/bin/sh", "-c", script], timeout=1)
    assert time.monotonic() - started < 10
    grandchild = int(pid_file.read_text())
    wait_for(lambda: gone(grandchild), "the grandchild outlived the deadline")
    assert children() == children_before  # the child was reaped


@linux_only
def test_a_child_whose_parent_died_before_it_was_armed_exits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race between fork and prctl: the helper sees another parent and never runs the
    command. Pid 1 stands in for the launcher that died."""
    for helper in ("setpriv", "python"):
        if helper == "python":
            monkeypatch.setattr(process, "_setpriv", lambda: None)
        elif process._setpriv() is None:
            continue
        command = [*process._death_signal_helper(1), "/bin/echo", "ran"]
        done = subprocess.run(command, capture_output=True, timeout=WAIT_S)
        assert (done.returncode, done.stdout) == (137, b""), helper
        armed = process._death_signal_helper(os.getpid())
        done = subprocess.run([*armed, "/bin/echo", "ran"], capture_output=True, timeout=WAIT_S)
        assert (done.returncode, done.stdout) == (0, b"ran\n"), helper


def test_a_python_that_arms_itself_exits_when_its_parent_is_not_the_expected_one() -> None:
    code = "from runenv.core.lifetime import die_with_parent; die_with_parent(1); print('ran')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=WAIT_S)
    assert (done.returncode, done.stdout) == (1, b"")


def test_own_group_or_ours() -> None:
    own = process.start(["sleep", "300"])
    ours = process.start(["sleep", "300"], own_group=False)
    try:
        assert os.getpgid(own.pid) == own.pid and os.getsid(own.pid) == own.pid
        assert os.getpgid(ours.pid) == os.getpgrp()
    finally:
        process.kill_group(own)
        ours.kill()
        ours.wait()


def test_missing_or_unexecutable_program_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        process.start(["runenv-no-such-program"])
    with pytest.raises(FileNotFoundError):
        process.start(["./not-here"], cwd=str(tmp_path))
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(PermissionError):
        process.start([str(script)])
    script.chmod(0o755)
    assert process.run([str(script)], timeout=WAIT_S).stdout == b"hi\n"


def test_input_and_output() -> None:
    done = process.run(["cat"], timeout=WAIT_S, input=b"through\n")
    assert (done.returncode, done.stdout) == (0, b"through\n")


def new_setup(tmp_path: Path, seconds: float | None) -> Setup:
    return Setup(
        ResourceCache(tmp_path / "cache"),
        Deadline(seconds),
        SetupLog(tmp_path / "setup.log"),
        lambda stage, what: None,
    )


def test_setup_step_output_goes_to_the_setup_log(tmp_path: Path) -> None:
    setup = new_setup(tmp_path, None)
    setup.run(["/bin/sh", "-c", "echo to stdout; echo to stderr >&2"], "saying things")
    log = (tmp_path / "setup.log").read_text()
    assert "to stdout" in log and "to stderr" in log
    with pytest.raises(EnvSetupError) as caught:
        setup.run(["/bin/sh", "-c", "echo broken >&2; exit 3"], "breaking")
    assert "breaking failed (exit code 3)" in caught.value.message
    assert "broken" in caught.value.message
    assert caught.value.log_path == str(tmp_path / "setup.log")


def test_setup_step_past_its_deadline(tmp_path: Path) -> None:
    setup = new_setup(tmp_path, 1)
    children_before = children()
    with pytest.raises(SetupTimeoutError) as caught:
        setup.run(["/bin/sh", "-c", "echo waiting; sleep 300"], "waiting")
    assert caught.value.step == "waiting"
    assert "waiting" in caught.value.message
    assert children() == children_before


def test_spawn_detached_is_nobodys_child_and_does_not_wait(tmp_path: Path) -> None:
    report, release = tmp_path / "report", tmp_path / "release"
    script = (
        f"echo $PPID $$ > {report}.tmp && mv {report}.tmp {report}; "
        f"while [ ! -e {release} ]; do sleep 0.02; done; echo out; echo err >&2"
    )
    children_before = children()
    with open(tmp_path / "output", "wb") as output:
        spawned = process.spawn_detached(["/bin/sh", "-c", script], output=output)
    try:
        assert children() == children_before  # the shell in between is gone and reaped
        wait_for(report.exists, "the detached process never ran")
        parent, pid = (int(word) for word in report.read_text().split())
        assert pid == spawned and parent != os.getpid() and not gone(pid)
        assert os.getsid(pid) != os.getsid(0)  # a session of its own
    finally:
        release.touch()  # it ends even when an assertion failed: nobody else would end it
    wait_for(lambda: gone(pid), "the detached process never ended")
    assert (tmp_path / "output").read_text() == "out\nerr\n"


# In a forked child the launcher thread is not there: it must start a new one.
FORKING = """
import os, threading
from runenv import process

def echo(word, into):
    into.append(process.run(["echo", word], timeout=30).stdout)

before = []
thread = threading.Thread(target=echo, args=("parent", before))
thread.start()
thread.join(30)
assert before == [b"parent\\n"]
pid = os.fork()
if pid == 0:
    after = []
    thread = threading.Thread(target=echo, args=("child", after))
    thread.start()
    thread.join(30)
    os._exit(0 if after == [b"child\\n"] else 1)
_, status = os.waitpid(pid, 0)
raise SystemExit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_interpreter_gets_a_launcher_of_its_own() -> None:
    done = subprocess.run([sys.executable, "-c", FORKING], timeout=WAIT_S, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


def test_an_environment_over_the_system_limit_is_a_clear_error() -> None:
    from runenv.errors import RunenvError

    too_long = "x" * 200_000  # one variable over Linux's 128 KiB per string (E2BIG)
    with pytest.raises(RunenvError) as caught:
        process.start(["true"], env={**os.environ, "A": too_long})
    assert "Argument list too long" in caught.value.message
    assert caught.value.hint is not None and "${VAR}" in caught.value.hint
