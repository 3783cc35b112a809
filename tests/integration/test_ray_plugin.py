"""runenv's Ray plugin on a real 2-node cluster (one `ray start` per node, each with its own
RUNENV_HOME), driven with Ray's own API: the env from the driver's lock is built in each node's
cache, workers run with its interpreter and see only its packages plus Ray, and a restarted
cluster reuses the nodes' caches."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from raycluster import Node, RayCluster
from wheels import build_wheel

from runenv.materialize import prepare
from runenv.ray.node import field_key
from runenv.ray.translate import plugins_variable_value, to_ray
from runenv.spec import RuntimeEnv

ray = pytest.importorskip("ray")
# The workers cannot import this test module: its functions travel by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(300)

DEMO = "runenv-demo-ray"
# In the cluster's Python (the test extras) but not needed by Ray: a task must not see them.
NOT_RAY = ("moto", "boto3", "pytest")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("wheels")
    build_wheel(directory, DEMO, "1.0")
    build_wheel(directory, DEMO, "2.0")
    return directory


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    root = tmp_path_factory.mktemp("ray")
    nodes = [Node("a", root / "a", head=True), Node("b", root / "b")]
    cluster = RayCluster(root, nodes)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def driver(cluster: RayCluster) -> Iterator[Callable[[], None]]:
    """The test process as a Ray driver, with the cluster's environment; ``connect()`` again
    after a restart."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in cluster.env.items():
            patch.setenv(name, value)
        patch.setenv("RUNENV_HOME", str(cluster.root / "driver-home"))

        def connect() -> None:
            ray.shutdown()
            ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)

        connect()
        try:
            yield connect
        finally:
            ray.shutdown()


def pip_env(wheels: Path, version: str) -> RuntimeEnv:
    options = ["--no-index", "--find-links", str(wheels)]
    return RuntimeEnv(pip={"packages": [f"{DEMO}=={version}"], "pip_install_options": options})


def plugin_env(env: RuntimeEnv) -> dict[str, Any]:
    return to_ray(prepare(env), "plugin")


def probe() -> dict[str, Any]:
    """What a worker sees: run inside tasks and actors."""
    import importlib.util
    import os
    import sys

    def importable(name: str) -> bool:
        return importlib.util.find_spec(name) is not None

    import runenv_demo_ray  # type: ignore[import-not-found]

    return {
        "version": runenv_demo_ray.VERSION,
        "executable": sys.executable,
        "virtual_env": os.environ.get("VIRTUAL_ENV"),
        "path": os.environ.get("PATH", ""),
        "active": os.environ.get("RUNENV_ACTIVE"),
        "importable": {name: importable(name) for name in ("ray", "runenv", "moto", "boto3")},
        "pytest": importable("pytest"),
    }


def run_probe(runtime_env: dict[str, Any], node: Node) -> dict[str, Any]:
    task = ray.remote(probe).options(runtime_env=runtime_env, resources={node.resource: 1})
    result: dict[str, Any] = ray.get(task.remote(), timeout=180)
    return result


def assert_in_env(seen: dict[str, Any], node: Node, runtime_env: dict[str, Any]) -> None:
    home = str(node.runenv_home)
    assert seen["executable"].startswith(home + "/runtime_resources/python-v1/")
    assert seen["virtual_env"] == str(Path(seen["executable"]).parent.parent)
    assert seen["path"].split(os.pathsep)[0] == f"{seen['virtual_env']}/bin"
    assert seen["active"] == field_key(runtime_env)
    assert seen["importable"] == {"ray": True, "runenv": True, "moto": False, "boto3": False}
    assert seen["pytest"] is False


