"""The wheelhouse and prebuilt envs: node A locks and uploads every file its lock names to S3
(moto); node B, another RUNENV_HOME whose index is a closed port and whose find-links are gone,
builds the env from the store alone; with config.share_env, node B unpacks the venv node A
built; a file changed in the store is refused by its digest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from wheels import CP, LINUX_TAGS, build_sdist, platform_wheels

if TYPE_CHECKING:
    from conftest import MotoS3

NODE = """
import json, sys
from runenv import RuntimeEnv
from runenv.context import start_process
from runenv.materialize import materialize, prepare
env = RuntimeEnv._from_canonical(json.loads(sys.argv[1]))
if sys.argv[2] == "prepare":
    print(json.dumps(prepare(env).to_dict()))
    sys.exit(0)
context = materialize(env)
code = "import native, hello; print(native.ARCH, hello.BUILT_BY)"
process = start_process(context, ["python", "-c", code])
sys.exit(process.wait())
"""


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def node(home: Path, env: dict[str, Any], action: str) -> subprocess.CompletedProcess[str]:
    """A process as a node with its own RUNENV_HOME and uv cache; every index a closed port."""
    index = f"http://127.0.0.1:{closed_port()}/simple"
    environment = {**os.environ, "RUNENV_HOME": str(home), "UV_INDEX_URL": index}
    environment.update(PIP_INDEX_URL=index, UV_DEFAULT_INDEX=index)
    environment.pop("UV_CACHE_DIR", None)
    command = [sys.executable, "-c", NODE, json.dumps(env), action]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)


@pytest.fixture(params=[False])
def prepared(tmp_path: Path, s3_bucket: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The env as node A prepared it (locked, its files uploaded; with ``share_env``, its venv
    built and shared too), with the local wheels it was locked from moved away: nothing but the
    store holds them now."""
    wheels = platform_wheels(tmp_path / "wheels")
    build_sdist(wheels, "hello", "1.0")
    env = {
        "pip": {
            "packages": ["app", "hello"],
            "pip_install_options": ["--no-index", "--find-links", str(wheels)],
        },
        "upload_path": f"s3://{s3_bucket}/runenv",
        "config": {"share_env": request.param},
    }
    from runenv import RuntimeEnv

    canonical = RuntimeEnv.from_dict(env).to_dict()
    result = node(tmp_path / "node-a", canonical, "prepare")
    assert result.returncode == 0, result.stderr
    if request.param:
        built = node(tmp_path / "node-a", json.loads(result.stdout), "materialize")
        assert built.returncode == 0, built.stderr
    shutil.rmtree(wheels)
    return dict(json.loads(result.stdout))


def stored(bucket: str) -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="runenv/wheels/")
    return sorted(item["Key"].rsplit("/", 1)[-1] for item in listing.get("Contents", []))


def test_every_file_of_the_lock_is_uploaded_once(
    prepared: dict[str, Any], s3_bucket: str, tmp_path: Path, moto_s3: MotoS3
) -> None:
    natives = [f"native-1.0-{CP}-{CP}-{tag}.whl" for tag in LINUX_TAGS.values()]
    pure = ["app-1.0-py3-none-any.whl", "armonly-1.0-py3-none-any.whl", "hello-1.0.tar.gz"]
    assert stored(s3_bucket) == sorted([*pure, *natives])
    puts = moto_s3.count_requests("PUT", f"/{s3_bucket}/runenv/wheels/")
    again = node(tmp_path / "node-a2", prepared, "prepare")  # another node, the same lock
    assert again.returncode == 0, again.stderr
    assert moto_s3.count_requests("PUT", f"/{s3_bucket}/runenv/wheels/") == puts


def test_node_without_index_materializes_from_the_store(
    prepared: dict[str, Any], s3_bucket: str, tmp_path: Path, moto_s3: MotoS3
) -> None:
    gets = moto_s3.count_requests("GET", f"/{s3_bucket}/runenv/wheels/")
    result = node(tmp_path / "node-b", prepared, "materialize")
    assert result.returncode == 0, result.stderr
    machine = "aarch64" if os.uname().machine == "aarch64" else "x86_64"
    assert result.stdout.split() == [machine, str(tmp_path / "node-b")]  # the sdist built here
    assert moto_s3.count_requests("GET", f"/{s3_bucket}/runenv/wheels/") > gets


