"""Jobs on a real Ray cluster (one `ray start --head` on this machine) through Ray's job API:
``runenv job … --address ray+http://HEAD:PORT`` and the Python JobClient.

The head has no runenv plugin: jobs run in stock mode (auto mode finds that out), and plugin
mode must fail at once through the entrypoint guard — never run in the cluster's base Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from raycluster import Node, RayCluster
from wheels import build_wheel

from runenv.errors import RunenvError, UsageError
from runenv.jobs import JobClient, JobStatus
from runenv.ray import jobs as ray_jobs
from runenv.ray import translate

RUNENV = [sys.executable, "-m", "runenv"]
WAIT_S = 120


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    root = tmp_path_factory.mktemp("ray-jobs")
    head = Node("head", root / "head", plugin=False, head=True)
    cluster = RayCluster(root, [head])
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def address(cluster: RayCluster) -> str:
    return "ray+" + cluster.dashboard_url


@pytest.fixture
def environ(cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The cluster's client environment (temp HOME, auth off), here and for the CLI."""
    for name, value in cluster.env.items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "runenv-home"))
    monkeypatch.delenv(ray_jobs.MODE_VARIABLE, raising=False)
    return dict(os.environ)


def runenv(*args: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNENV, *args], capture_output=True, text=True, env=environ, timeout=WAIT_S
    )