def test_plugin_variable_is_the_one_the_cluster_uses() -> None:
    from raycluster import PLUGIN_VALUE

    assert json.loads(PLUGIN_VALUE) == json.loads(plugins_variable_value())


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_setups_at_once_build_once_and_delete_uri_gives_up_the_leases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wheels: Path
) -> None:
    """The plugin's calls as Ray's agent makes them, in this process: no cluster needed."""
    from ray._private.runtime_env.context import RuntimeEnvContext

    from runenv.cache import ResourceCache
    from runenv.ray.plugin import RunenvPlugin

    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    runtime_env = plugin_env(pip_env(wheels, "1.0"))
    logger = logging.getLogger(f"test-{tmp_path.name}")
    collected = Collected()
    logger.addHandler(collected)
    logger.setLevel(logging.INFO)
    plugin = RunenvPlugin()
    [uri] = plugin.get_uris(runtime_env)

    async def setups() -> list[float]:
        creates = (plugin.create(uri, runtime_env, RuntimeEnvContext(), logger) for _ in range(3))
        return await asyncio.gather(*creates)

    sizes = asyncio.run(setups())
    assert len(set(sizes)) == 1 and sizes[0] > 0
    assert sum(line.startswith("runenv: install: ") for line in collected.lines) == 1
    context = RuntimeEnvContext()
    plugin.modify_context([uri], runtime_env, context, logger)
    assert context.py_executable.startswith(str(tmp_path / "home" / "runtime_resources"))
    assert context.env_vars["RUNENV_ACTIVE"] == field_key(runtime_env)
    in_use = {(entry.kind, entry.in_use) for entry in ResourceCache().entries()}
    assert {("python", True), ("ray-overlay", True)} <= in_use
    assert plugin.delete_uri(uri, logger) == sizes[0]
    in_use = {(entry.kind, entry.in_use) for entry in ResourceCache().entries()}
    assert {("python", False), ("ray-overlay", False)} <= in_use  # (the driver's lock: in use)


def test_each_node_builds_the_locked_env_in_its_own_cache(
    cluster: RayCluster, driver: Callable[[], None], wheels: Path
) -> None:
    assert all(importable for importable in map(_host_has, NOT_RAY))  # else the test is vacuous
    runtime_env = plugin_env(pip_env(wheels, "1.0"))
    for node in cluster.nodes:
        seen = run_probe(runtime_env, node)
        assert seen["version"] == "1.0"
        assert_in_env(seen, node, runtime_env)


def test_each_node_installs_from_the_wheelhouse_alone(
    cluster: RayCluster, driver: Callable[[], None], tmp_path: Path
) -> None:
    """The lock's files go to upload_path when the driver prepares the env; the wheels it was
    locked from are then gone, and every node installs from the store."""
    import shutil

    local = tmp_path / "wheels"
    build_wheel(local, DEMO, "3.0")
    env = pip_env(local, "3.0").replace(upload_path=(tmp_path / "store").as_uri())
    runtime_env = plugin_env(env)
    assert runtime_env["runenv"]["upload_path"] == (tmp_path / "store").as_uri()
    shutil.rmtree(local)
    for node in cluster.nodes:
        seen = run_probe(runtime_env, node)
        assert seen["version"] == "3.0"
        assert_in_env(seen, node, runtime_env)


def test_the_plugin_wins_over_rays_py_executable(
    cluster: RayCluster, driver: Callable[[], None], wheels: Path
) -> None:
    """As when Ray's `uv run` hook sets py_executable: the env's interpreter is used anyway."""
    runtime_env = plugin_env(pip_env(wheels, "1.0"))
    node = cluster.nodes[0]
    seen = run_probe({**runtime_env, "py_executable": "/nonexistent/python"}, node)
    assert seen["version"] == "1.0"
    assert_in_env(seen, node, runtime_env)


