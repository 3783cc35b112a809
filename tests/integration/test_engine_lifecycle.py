"""What the embedded engine frees: objects nobody refers to, actors nobody holds, and everything
an init/shutdown cycle started. Real driver and worker processes."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import pytest
from conftest import GatedIndex
from wheels import build_wheel

import runenv
from runenv.cache import ResourceCache
from runenv.core import runtime as runtimes
from runenv.engine.local import LocalEngine

cloudpickle.register_pickle_by_value(sys.modules[__name__])
DEADLINE_S = 30.0


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    yield tmp_path / "home"
    runenv.shutdown()


def engine() -> LocalEngine:
    running = runtimes.current()
    assert isinstance(running, LocalEngine)
    return running


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll until ``condition`` holds (the engine applies dropped handles asynchronously)."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {DEADLINE_S:.0f} s: {what}")
        gc.collect()
        time.sleep(0.02)


def tables_empty() -> bool:
    stats = engine().stats()
    return stats["objects"] == 0 and stats["actors"] == 0 and stats["pending"] == 0


@runenv.remote
def echo(value: Any) -> Any:
    return value


@runenv.remote
def first_of(values: list[Any]) -> Any:
    return runenv.get(values[0])


@runenv.remote
def make_put(value: Any) -> list[Any]:
    return [runenv.put(value)]


@runenv.remote
def make_nested(value: Any) -> list[Any]:
    return [echo.remote(value)]


@runenv.remote
class Holder:
    def __init__(self) -> None:
        self.kept: list[Any] = []

    def keep(self, refs: list[Any]) -> int:
        self.kept.extend(refs)
        return len(self.kept)

    def read(self) -> list[Any]:
        return runenv.get(self.kept)

    def drop(self) -> None:
        self.kept.clear()

    def pid(self) -> int:
        return os.getpid()


# --- objects -------------------------------------------------------------------------------


def test_results_and_puts_are_freed_when_their_refs_are_dropped() -> None:
    runenv.init(num_cpus=2)
    refs = [echo.remote(i) for i in range(200)]
    puts = [runenv.put(bytes(1000)) for _ in range(200)]
    assert runenv.get(refs) == list(range(200))
    assert engine().stats()["objects"] == 400
    del refs, puts
    eventually(tables_empty, "the object table is empty once every ref is gone")


def test_a_result_dropped_before_its_task_ends_is_discarded() -> None:
    runenv.init(num_cpus=1)
    blocker = echo.remote(1)  # the one CPU is busy with it first
    dropped = echo.remote(2)
    del dropped
    assert runenv.get(blocker) == 1
    later = echo.remote(3)
    assert runenv.get(later) == 3
    del blocker, later
    eventually(tables_empty, "the dropped result never lingers")


def test_a_ref_inside_an_argument_outlives_the_callers_ref() -> None:
    runenv.init()
    inner = runenv.put("inside")
    outer = first_of.remote([inner])
    del inner
    gc.collect()
    assert runenv.get(outer) == "inside"


def test_refs_made_in_workers_survive_the_task_that_made_them() -> None:
    runenv.init()
    (from_put,) = runenv.get(make_put.remote("put in a worker"))
    (from_nested,) = runenv.get(make_nested.remote("nested result"))
    gc.collect()
    eventually(lambda: engine().stats()["objects"] == 2, "only the two inner objects are left")
    assert runenv.get([from_put, from_nested]) == ["put in a worker", "nested result"]
    del from_put, from_nested
    eventually(tables_empty, "the inner objects go with their last refs")


def test_an_actor_holding_refs_keeps_their_objects() -> None:
    runenv.init()
    holder = Holder.remote()
    refs = [runenv.put(i) for i in range(5)]
    assert runenv.get(holder.keep.remote(refs)) == 5
    del refs
    gc.collect()
    assert runenv.get(holder.read.remote()) == [0, 1, 2, 3, 4]
    runenv.get(holder.drop.remote())
    eventually(lambda: engine().stats()["objects"] == 0, "objects the actor dropped are freed")


def test_get_after_shutdown_is_a_clear_error() -> None:
    runenv.init()
    ref = echo.remote(1)
    runenv.get(ref)
    runenv.shutdown()
    with pytest.raises(runenv.RunenvError, match="shut down") as raised:
        runenv.get(ref)
    assert raised.value.hint
    assert not runenv.is_initialized()  # get did not start a new engine
    runenv.init()
    with pytest.raises(runenv.RunenvError, match="shut down"):
        runenv.get(ref)


def test_a_driver_that_forgot_a_function_gets_it_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runenv.engine.local.MAX_FUNCTIONS", 2)

    @runenv.remote
    def double(value: int) -> int:
        return 2 * value

    @runenv.remote
    def negate(value: int) -> int:
        return -value

    @runenv.remote
    def submit_many() -> list[int]:
        return [runenv.get(f.remote(3)) for f in (echo, double, negate, echo)]

    runenv.init()
    # `echo` comes back last, after the driver evicted it: the worker sends it again.
    assert runenv.get(submit_many.remote()) == [3, 6, -3, 3]
    assert engine().stats()["functions"] <= 2


# --- actors --------------------------------------------------------------------------------


def test_an_actor_out_of_scope_stops_and_frees_its_cpus() -> None:
    runenv.init(num_cpus=2)
    holder = Holder.options(num_cpus=2).remote()
    pid = runenv.get(holder.pid.remote())
    pending = holder.keep.remote([1])  # queued calls still run
    del holder
    assert runenv.get(pending) == 1
    del pending
    eventually(lambda: not _alive(pid), "the actor's worker exits")
    eventually(tables_empty, "the actor leaves the table")
    assert runenv.get(echo.options(num_cpus=2).remote("cpus are back"), timeout=30)


def test_a_handle_held_by_a_task_keeps_the_actor() -> None:
    runenv.init()

    @runenv.remote
    def call_later(handles: list[Any]) -> int:
        time.sleep(0.5)
        return int(runenv.get(handles[0].keep.remote([1])))

    holder = Holder.remote()
    result = call_later.remote([holder])
    del holder
    assert runenv.get(result) == 1
    del result
    eventually(tables_empty, "the actor goes once the task let go of its handle")


def test_a_killed_actor_frees_its_worker_and_its_entry() -> None:
    runenv.init()
    holder = Holder.remote()
    pid = runenv.get(holder.pid.remote())
    runenv.kill(holder)
    assert not _alive(pid)
    with pytest.raises(runenv.ActorDiedError):
        runenv.get(holder.pid.remote())
    del holder
    eventually(tables_empty, "a dead actor's entry goes with its last handle")


def test_a_named_actor_lives_without_handles() -> None:
    runenv.init()
    Holder.options(name="kept").remote()
    gc.collect()
    assert runenv.get(runenv.get_actor("kept").keep.remote([1])) == 1


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- a long-running driver -----------------------------------------------------------------

LONG_DRIVER = """
import gc, json, sys, psutil, runenv
from runenv.core import runtime