def wait_for(client: JobClient, job_id: str, wanted: JobStatus | None = None) -> JobStatus:
    """Until the job reaches ``wanted`` (default: any end)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        status = client.get_job_status(job_id)
        if status == wanted or (wanted is None and status.is_terminal()):
            return status
        assert time.monotonic() < deadline, f"{job_id} still {status}"
        time.sleep(0.1)


def project(tmp_path: Path, source: str) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "main.py").write_text(source)
    return directory


def test_cli_success_with_a_local_working_dir(
    address: str, environ: dict[str, str], tmp_path: Path
) -> None:
    code = project(tmp_path, "import os\nprint('hello from the project', os.environ['GREETING'])\n")
    env_json = '{"env_vars": {"GREETING": "bonjour"}}'
    submit = runenv(
        "job", "submit", "--address", address, "--working-dir", str(code),
        "--runtime-env-json", env_json, "--submission-id", "cli-success",
        "--", "python", "main.py",
        environ=environ,
    )  # fmt: skip
    assert submit.returncode == 0, submit.stderr
    assert "hello from the project bonjour" in submit.stdout
    assert "stock mode" in submit.stderr  # auto mode found no plugin on the head, and said so
    assert "succeeded" in submit.stderr
    status = runenv("job", "status", "cli-success", "--address", address, environ=environ)
    assert status.stdout.startswith("SUCCEEDED"), status.stdout + status.stderr
    logs = runenv("job", "logs", "cli-success", "--address", address, environ=environ)
    assert "hello from the project bonjour" in logs.stdout
    info = JobClient(address).get_job_info("cli-success")
    assert info.entrypoint == "python main.py"
    assert info.runtime_env["working_dir"].startswith(translate.RAY_PACKAGE_PREFIX)
    assert info.exit_code == 0


def test_an_unchanged_dir_is_uploaded_once(
    address: str, environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = project(tmp_path, "print('same code')\n")
    uploads: list[str] = []
    put_file = ray_jobs.RayPackageStore.put_file

    def counting(store: ray_jobs.RayPackageStore, path: Path, name: str, **kw: bool) -> str:
        uploads.append(name)
        return put_file(store, path, name, **kw)

    monkeypatch.setattr(ray_jobs.RayPackageStore, "put_file", counting)
    client = JobClient(address, ray_mode="stock")
    first = client.submit_job("python main.py", {"working_dir": str(code)})
    second = client.submit_job("python main.py", {"working_dir": str(code)})
    assert len(uploads) == 1
    assert wait_for(client, first) == wait_for(client, second) == JobStatus.SUCCEEDED
    assert "same code" in client.get_job_logs(second)
    first_env = client.get_job_info(first).runtime_env
    assert first_env == client.get_job_info(second).runtime_env


def test_code_on_an_upload_path_every_node_reads(
    address: str, environ: dict[str, str], tmp_path: Path
) -> None:
    code = project(tmp_path, "print('from the upload path')\n")
    (code / "data.txt").write_text("data")
    store = tmp_path / "store"
    client = JobClient(address, ray_mode="stock")
    env = {"working_dir": str(code), "upload_path": f"file://{store}"}
    job_id = client.submit_job("python main.py && cat data.txt", env)
    assert wait_for(client, job_id) == JobStatus.SUCCEEDED, client.get_job_logs(job_id)
    assert "from the upload path\ndata" in client.get_job_logs(job_id)
    assert client.get_job_info(job_id).runtime_env["working_dir"].startswith(f"file://{store}/")
    assert len(list(store.rglob("*.zip"))) == 1  # uploaded there, not to the cluster's store


@pytest.mark.xfail(
    strict=True,
    reason="stock mode: Ray unpacks remote (s3/gs/file) archives with remove_top_level_directory"
    "=True, and runenv packs a py_modules directory under its own name, so the module dir is "
    "lifted away (translate.stock_env)",
)
def test_py_modules_on_an_upload_path_in_stock_mode(address: str, tmp_path: Path) -> None:
    code = project(tmp_path, "import helper\nprint('helper says', helper.WORD)\n")
    module = tmp_path / "modules" / "helper"
    module.mkdir(parents=True)
    (module / "__init__.py").write_text("WORD = 'hi'\n")
    env = {
        "working_dir": str(code),
        "py_modules": [str(module)],
        "upload_path": f"file://{tmp_path / 'store'}",
    }
    client = JobClient(address, ray_mode="stock")
    job_id = client.submit_job("python main.py", env)
    assert wait_for(client, job_id) == JobStatus.SUCCEEDED, client.get_job_logs(job_id)


def test_failure_surfaces_the_exit_code(address: str, environ: dict[str, str]) -> None:
    failing = runenv(
        "job", "submit", "--address", address, "--submission-id", "fails-3",
        "--", "python", "-c", "import sys; print('about to fail'); sys.exit(3)",
        environ=environ,
    )  # fmt: skip
    assert failing.returncode == 1, failing.stderr
    assert "about to fail" in failing.stdout
    info = JobClient(address).get_job_info("fails-3")
    assert info.status == JobStatus.FAILED
    assert info.exit_code == 3
    assert "exit code 3" in info.message
    assert info.runtime_env == {}  # an empty env sends no runtime_env at all


def test_stop_a_sleeping_job(address: str, environ: dict[str, str]) -> None:
    client = JobClient(address)
    job_id = client.submit_job("echo sleeping; sleep 300")
    wait_for(client, job_id, JobStatus.RUNNING)
    stop = runenv("job", "stop", job_id, "--address", address, environ=environ)
    assert stop.returncode == 0, stop.stderr
    assert f"{job_id}: STOPPED" in stop.stdout
    assert client.get_job_status(job_id) == JobStatus.STOPPED


def test_list_and_delete(address: str, environ: dict[str, str]) -> None:
    client = JobClient(address)
    job_id = client.submit_job("echo listed", submission_id="to-delete", metadata={"team": "a"})
    assert wait_for(client, job_id) == JobStatus.SUCCEEDED
    listed = {info.submission_id: info for info in client.list_jobs()}
    assert listed[job_id].entrypoint == "echo listed"
    assert listed[job_id].metadata == {"team": "a"}
    assert job_id in [info.submission_id for info in client.list_jobs(JobStatus.SUCCEEDED)]
    assert job_id not in [info.submission_id for info in client.list_jobs(JobStatus.FAILED)]
    table = runenv("job", "list", environ={**environ, "RUNENV_ADDRESS": address})
    assert job_id in table.stdout and "echo listed" in table.stdout
    delete = runenv("job", "delete", job_id, "--address", address, environ=environ)
    assert delete.returncode == 0, delete.stderr
    assert job_id not in [info.submission_id for info in client.list_jobs()]
    with pytest.raises(RunenvError, match="does not exist"):
        client.get_job_info(job_id)


def test_stock_mode_pins_a_local_wheel_version(
    address: str, environ: dict[str, str], tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "runenv-demo", "1.0")
    build_wheel(wheels, "runenv-demo", "2.0")
    env = {
        "pip": {
            "packages": ["runenv-demo<2"],
            "pip_install_options": ["--no-index", "--find-links", str(wheels)],
        }
    }
    client = JobClient(address, ray_mode="stock")
    job_id = client.submit_job(
        "python -c 'import runenv_demo, sys; print(\"demo\", runenv_demo.VERSION, sys.prefix)'",
        env,
    )
    assert wait_for(client, job_id) == JobStatus.SUCCEEDED, client.get_job_logs(job_id)
    assert "demo 1.0" in client.get_job_logs(job_id)
    pip_field = client.get_job_info(job_id).runtime_env["pip"]
    assert pip_field["packages"] == ["runenv-demo==1.0"]  # locked here, the same on every node


def test_plugin_mode_on_a_head_without_the_plugin_fails_clearly(
    address: str, environ: dict[str, str], tmp_path: Path
) -> None:
    ran = tmp_path / "ran-in-the-base-env"
    guarded = runenv(
        "job", "submit", "--address", address, "--ray-mode", "plugin",
        "--runtime-env-json", '{"env_vars": {"WHERE": "env"}}', "--submission-id", "guarded",
        "--", "touch", str(ran),
        environ=environ,
    )  # fmt: skip
    assert guarded.returncode == 1
    assert "has no runenv plugin" in guarded.stdout
    assert not ran.exists()
    info = JobClient(address).get_job_info("guarded")
    assert (info.status, info.exit_code) == (JobStatus.FAILED, ray_jobs.GUARD_EXIT_CODE)
    assert info.entrypoint == f"touch {ran}"  # the user's entrypoint, not the guard
    assert info.env_key and info.runtime_env["env_vars"] == {"WHERE": "env"}
    shown = runenv("job", "list", "--address", address, environ=environ)
    assert "RUNENV_ACTIVE" not in shown.stdout


def test_entrypoint_num_cpus_reserves_cpus_for_the_entrypoint(address: str) -> None:
    client = JobClient(address)
    job_id = client.submit_job("echo never", entrypoint_num_cpus=2)  # the head has 1 CPU
    info = client.get_job_info(job_id)
    assert info.status == JobStatus.PENDING
    assert "waiting for resources" in info.message  # Ray's word for a reservation it can't meet
    client.stop_job(job_id)  # (Ray leaves a never-scheduled job PENDING even when stopped)


def test_what_ray_jobs_cannot_do_is_refused() -> None:
    client = JobClient("ray+http://127.0.0.1:9")  # refused before any request
    with pytest.raises(UsageError, match="max_retries"):
        client.submit_job("true", max_retries=2)
    with pytest.raises(UsageError, match="timeout_s"):
        client.submit_job("true", timeout_s=10)
    with pytest.raises(UsageError, match="only for jobs on a Ray cluster"):
        JobClient().submit_job("true", entrypoint_num_cpus=1)
    with pytest.raises(UsageError, match="Ray client address"):
        JobClient("ray://127.0.0.1:10001")
    with pytest.raises(UsageError, match="unknown Ray mode"):
        JobClient("ray+http://127.0.0.1:9", ray_mode="sometimes")


def test_without_ray_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray.job_submission", None)
    with pytest.raises(RunenvError) as caught:
        JobClient("ray+http://127.0.0.1:9").get_job_info("any")
    assert caught.value.hint == ray_jobs.INSTALL_HINT


def test_a_runenv_program_as_the_entrypoint_uses_the_cluster(
    address: str, environ: dict[str, str], tmp_path: Path
) -> None:
    code = project(
        tmp_path,
        "import runenv\n"
        "runenv.init()\n"
        "@runenv.remote\n"
        "def where() -> str:\n"
        "    import ray\n"
        "    return f'in a Ray worker: {ray.is_initialized()}'\n"
        "print(runenv.get(where.remote()))\n",
    )
    submit = runenv(
        "job", "submit", "--address", address, "--working-dir", str(code),
        "--", "python", "main.py",
        environ=environ,
    )  # fmt: skip
    assert submit.returncode == 0, submit.stdout + submit.stderr
    assert "in a Ray worker: True" in submit.stdout


# --- a head with runenv's plugin ------------------------------------------------------------


@pytest.fixture(scope="module")
def plugin_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    root = tmp_path_factory.mktemp("ray-jobs-plugin")
    cluster = RayCluster(root, [Node("phead", root / "head", plugin=True, head=True)])
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def test_plugin_mode_pins_a_local_wheel_version(
    plugin_cluster: RayCluster, environ: dict[str, str], tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "runenv-demo", "1.0")
    build_wheel(wheels, "runenv-demo", "2.0")
    env = (
        '{"pip": {"packages": ["runenv-demo<2"], "pip_install_options": '
        f'["--no-index", "--find-links", "{wheels}"]}}, "env_vars": {{"WHERE": "plugin"}}}}'
    )
    script = "import os, runenv_demo; print('demo', runenv_demo.VERSION, os.environ['WHERE'])"
    submit = runenv(
        "job", "submit", "--address", "ray+" + plugin_cluster.dashboard_url,
        "--runtime-env-json", env, "--submission-id", "plugin-wheel",
        "--", "python", "-c", script,
        environ=environ,
    )  # fmt: skip
    assert submit.returncode == 0, submit.stdout + submit.stderr
    assert "demo 1.0 plugin" in submit.stdout
    assert "stock mode" not in submit.stderr  # auto mode found the plugin on the head
    info = JobClient("ray+" + plugin_cluster.dashboard_url).get_job_info("plugin-wheel")
    assert info.env_key  # guarded, and the guard let it through
    assert "runenv-demo==1.0" in json.dumps(info.runtime_env["pip"])  # the lock travelled