def test_code_from_upload_path_and_from_rays_own_upload(
    cluster: RayCluster, driver: Callable[[], None], wheels: Path, tmp_path: Path
) -> None:
    """runenv's working_dir (a file:// upload_path every node reads): the cwd and first on the
    path; Ray's own working_dir upload: kept on the path inside the isolated env."""
    for name in ("ours", "rays"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}_module.py").write_text(f"WHERE = {name!r}\n")
    env = pip_env(wheels, "1.0").replace(
        working_dir=str(tmp_path / "ours"), upload_path=(tmp_path / "store").as_uri()
    )
    ours = plugin_env(env)
    assert ours["runenv"]["working_dir"].startswith("file://")
    rays = {**plugin_env(pip_env(wheels, "1.0")), "working_dir": ray_upload(tmp_path / "rays")}
    node = cluster.nodes[1]

    def where(module: str) -> tuple[str, str]:
        import importlib
        import os

        return importlib.import_module(module).WHERE, os.getcwd()

    task = ray.remote(where)
    on_node = {"resources": {node.resource: 1}}
    seen_ours = ray.get(
        task.options(runtime_env=ours, **on_node).remote("ours_module"), timeout=180
    )
    seen_rays = ray.get(
        task.options(runtime_env=rays, **on_node).remote("rays_module"), timeout=180
    )
    assert seen_ours[0] == "ours" and seen_ours[1].startswith(str(node.runenv_home))
    assert seen_rays[0] == "rays" and not seen_rays[1].startswith(str(node.runenv_home))


def ray_upload(directory: Path) -> str:
    """``directory`` in Ray's own package store: a ``gcs://_ray_pkg_…`` URI, as the engine
    makes when the env has no upload_path."""
    from ray._private.runtime_env.packaging import get_uri_for_directory, upload_package_if_needed

    uri: str = get_uri_for_directory(str(directory), include_gitignore=False)
    scratch = directory.parent / "scratch"
    scratch.mkdir(exist_ok=True)
    upload_package_if_needed(uri, str(scratch), str(directory), include_gitignore=False)
    return uri


def test_a_field_that_is_not_prepared_fails_with_a_clear_error(
    cluster: RayCluster, driver: Callable[[], None]
) -> None:
    task = ray.remote(probe).options(runtime_env={"runenv": {"pip": ["requests"]}})
    with pytest.raises(ray.exceptions.RuntimeEnvSetupError, match="pip packages are not locked"):
        ray.get(task.remote(), timeout=180)


def test_an_actor_runs_in_the_env(
    cluster: RayCluster, driver: Callable[[], None], wheels: Path
) -> None:
    runtime_env = plugin_env(pip_env(wheels, "2.0"))
    node = cluster.nodes[1]

    class Prober:
        def look(self) -> dict[str, Any]:
            return probe()

    actor = (
        ray.remote(Prober)
        .options(runtime_env=runtime_env, resources={node.resource: 1}, num_cpus=0)
        .remote()
    )
    seen = ray.get(actor.look.remote(), timeout=180)
    assert seen["version"] == "2.0"
    assert_in_env(seen, node, runtime_env)
    ray.kill(actor)


def test_env_vars_and_the_setup_log_on_the_node(
    cluster: RayCluster, driver: Callable[[], None], wheels: Path
) -> None:
    env = pip_env(wheels, "1.0").replace(env_vars={"GREETING": "hello"})
    runtime_env = plugin_env(env)
    node = cluster.nodes[0]

    def greeting() -> str | None:
        return os.environ.get("GREETING")

    task = ray.remote(greeting).options(runtime_env=runtime_env, resources={node.resource: 1})
    assert ray.get(task.remote(), timeout=180) == "hello"
    lines = _setup_log_lines(node, "runenv: ")
    key = field_key(runtime_env)
    assert any(f"env {key}" in line and str(node.runenv_home) in line for line in lines)
    assert any(f"{DEMO}==1.0" in line for line in lines)


def test_a_pin_that_cannot_be_installed_fails_with_runenvs_message(
    cluster: RayCluster, driver: Callable[[], None], wheels: Path
) -> None:
    runtime_env = plugin_env(pip_env(wheels, "1.0"))
    lock = runtime_env["runenv"]["pip"]["lock"]
    lock["requirements"] = [f"{DEMO}==9.9"]
    (package,) = lock["pylock"]["packages"]  # the files the lock names: one that is not there
    package["version"] = "9.9"
    for wheel in package["wheels"]:
        wheel["url"] = wheel["url"].replace("-1.0-", "-9.9-")
    task = ray.remote(probe).options(
        runtime_env=runtime_env, resources={cluster.nodes[1].resource: 1}
    )
    with pytest.raises(ray.exceptions.RuntimeEnvSetupError) as caught:
        ray.get(task.remote(), timeout=180)
    text = str(caught.value)
    assert "runenv could not set up env" in text
    assert f"{DEMO}==9.9" in text
    assert "setup log on the node: " + str(cluster.nodes[1].runenv_home) in text


