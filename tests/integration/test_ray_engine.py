"""runenv's API on a real two-node Ray cluster: the engine suite's cases that apply, run as
they are (``RAY_ADDRESS`` makes ``runenv.init()`` connect, as Ray honours it), and what only a
cluster has: nodes, a node without runenv's plugin, stock mode."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import psutil
import pytest
import test_engine as suite
from raycluster import Node, RayCluster
from wheels import build_wheel

import runenv
from runenv import ActorDiedError, RuntimeEnvSetupError, UsageError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

# The cases of the embedded engine's suite that mean the same on Ray. Left out: those that set
# runenv.init(num_cpus=...) (a cluster's CPUs are its nodes'), and those about the embedded
# engine's own processes (idle workers, orphans, its bootstrap).
test_child_fields_replace_and_env_vars_merge = suite.test_child_fields_replace_and_env_vars_merge
test_nested_work_inherits_its_parents_env = suite.test_nested_work_inherits_its_parents_env
test_local_working_dir_per_task = suite.test_local_working_dir_per_task
test_runtime_context_inside_work = suite.test_runtime_context_inside_work
test_refs_as_arguments_are_resolved_first = suite.test_refs_as_arguments_are_resolved_first
test_actor_keeps_state_and_runs_calls_in_order = (
    suite.test_actor_keeps_state_and_runs_calls_in_order
)
test_named_actor_and_handles_passed_to_tasks = suite.test_named_actor_and_handles_passed_to_tasks
test_large_values_round_trip = suite.test_large_values_round_trip
test_remote_exception_is_also_its_original_type = (
    suite.test_remote_exception_is_also_its_original_type
)
test_worker_crash_is_retried_then_reported = suite.test_worker_crash_is_retried_then_reported
test_actor_died_for_pending_and_later_calls = suite.test_actor_died_for_pending_and_later_calls
test_actor_whose_init_raises = suite.test_actor_whose_init_raises
test_actor_max_concurrency_runs_calls_side_by_side = (
    suite.test_actor_max_concurrency_runs_calls_side_by_side
)
test_wait_refuses_repeated_refs = suite.test_wait_refuses_repeated_refs
test_env_setup_failure_fails_every_waiting_task = (
    suite.test_env_setup_failure_fails_every_waiting_task
)
test_task_and_actor_with_conflicting_versions_in_one_program = (
    suite.test_task_and_actor_with_conflicting_versions_in_one_program
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    root = tmp_path_factory.mktemp("ray")
    # Node c has no plugin and no CPU: only work pinned to it (resources={"node_c": 1},
    # num_cpus=0) lands there.
    nodes = [
        Node("a", root / "a", head=True),
        Node("b", root / "b"),
        Node("c", root / "c", plugin=False, cpus=0),
    ]
    started = RayCluster(root, nodes).start()
    try:
        yield started
    finally:
        started.stop()


def use_cluster(cluster: RayCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "HOME",
        "RAY_AUTH_MODE",
        "RAY_USAGE_STATS_ENABLED",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV",
    ):
        monkeypatch.setenv(name, cluster.env[name])
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "driver-home"))
    monkeypatch.delenv("RUNENV_RAY_MODE", raising=False)


@pytest.fixture(autouse=True)
def engine(cluster: RayCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    use_cluster(cluster, monkeypatch, tmp_path)
    yield
    runenv.shutdown()


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    return suite.demo_wheels(tmp_path / "wheels")


@runenv.remote
def where(*names: str) -> dict[str, str | None]:
    import ray

    return {
        "node": ray.get_runtime_context().get_node_id(),
        **{name: os.environ.get(name) for name in names},
    }


@runenv.remote
def demo_version_and_python() -> tuple[str, str]:
    import sys

    import runenv_demo_a

    return str(runenv_demo_a.VERSION), sys.executable


def on(node: str, **options: object) -> dict[str, object]:
    return {"resources": {f"node_{node}": 1}, **options}


def test_work_runs_on_the_cluster_nodes(cluster: RayCluster) -> None:
    runenv.init()
    a, b = runenv.get(
        [
            where.options(**on("a")).remote("RUNENV_HOME"),
            where.options(**on("b")).remote("RUNENV_HOME"),
        ]
    )
    assert a["node"] != b["node"]
    assert a["RUNENV_HOME"] == str(cluster.nodes[0].runenv_home)
    assert b["RUNENV_HOME"] == str(cluster.nodes[1].runenv_home)


def test_every_node_installs_the_locked_versions(cluster: RayCluster, wheels: Path) -> None:
    env = suite.pinned(wheels, "runenv-demo-a")  # unpinned: the lock picks 2.0
    runenv.init(runtime_env=env)
    first = runenv.get(demo_version_and_python.options(**on("a")).remote(), timeout=180)
    build_wheel(wheels, "runenv-demo-a", "3.0")  # the index moves on; the lock does not
    second = runenv.get(demo_version_and_python.options(**on("b")).remote(), timeout=180)
    assert (first[0], second[0]) == ("2.0", "2.0")
    assert first[1].startswith(str(cluster.nodes[0].runenv_home))
    assert second[1].startswith(str(cluster.nodes[1].runenv_home))


@runenv.remote
def node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


def test_nodes_with_the_plugin_say_so_in_the_gcs() -> None:
    from ray.experimental.internal_kv import _internal_kv_exists

    from runenv.ray import translate

    runenv.init()
    ids = runenv.get([node_id.options(**on(name, num_cpus=0)).remote() for name in "abc"])
    deadline = time.monotonic() + 60  # the agents register in the background when they start
    registered: list[bool] = []
    while time.monotonic() < deadline:
        registered = [
            _internal_kv_exists(translate.registry_key(n), namespace=translate.REGISTRY_NAMESPACE)
            for n in ids
        ]
        if registered[:2] == [True, True]:
            break
        time.sleep(0.1)  # polling the GCS, which has no waiter for a key
    assert registered == [True, True, False]  # node c has no plugin


def test_a_node_without_the_plugin_fails_clearly_never_the_base_env() -> None:
    runenv.init(runtime_env={"env_vars": {"A": "job"}})
    with pytest.raises(RuntimeEnvSetupError, match="has no runenv plugin"):
        runenv.get(where.options(**on("c", num_cpus=0)).remote("A"), timeout=120)
    assert runenv.get(where.options(**on("a")).remote("A"))["A"] == "job"  # elsewhere: fine

    @runenv.remote(num_cpus=0, resources={"node_c": 1})
    class Pinned:
        def ping(self) -> str:
            return "pong"

    with pytest.raises(RuntimeEnvSetupError, match="has no runenv plugin"):
        runenv.get(Pinned.remote().ping.remote(), timeout=120)


@runenv.remote
def first_plus_one(refs: list[runenv.ObjectRef]) -> int:
    return int(runenv.get(refs[0])) + 1


def test_through_the_ray_client(
    cluster: RayCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RAY_ADDRESS")
    (tmp_path / "data.txt").write_text("through the client")
    runenv.init(address=cluster.client_address, runtime_env={"working_dir": str(tmp_path)})
    assert runenv.get(suite.read_file.remote("data.txt")) == "through the client"
    assert runenv.get(first_plus_one.remote([runenv.put(41)])) == 42  # a nested ref


def test_dropped_refs_let_go_of_rays_references() -> None:
    from runenv.core import runtime

    runenv.init()
    refs = [runenv.put(i) for i in range(50)]
    nested = runenv.get(first_plus_one.remote([refs[0]]))  # a ref that travelled and came back
    engine = runtime.current()
    assert engine is not None and engine.stats()["objects"] >= 50
    del refs
    assert nested == 1
    assert engine.stats()["objects"] == 0  # Ray's references went with the last runenv handle


def test_killed_actor() -> None:
    runenv.init()
    counter = suite.Counter.remote()
    pid = runenv.get(counter.pid.remote())
    runenv.kill(counter)
    with pytest.raises(ActorDiedError):
        runenv.get(counter.incr.remote(), timeout=30)
    deadline = time.monotonic() + 30
    while psutil.pid_exists(pid) and time.monotonic() < deadline:  # Ray kills asynchronously
        time.sleep(0.05)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_custom_resources_are_refused_by_the_embedded_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAY_ADDRESS")
    runenv.init(address="local")
    with pytest.raises(UsageError, match="no custom resources"):
        where.options(**on("a")).remote()


def test_num_cpus_cannot_be_given_for_a_cluster() -> None:
    with pytest.raises(UsageError, match="num_cpus"):
        runenv.init(num_cpus=2)


# --- stock mode: a cluster without runenv's plugin ------------------------------------------


@pytest.fixture(scope="module")
def stock_cluster(
    cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RayCluster]:
    cluster.stop()  # one cluster at a time on this small machine
    root = tmp_path_factory.mktemp("ray-stock")
    started = RayCluster(root, [Node("s", root / "s", head=True, plugin=False)]).start()
    try:
        yield started
    finally:
        started.stop()


def test_stock_cluster_gets_rays_own_fields_with_the_locked_pins(
    stock_cluster: RayCluster,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    wheels: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_cluster(stock_cluster, monkeypatch, tmp_path)
    code = tmp_path / "code"
    code.mkdir()
    (code / "data.txt").write_text("stock")
    env = {**suite.pinned(wheels, "runenv-demo-a"), "env_vars": {"A": "job"}}
    runenv.init(runtime_env={**env, "working_dir": str(code)})
    build_wheel(wheels, "runenv-demo-a", "3.0")  # after the lock: never installed
    version, python = runenv.get(demo_version_and_python.remote(), timeout=300)
    assert version == "2.0"
    assert "runtime_resources" in python  # Ray's own pip env, built by Ray on the node
    assert runenv.get(suite.read_file.remote("data.txt")) == "stock"
    assert runenv.get(where.remote("A"))["A"] == "job"
    assert capfd.readouterr().err.count("stock mode") == 1  # said once