def test_an_sdist_is_built_once_and_its_wheel_shared(
    prepared: dict[str, Any], s3_bucket: str, tmp_path: Path
) -> None:
    first = node(tmp_path / "node-b", prepared, "materialize")
    assert first.returncode == 0, first.stderr
    assert any(name.startswith("built-") for name in stored(s3_bucket))
    second = node(tmp_path / "node-c", prepared, "materialize")
    assert second.returncode == 0, second.stderr
    assert second.stdout.split()[1] == str(tmp_path / "node-b")  # node B's wheel, not rebuilt


def test_a_changed_file_in_the_store_is_refused(
    prepared: dict[str, Any], s3_bucket: str, tmp_path: Path
) -> None:
    client = boto3.client("s3")
    listing = client.list_objects_v2(Bucket=s3_bucket, Prefix="runenv/wheels/")
    for item in listing["Contents"]:
        if item["Key"].endswith(".whl") and "/native-" in item["Key"]:
            client.put_object(Bucket=s3_bucket, Key=item["Key"], Body=b"not the wheel")
    result = node(tmp_path / "node-c", prepared, "materialize")
    assert result.returncode != 0
    assert "does not match the digest in its name: it was not used" in result.stderr


def remove_objects(bucket: str, prefix: str, body: bytes | None = None) -> int:
    """Delete (or, with ``body``, overwrite) every object under ``prefix``; how many."""
    client = boto3.client("s3")
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    for item in listing:
        if body is None:
            client.delete_object(Bucket=bucket, Key=item["Key"])
        else:
            client.put_object(Bucket=bucket, Key=item["Key"], Body=body)
    return len(listing)


@pytest.mark.parametrize("prepared", [True], indirect=True)
def test_a_prebuilt_env_from_node_a_is_unpacked_by_node_b(
    prepared: dict[str, Any], s3_bucket: str, tmp_path: Path
) -> None:
    assert remove_objects(s3_bucket, "runenv/wheels/") > 0  # node B cannot install
    result = node(tmp_path / "node-b", prepared, "materialize")
    assert result.returncode == 0, result.stderr
    machine = "aarch64" if os.uname().machine == "aarch64" else "x86_64"
    assert result.stdout.split() == [machine, str(tmp_path / "node-a")]  # node A's build
    log = "".join(path.read_text() for path in (tmp_path / "node-b" / "logs").glob("*.log"))
    assert "pip install" not in log


@pytest.mark.parametrize("prepared", [True], indirect=True)
def test_a_corrupted_prebuilt_env_is_refused_and_the_env_installed(
    prepared: dict[str, Any], s3_bucket: str, tmp_path: Path
) -> None:
    assert remove_objects(s3_bucket, "runenv/pkgs/", body=b"PK not the env") == 1
    result = node(tmp_path / "node-b", prepared, "materialize")
    assert result.returncode == 0, result.stderr
    log = "".join(path.read_text() for path in (tmp_path / "node-b" / "logs").glob("*.log"))
    assert "does not match the digest in its name" in log
    assert "pip install" in log  # installed from the wheelhouse instead


ENGINE = """
import json, sys
import runenv
env = json.loads(sys.argv[1])

@runenv.remote(runtime_env=env)
def arch():
    import native
    return native.ARCH

print(runenv.get(arch.remote()))
"""


def as_node(home: Path) -> dict[str, str]:
    index = f"http://127.0.0.1:{closed_port()}/simple"
    environment = {**os.environ, "RUNENV_HOME": str(home), "UV_INDEX_URL": index}
    environment.update(PIP_INDEX_URL=index, UV_DEFAULT_INDEX=index)
    environment.pop("UV_CACHE_DIR", None)
    return environment


@pytest.mark.parametrize("entry", ["run", "job", "engine"])
def test_every_entry_point_materializes_from_the_store_alone(
    prepared: dict[str, Any], tmp_path: Path, entry: str
) -> None:
    """`runenv run`, an (embedded) job and a task of the embedded engine on node B."""
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps(prepared))
    code = "import native; print(native.ARCH)"
    commands = {
        "run": [sys.executable, "-m", "runenv", "run", "--runtime-env", str(env_file)],
        "job": [sys.executable, "-m", "runenv", "job", "submit", "--runtime-env", str(env_file)],
        "engine": [sys.executable, "-c", ENGINE, json.dumps(prepared)],
    }
    command = commands[entry] + ([] if entry == "engine" else ["--", "python", "-c", code])
    environment = as_node(tmp_path / "node-b")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr + result.stdout
    machine = "aarch64" if os.uname().machine == "aarch64" else "x86_64"
    assert machine in result.stdout.split()