def test_a_job_entrypoint_runs_with_the_envs_python(
    cluster: RayCluster, driver: Callable[[], None], wheels: Path
) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    runtime_env = plugin_env(pip_env(wheels, "2.0"))
    client = JobSubmissionClient(cluster.dashboard_url)
    script = (
        "import importlib.util, sys, ray, runenv_demo_ray; "
        "print('seen', sys.executable, runenv_demo_ray.VERSION, "
        "importlib.util.find_spec('moto') is None)"
    )
    job = client.submit_job(entrypoint=f'python -c "{script}"', runtime_env=runtime_env)
    deadline = time.monotonic() + 180
    while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        assert time.monotonic() < deadline, client.get_job_logs(job)
        time.sleep(0.2)
    logs = client.get_job_logs(job)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, logs
    seen = next(line for line in logs.splitlines() if line.startswith("seen "))
    _, executable, version, no_moto = seen.split()
    assert executable.startswith(str(cluster.head.runenv_home))
    assert (version, no_moto) == ("2.0", "True")


def test_a_restarted_cluster_reuses_each_nodes_env(
    cluster: RayCluster, driver: Callable[[], None], wheels: Path
) -> None:
    runtime_env = plugin_env(pip_env(wheels, "1.0"))
    before = {node.name: _cache_entries(node) for node in cluster.nodes}
    assert all(
        any(name.startswith("ray-overlay") for name in entries) for entries in before.values()
    )
    ray.shutdown()
    cluster.restart()
    driver()
    for node in cluster.nodes:
        seen = run_probe(runtime_env, node)
        assert seen["version"] == "1.0"
        assert_in_env(seen, node, runtime_env)
        assert _cache_entries(node) == before[node.name]  # nothing built, nothing rebuilt
        lines = _setup_log_lines(node, "runenv: ")
        assert any("reused from the node's cache" in line for line in lines)
        assert not any("runenv: install:" in line for line in lines)


def _host_has(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _cache_entries(node: Node) -> dict[str, float]:
    """Each python env and overlay in the node's cache, and when it was built."""
    resources = node.runenv_home / "runtime_resources"
    return {
        f"{meta.parent.parent.name}/{meta.parent.name}": json.loads(meta.read_text())["created"]
        for bucket in ("python-v1", "ray-overlay-v1")
        for meta in (resources / bucket).glob("*/.runenv-entry.json")
    }


def _setup_log_lines(node: Node, needle: str) -> list[str]:
    """Lines of the node's Ray runtime_env setup logs (this session's) containing ``needle``."""
    logs = node.temp_dir / "session_latest" / "logs"
    lines = []
    for log in logs.glob("runtime_env_setup-*.log"):
        lines += [line for line in log.read_text().splitlines() if needle in line]
    return lines


def conda_probe() -> dict[str, Any]:
    import importlib.util
    import sys

    import tinyfoo  # type: ignore[import-not-found]

    return {
        "version": tinyfoo.VERSION,
        "prefix": sys.prefix,
        "importable": {
            name: importlib.util.find_spec(name) is not None for name in ("ray", "moto")
        },
    }


def test_a_conda_env_is_built_from_its_lock_on_each_node(
    cluster: RayCluster, driver: Callable[[], None], conda_channel: Any
) -> None:
    conda = {"channels": [conda_channel.url], "dependencies": ["tinyfoo=1.0"]}
    runtime_env = plugin_env(RuntimeEnv(conda=conda))
    for node in cluster.nodes:
        task = ray.remote(conda_probe).options(
            runtime_env=runtime_env, resources={node.resource: 1}
        )
        seen = ray.get(task.remote(), timeout=180)
        assert seen["version"] == "1.0"
        assert seen["prefix"].startswith(f"{node.runenv_home}/runtime_resources/conda-v1/")
        assert seen["importable"] == {"ray": True, "moto": False}
