"""The embedded engine end to end: tasks and actors in their own runtime envs, real processes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import psutil
import pytest
from wheels import build_wheel

import runenv
from runenv import (
    ActorDiedError,
    GetTimeoutError,
    RuntimeEnvSetupError,
    TaskError,
    WorkerCrashedError,
)

# Workers cannot import this test module: ship its functions and classes by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(autouse=True)
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    yield
    runenv.shutdown()


def demo_wheels(directory: Path) -> Path:
    """Two versions of one package, for envs that must each see their own."""
    build_wheel(directory, "runenv-demo-a", "1.0")
    build_wheel(directory, "runenv-demo-a", "2.0")
    return directory


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    return demo_wheels(tmp_path / "wheels")


def pinned(wheels: Path, requirement: str) -> dict[str, object]:
    return {
        "pip": {
            "packages": [requirement],
            "pip_install_options": ["--no-index", "--find-links", str(wheels)],
        }
    }


@runenv.remote
def demo_version() -> str:
    import runenv_demo_a

    return str(runenv_demo_a.VERSION)


@runenv.remote
class VersionActor:
    def version(self) -> str:
        import runenv_demo_a

        return str(runenv_demo_a.VERSION)


@runenv.remote
def env_of(*names: str) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in names}


@runenv.remote
def add(a: int, b: int) -> int:
    return a + b


@runenv.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.count = start

    def incr(self, by: int = 1) -> int:
        self.count += by
        return self.count

    def pid(self) -> int:
        return os.getpid()


# --- the seed scenario and env semantics ---------------------------------------------------


def test_task_and_actor_with_conflicting_versions_in_one_program(wheels: Path) -> None:
    runenv.init(runtime_env={"env_vars": {"JOB": "1"}})
    old = demo_version.options(runtime_env=pinned(wheels, "runenv-demo-a==1.0")).remote()
    actor = VersionActor.options(runtime_env=pinned(wheels, "runenv-demo-a==2.0")).remote()
    assert runenv.get([old, actor.version.remote()]) == ["1.0", "2.0"]
    with pytest.raises(TaskError, match="No module named 'runenv_demo_a'"):
        runenv.get(demo_version.remote())  # the job env has no such package


def test_child_fields_replace_and_env_vars_merge() -> None:
    runenv.init(runtime_env={"env_vars": {"A": "job", "B": "job"}})
    assert runenv.get(env_of.remote("A", "B")) == {"A": "job", "B": "job"}
    child = env_of.options(runtime_env={"env_vars": {"B": "task", "C": "task"}})
    assert runenv.get(child.remote("A", "B", "C")) == {"A": "job", "B": "task", "C": "task"}


@runenv.remote
def nested_env(names: list[str]) -> dict[str, str | None]:
    return runenv.get(env_of.options(runtime_env={"env_vars": {"NESTED": "1"}}).remote(*names))


def test_nested_work_inherits_its_parents_env() -> None:
    runenv.init(runtime_env={"env_vars": {"A": "job"}})
    parent = nested_env.options(runtime_env={"env_vars": {"A": "task", "T": "task"}})
    assert runenv.get(parent.remote(["A", "T", "NESTED"])) == {
        "A": "task",
        "T": "task",
        "NESTED": "1",
    }


@runenv.remote
def read_file(name: str) -> str:
    return Path(name).read_text()


def test_local_working_dir_per_task(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    for directory in (first, second):
        directory.mkdir()
        (directory / "data.txt").write_text(directory.name)
    runenv.init()
    refs = [
        read_file.options(runtime_env={"working_dir": str(d)}).remote("data.txt")
        for d in (first, second)
    ]
    assert runenv.get(refs) == ["one", "two"]


def test_runtime_context_inside_work() -> None:
    @runenv.remote
    def context() -> tuple[str, str | None, dict[str, object]]:
        ctx = runenv.get_runtime_context()
        return ctx.job_id, ctx.task_id, ctx.runtime_env

    runenv.init(runtime_env={"env_vars": {"A": "1"}})
    job_id, task_id, env = runenv.get(context.remote())
    assert job_id == runenv.get_runtime_context().job_id
    assert task_id
    assert env["env_vars"] == {"A": "1"}


# --- objects, actors, handles --------------------------------------------------------------


def test_refs_as_arguments_are_resolved_first() -> None:
    runenv.init()
    total = add.remote(add.remote(1, 2), runenv.put(10))
    assert runenv.get(total) == 13


def test_wait_returns_ready_and_pending() -> None:
    @runenv.remote
    def slow() -> int:
        time.sleep(30)
        return 1

    runenv.init(num_cpus=2)
    fast, sleeper = add.remote(1, 1), slow.remote()
    ready, pending = runenv.wait([sleeper, fast], num_returns=1, timeout=20)
    assert (ready, pending) == ([fast], [sleeper])
    with pytest.raises(GetTimeoutError):
        runenv.get(sleeper, timeout=0.2)


def test_actor_keeps_state_and_runs_calls_in_order() -> None:
    runenv.init()
    counter = Counter.remote(10)
    assert runenv.get([counter.incr.remote() for _ in range(50)]) == list(range(11, 61))


def test_named_actor_and_handles_passed_to_tasks() -> None:
    @runenv.remote
    def bump(handle: runenv.ActorHandle) -> int:
        return int(runenv.get(handle.incr.remote(5)))

    runenv.init()
    counter = Counter.options(name="shared").remote()
    found = runenv.get_actor("shared")
    assert runenv.get(bump.remote(found)) == 5
    assert runenv.get(counter.incr.remote()) == 6


def test_large_values_round_trip() -> None:
    @runenv.remote
    def reverse(data: bytearray) -> bytearray:
        return data[::-1]

    runenv.init()
    payload = bytearray(os.urandom(1024)) * (50 * 1024)  # 50 MiB
    assert runenv.get(reverse.remote(payload)) == payload[::-1]


# --- failures ------------------------------------------------------------------------------


class CustomError(Exception):
    pass


def test_remote_exception_is_also_its_original_type() -> None:
    @runenv.remote
    def fails() -> None:
        raise CustomError("bad input")

    runenv.init()
    with pytest.raises(CustomError) as caught:
        runenv.get(fails.remote())
    assert isinstance(caught.value, TaskError)
    assert "task " in str(caught.value) and "bad input" in str(caught.value)
    assert "Traceback" in str(caught.value)  # the remote traceback
    dependent = add.remote(add.remote(1, 1), fails.remote())
    with pytest.raises(CustomError):
        runenv.get(dependent)  # a failed argument fails the task that needs it


def test_env_setup_failure_fails_every_waiting_task(tmp_path: Path) -> None:
    runenv.init()
    broken = add.options(
        runtime_env={
            "pip": {"packages": ["runenv-missing-pkg"], "pip_install_options": ["--no-index"]}
        }
    )
    refs = [broken.remote(1, i) for i in range(3)]
    for ref in refs:
        with pytest.raises(RuntimeEnvSetupError, match="runtime env setup failed"):
            runenv.get(ref, timeout=60)
    assert runenv.get(add.remote(1, 1)) == 2  # other envs go on


def test_worker_crash_is_retried_then_reported(tmp_path: Path) -> None:
    marker = tmp_path / "crashed-once"

    @runenv.remote
    def crash_once() -> str:
        if not marker.exists():
            marker.write_text("")
            os._exit(3)
        return "second try"

    @runenv.remote(max_retries=0)
    def always_crash() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    runenv.init()
    assert runenv.get(crash_once.remote(), timeout=60) == "second try"
    with pytest.raises(WorkerCrashedError, match="the worker running it died"):
        runenv.get(always_crash.remote(), timeout=60)


def test_actor_died_for_pending_and_later_calls() -> None:
    @runenv.remote
    class Fragile:
        def crash(self) -> None:
            os._exit(1)

        def ping(self) -> str:
            return "pong"

    runenv.init()
    actor = Fragile.remote()
    assert runenv.get(actor.ping.remote()) == "pong"
    crash = actor.crash.remote()
    with pytest.raises(ActorDiedError):
        runenv.get(crash, timeout=60)
    with pytest.raises(ActorDiedError, match="the actor died"):
        runenv.get(actor.ping.remote(), timeout=60)


def test_actor_whose_init_raises() -> None:
    @runenv.remote
    class Broken:
        def __init__(self) -> None:
            raise ValueError("no config")

        def ping(self) -> str:
            return "pong"

    runenv.init()
    actor = Broken.remote()
    with pytest.raises(ActorDiedError, match="__init__ raised"):
        runenv.get(actor.ping.remote(), timeout=60)


def test_killed_actor() -> None:
    runenv.init()
    counter = Counter.remote()
    pid = runenv.get(counter.pid.remote())
    runenv.kill(counter)
    with pytest.raises(ActorDiedError):
        runenv.get(counter.incr.remote(), timeout=30)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


# --- processes -----------------------------------------------------------------------------


def children_of(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if p.status() != "zombie"]


def test_no_workers_left_after_shutdown() -> None:
    before = set(children_of(os.getpid()))  # servers other tests of the session started
    runenv.init()
    counter = Counter.remote()
    runenv.get([add.remote(1, 2), counter.incr.remote()])
    assert set(children_of(os.getpid())) - before
    runenv.shutdown()
    assert set(children_of(os.getpid())) - before == set()


DRIVER = """
import os, sys, cloudpickle, runenv
@runenv.remote
def pid():
    return os.getpid()