@runenv.remote
def small(i):
    return i

runenv.init(num_cpus=2)
me = psutil.Process()
rss = []
for batch in range(200):
    refs = [small.remote(i) for i in range(1000)]
    assert runenv.get(refs)[-1] == 999
    del refs
    for i in range(50):
        runenv.put(bytes(1000))
    if batch % 10 == 9:
        gc.collect()
        rss.append(me.memory_info().rss)
stats = runtime.current().stats()
print(json.dumps({"rss": rss, "stats": stats}))
"""


def test_a_driver_running_200k_tasks_does_not_grow(tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(LONG_DRIVER)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=900, check=True
    )
    report = json.loads(done.stdout.splitlines()[-1])
    warm, last = report["rss"][1], report["rss"][-1]
    assert last - warm < 20 * 2**20, f"RSS grew from {warm >> 20} to {last >> 20} MiB"
    assert report["stats"]["objects"] == 0
    assert report["stats"]["pending"] == 0


# --- init and shutdown ---------------------------------------------------------------------


def test_init_shutdown_cycles_leave_nothing_behind(tmp_path: Path, home: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "runenv-demo-a", "1.0")
    code = tmp_path / "code"
    code.mkdir()
    (code / "data.txt").write_text("from the working dir")
    env = {
        "working_dir": str(code),
        "pip": {
            "packages": ["runenv-demo-a==1.0"],
            "pip_install_options": ["--no-index", "--find-links", str(wheels)],
        },
    }

    @runenv.remote
    def read() -> str:
        return Path("data.txt").read_text()

    me = psutil.Process()
    before = _children(me)  # the session's servers may be children too
    runenv.init(runtime_env=env)  # the first cycle builds the env
    assert runenv.get(read.remote()) == "from the working dir"
    runenv.shutdown()
    baseline = (me.num_fds(), threading.active_count())
    for _ in range(100):
        runenv.init(runtime_env=env)
        assert runenv.get(read.remote()) == "from the working dir"
        runenv.shutdown()
    eventually(lambda: _children(me) == before, "no worker process is left")
    eventually(lambda: threading.active_count() <= baseline[1], "no thread is left")
    assert me.num_fds() <= baseline[0]
    in_use = [entry.key for entry in ResourceCache().entries() if entry.in_use]
    assert in_use == []


def test_the_first_worker_starts_with_the_engine_and_stops_with_it() -> None:
    me = psutil.Process()
    before = _children(me)  # the session's servers may be children too
    for _ in range(20):
        runenv.init()
        assert len(_children(me)) == len(before) + 1  # started before init returned
        runenv.shutdown()  # at once: the first worker may not even be adopted yet
        assert _children(me) == before
    runenv.init()
    assert runenv.get(echo.remote("first")) == "first"


def _children(process: psutil.Process) -> set[int]:
    return {
        child.pid
        for child in process.children(recursive=True)
        if child.status() != psutil.STATUS_ZOMBIE
    }


def test_a_job_env_that_timed_out_is_set_up_again_for_the_next_task(
    gated_index: GatedIndex,
) -> None:
    env = {
        "pip": gated_index.locked_pip(),
        "config": {"setup_timeout_seconds": 2, "eager_install": False},
    }
    runenv.init(runtime_env=env)  # the engine holds its job env for as long as it runs
    with pytest.raises(runenv.RuntimeEnvSetupError, match="timed out"):
        runenv.get(echo.remote(1))
    assert gated_index.requested.is_set()  # it was stuck downloading
    gated_index.gate.set()
    assert runenv.get(echo.remote(2)) == 2


# --- found in review: each of these failed before its fix ---------------------------------


class Carrier(Exception):
    def __init__(self, ref: Any) -> None:
        super().__init__("carries a ref")
        self.ref = ref


@runenv.remote(max_retries=0)
def raise_with_ref() -> None:
    raise Carrier(runenv.put("carried"))


def test_a_ref_carried_by_an_exception_stays_alive() -> None:
    runenv.init()
    with pytest.raises(Carrier) as raised:
        runenv.get(raise_with_ref.remote())
    assert runenv.get(raised.value.ref, timeout=30) == "carried"  # the cause's own attribute


def test_requests_of_a_worker_that_exited_are_not_carried_out() -> None:
    @runenv.remote(max_retries=0)
    def flood_then_die() -> None:
        def submit() -> None:
            while True:
                runenv.put(bytes(100))
                echo.remote(1)
                Holder.remote()

        for _ in range(4):
            threading.Thread(target=submit, daemon=True).start()
        time.sleep(0.2)  # requests are in flight
        os._exit(1)

    runenv.init(num_cpus=2)
    for _ in range(3):
        with pytest.raises(runenv.WorkerCrashedError):
            runenv.get(flood_then_die.remote())
    eventually(tables_empty, "nothing is left held by the workers that died")


def test_an_actor_whose_constructor_argument_failed_is_dead() -> None:
    @runenv.remote(max_retries=0)
    def no_config() -> None:
        raise ValueError("no config")

    runenv.init()
    holder = Holder.remote(no_config.remote())
    with pytest.raises(runenv.ActorDiedError, match="constructor failed: ValueError: no config"):
        runenv.get(holder.pid.remote(), timeout=30)
    assert engine().stats()["workers"] <= 1  # no worker was started for it (1: the prestarted)


def test_a_task_waiting_in_two_nested_gets_gives_its_cpu_until_both_end() -> None:
    @runenv.remote
    def slow() -> int:
        time.sleep(0.3)
        return 1

    @runenv.remote
    def after(value: int) -> int:
        return value + 1

    @runenv.remote
    def parent() -> dict[str, int]:
        gate = slow.remote()
        out: dict[str, int] = {}

        def first() -> None:
            out["a"] = runenv.get(gate)

        def second() -> None:
            out["b"] = runenv.get(after.remote(gate))  # runs only once slow is done

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return out

    runenv.init(num_cpus=1)
    for _ in range(5):
        assert runenv.get(parent.remote(), timeout=60) == {"a": 1, "b": 2}


def test_a_task_that_needs_no_cpu_runs_while_every_cpu_is_taken() -> None:
    @runenv.remote
    def busy(seconds: float) -> None:
        time.sleep(seconds)

    @runenv.remote(num_cpus=0)
    def light() -> str:
        return "ran"

    runenv.init(num_cpus=1)
    blocker = busy.remote(60)
    assert runenv.get(light.remote(), timeout=30) == "ran"
    assert runenv.wait([blocker], timeout=0)[0] == []  # the CPU was taken all along


def test_a_worker_keeps_a_bounded_number_of_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runenv.engine.local.WORKER_FUNCTIONS", 3)

    @runenv.remote
    def loaded() -> int:
        import gc

        from runenv.core.worker import Worker

        (worker,) = [item for item in gc.get_objects() if isinstance(item, Worker)]
        return len(worker.functions)

    runenv.init(num_cpus=1)
    functions = [runenv.remote(lambda i=index: i) for index in range(6)]
    assert [runenv.get(function.remote()) for function in functions] == list(range(6))
    assert runenv.get(loaded.remote()) <= 3
    assert all(len(worker.defined) <= 3 for worker in engine().pool)
    assert runenv.get(functions[0].remote()) == 0  # forgotten, then sent again


def test_put_of_a_ref_is_refused() -> None:
    runenv.init()
    with pytest.raises(TypeError, match="ObjectRef"):
        runenv.put(runenv.put(1))