@runenv.remote
class A:
    def pid(self):
        return os.getpid()
print(runenv.get(pid.remote()), runenv.get(A.remote().pid.remote()), flush=True)
{ending}
"""


@pytest.mark.parametrize(
    "ending", ["raise SystemExit(0)", "raise RuntimeError('unhandled')", "os.kill(os.getpid(), 9)"]
)
def test_no_orphans_when_the_driver_exits(ending: str) -> None:
    driver = subprocess.run(
        [sys.executable, "-c", DRIVER.format(ending=ending)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    pids = [int(pid) for pid in driver.stdout.split()]
    assert len(pids) == 2, driver.stderr
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the condition: workers notice their driver is gone
    assert not any(psutil.pid_exists(pid) for pid in pids)


@runenv.remote
def pid_of_worker() -> int:
    return os.getpid()


def test_idle_workers_are_reused_then_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNENV_WORKER_IDLE_SECONDS", "0.5")
    runenv.init(num_cpus=1)
    first = runenv.get(pid_of_worker.remote())
    assert runenv.get(pid_of_worker.remote()) == first  # reused
    deadline = time.monotonic() + 20
    while psutil.pid_exists(first) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the condition: the idle timeout ends the worker
    assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"


def test_max_calls_retires_the_worker() -> None:
    runenv.init(num_cpus=1)
    once = pid_of_worker.options(max_calls=1)
    assert runenv.get(once.remote()) != runenv.get(once.remote())


@runenv.remote
def interval(seconds: float) -> tuple[float, float]:
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic()


@runenv.remote
def meet(directory: str, me: str, other: str) -> bool:
    """True when the task called ``other`` is running at the same time as this one."""
    Path(directory, me).touch()
    deadline = time.monotonic() + 20
    while not Path(directory, other).exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_num_cpus_limits_what_runs_at_once(tmp_path: Path) -> None:
    runenv.init(num_cpus=2)
    whole_machine = interval.options(num_cpus=2)
    spans = sorted(runenv.get([whole_machine.remote(0.3) for _ in range(3)]))
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
    both = [meet.remote(str(tmp_path), "a", "b"), meet.remote(str(tmp_path), "b", "a")]
    assert runenv.get(both, timeout=60) == [True, True]  # two 1-CPU tasks run side by side


def test_actor_max_concurrency_runs_calls_side_by_side() -> None:
    @runenv.remote
    class Rendezvous:
        def __init__(self) -> None:
            import threading

            self.barrier = threading.Barrier(2, timeout=20)

        def meet(self) -> bool:
            self.barrier.wait()  # returns only when two calls are in here at once
            return True

    runenv.init()
    actor = Rendezvous.options(max_concurrency=2).remote()
    assert runenv.get([actor.meet.remote(), actor.meet.remote()], timeout=30) == [True, True]


@runenv.remote
def isolated_probe() -> dict[str, object]:
    import importlib.util

    import runenv as inside  # the worker API from the bootstrap, not the host's package

    nested = inside.get(add.remote(20, 22))
    return {
        "pydantic": importlib.util.find_spec("pydantic") is not None,
        "demo": importlib.util.find_spec("runenv_demo_a") is not None,
        "has_spec_module": importlib.util.find_spec("runenv.spec") is not None,
        "nested": nested,
    }


def test_isolated_worker_sees_its_env_and_the_worker_api_only(wheels: Path) -> None:
    runenv.init()
    probe = isolated_probe.options(runtime_env=pinned(wheels, "runenv-demo-a==1.0"))
    assert runenv.get(probe.remote(), timeout=120) == {
        "pydantic": False,
        "demo": True,
        "has_spec_module": False,
        "nested": 42,
    }


def test_an_actor_holds_its_num_cpus_while_it_lives() -> None:
    runenv.init(num_cpus=2)
    whole_machine = Counter.options(num_cpus=2).remote()
    assert runenv.get(whole_machine.incr.remote()) == 1
    waiting = add.remote(1, 2)
    ready, _ = runenv.wait([waiting], timeout=1.0)
    assert ready == []  # no CPU left for the task
    runenv.kill(whole_machine)
    assert runenv.get(waiting, timeout=30) == 3


def test_stale_ref_from_an_earlier_session_fails_cleanly() -> None:
    runenv.init()
    stale = runenv.put(1)
    runenv.shutdown()
    runenv.init()
    counter = Counter.remote()
    with pytest.raises(runenv.RunenvError, match="never made"):
        runenv.get(counter.incr.remote(stale), timeout=30)
    with pytest.raises(runenv.RunenvError, match="never made"):
        runenv.get(add.remote(stale, 1), timeout=30)
    assert runenv.get(add.remote(1, 1), timeout=30) == 2  # the scheduler goes on


def test_wait_refuses_repeated_refs() -> None:
    runenv.init()
    ref = runenv.put(1)
    with pytest.raises(ValueError, match="distinct"):
        runenv.wait([ref, ref], num_returns=2)


def test_a_task_bigger_than_the_machine_is_refused() -> None:
    runenv.init(num_cpus=2)
    with pytest.raises(ValueError, match="could never run"):
        add.options(num_cpus=3).remote(1, 2)


def test_shutdown_releases_threads_waiting_in_get() -> None:
    import threading

    @runenv.remote
    def forever() -> None:
        time.sleep(300)

    runenv.init()
    ref = forever.remote()
    outcome: list[BaseException] = []

    def waiter() -> None:
        try:
            runenv.get(ref)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=waiter)
    thread.start()
    runenv.shutdown()
    thread.join(30)
    assert not thread.is_alive()
    assert "shut down before it finished" in str(outcome[0])
