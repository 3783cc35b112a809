"""materialize(): isolated envs from offline wheels, locks, code from every store, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from wheels import build_wheel

from runenv import RuntimeEnv
from runenv.context import Context, start_process
from runenv.errors import EnvSetupError
from runenv.materialize import materialize, prepare, release

MATERIALIZE = """
import json, sys
from runenv import RuntimeEnv
from runenv.materialize import materialize
env = RuntimeEnv.from_dict(json.loads(sys.argv[1]))
context = materialize(env, on_stage=lambda stage, detail: print("stage", stage, flush=True))
print("python", context.python_executable, flush=True)
"""


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    monkeypatch.delenv("RUNENV_FAILURE_TTL_SECONDS", raising=False)
    return tmp_path / "home"


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "runenv-demo-a", "1.0")
    build_wheel(wheels, "runenv-demo-b", "1.0", requires=["runenv-demo-a"])
    return wheels


def offline(wheels: Path | str) -> list[str]:
    return ["--no-index", "--find-links", str(wheels)]


def run_in(context: Context, code: str) -> subprocess.CompletedProcess[bytes]:
    process = start_process(
        context, ["python", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def output_of(context: Context, code: str) -> str:
    result = run_in(context, code)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip()


def leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "runtime_resources").glob("*/.*") if p.is_dir())


def published(home: Path, kind: str) -> list[str]:
    bucket = home / "runtime_resources" / f"{kind}-v1"
    return [p.name for p in bucket.iterdir() if p.is_dir() and not p.name.startswith(".")]


def pip_env(wheels: Path, *packages: str, **extra: object) -> RuntimeEnv:
    return RuntimeEnv(
        pip={"packages": list(packages), "pip_install_options": offline(wheels)}, **extra
    )


# --- isolation and locks ------------------------------------------------------------------


def test_pip_env_sees_its_packages_and_not_the_hosts(
    wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pydantic

    host_site = str(Path(pydantic.__file__).parent.parent)
    monkeypatch.setenv("PYTHONPATH", host_site)  # a host PYTHONPATH must not leak in
    context = materialize(pip_env(wheelhouse, "runenv-demo-b"))
    assert output_of(context, "import runenv_demo_a, runenv_demo_b; print(runenv_demo_a.VERSION)")
    for host_package in ("pydantic", "yaml", "pytest"):
        result = run_in(context, f"import {host_package}")
        assert result.returncode == 1
        assert f"No module named '{host_package}'" in result.stderr.decode()
    assert output_of(context, "import sys; print(sys.prefix)") == context.env_vars["VIRTUAL_ENV"]
    assert output_of(context, "import sys; print(sys.version_info[:2])") == str(
        tuple(sys.version_info[:2])
    )


def test_dependencies_are_locked(wheelhouse: Path) -> None:
    portable = prepare(pip_env(wheelhouse, "runenv-demo-b"))
    assert portable.pip is not None and portable.pip.lock is not None
    assert portable.pip.lock.requirements == ("runenv-demo-a==1.0", "runenv-demo-b==1.0")
    assert portable.pip.lock.python == ".".join(map(str, sys.version_info[:3]))


def test_urls_markers_and_extras_reach_the_installer(wheelhouse: Path, tmp_path: Path) -> None:
    build_wheel(wheelhouse, "runenv-demo-c", "1.0", extras={"with-a": ["runenv-demo-a"]})
    wheel = build_wheel(tmp_path / "elsewhere", "runenv-demo-d", "2.0")
    env = pip_env(
        wheelhouse,
        "Runenv_Demo_C[With_A]; python_version >= '3.8'",
        f"Runenv.Demo.D @ {wheel.as_uri()}",
        "runenv-demo-b; python_version < '3'",  # never installed
    )
    assert env.pip is not None and env.pip.packages[:2] == (
        "runenv-demo-c[with-a]; python_version >= '3.8'",
        f"runenv-demo-d @ {wheel.as_uri()}",
    )
    context = materialize(env)
    code = "import runenv_demo_a, runenv_demo_c, runenv_demo_d; print(runenv_demo_d.VERSION)"
    assert output_of(context, code) == "2.0"
    assert run_in(context, "import runenv_demo_b").returncode == 1


def test_lock_holds_when_a_newer_version_is_published(
    wheelhouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = pip_env(wheelhouse, "runenv-demo-a")
    portable = prepare(env)  # on the submitting machine
    first = output_of(materialize(env), "import runenv_demo_a as a; print(a.VERSION)")
    build_wheel(wheelhouse, "runenv-demo-a", "2.0")  # a release between two materializations
    again = output_of(materialize(env), "import runenv_demo_a as a; print(a.VERSION)")
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "another-node"))
    elsewhere = output_of(materialize(portable), "import runenv_demo_a as a; print(a.VERSION)")
    assert (first, again, elsewhere) == ("1.0", "1.0", "1.0")
    fresh = pip_env(wheelhouse, "runenv-demo-a", env_vars={"NEW": "1"})  # a new env resolves anew
    assert output_of(materialize(fresh), "import runenv_demo_a as a; print(a.VERSION)") == "2.0"


def test_uv_field_and_check(wheelhouse: Path) -> None:
    env = RuntimeEnv(
        uv={
            "packages": ["runenv-demo-a"],
            "uv_check": True,
            "uv_pip_install_options": offline(wheelhouse),
        }
    )
    context = materialize(env)
    assert output_of(context, "import runenv_demo_a as a; print(a.VERSION)") == "1.0"


def test_pip_version_is_seeded(wheelhouse: Path) -> None:
    build_wheel(wheelhouse, "pip", "24.0")  # a stand-in pip: the seeding is what is tested
    env = RuntimeEnv(
        pip={
            "packages": ["runenv-demo-a"],
            "pip_version": "==24.0",
            "pip_install_options": offline(wheelhouse),
        }
    )
    assert output_of(materialize(env), "import pip; print(pip.VERSION)") == "24.0"


def test_pip_check_failure_is_reported(wheelhouse: Path) -> None:
    build_wheel(wheelhouse, "runenv-demo-c", "1.0", requires=["runenv-demo-a>=2"])
    python = ".".join(map(str, sys.version_info[:3]))
    lock = {"python": python, "requirements": ["runenv-demo-a==1.0", "runenv-demo-c==1.0"]}
    env = RuntimeEnv(
        pip={
            "packages": ["runenv-demo-c"],
            "pip_check": True,
            "lock": lock,
            "pip_install_options": offline(wheelhouse),
        }
    )
    with pytest.raises(EnvSetupError) as caught:
        materialize(env)
    assert caught.value.message.startswith("pip check failed")
    assert "runenv-demo-a" in caught.value.message


def test_env_vars_expand_from_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "node-7")
    context = materialize(RuntimeEnv(env_vars={"WHERE": "${NODE_NAME}/x", "GONE": "${NOPE}"}))
    code = "import os; print(os.environ['WHERE'], repr(os.environ['GONE']))"
    assert output_of(context, code) == "node-7/x ''"


# --- code: working_dir and py_modules ---------------------------------------------------


def repo_zip(path: Path, top: str = "repo-main") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{top}/main.py", "print('main')\n")
        archive.writestr(f"{top}/data.txt", "from the archive\n")
    return path


def read_data(context: Context) -> str:
    return output_of(context, "print(open('data.txt').read().strip())")


def test_local_working_dir(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "only.py").write_text("VALUE = 3\n")
    (project / "data.txt").write_text("local\n")
    context = materialize(RuntimeEnv(working_dir=str(project)))
    assert read_data(context) == "local"
    assert output_of(context, "import src.only as m; print(m.VALUE)") == "3"
    lone = tmp_path / "lone"
    (lone / "pkg").mkdir(parents=True)
    (lone / "pkg" / "x.py").write_text("")
    context = materialize(RuntimeEnv(working_dir=str(lone)))  # one directory: never lifted
    assert output_of(context, "import os; print(os.listdir('.'))") == "['pkg']"


def test_working_dir_from_file_uri(tmp_path: Path) -> None:
    archive = repo_zip(tmp_path / "code.zip")
    assert read_data(materialize(RuntimeEnv(working_dir=archive.as_uri()))) == "from the archive"


def test_working_dir_from_https(http_server: object, tmp_path: Path) -> None:
    server = http_server
    repo_zip(server.directory / "repo.zip")  # type: ignore[attr-defined]
    env = RuntimeEnv(working_dir=f"{server.base_url}/repo.zip")  # type: ignore[attr-defined]
    assert read_data(materialize(env)) == "from the archive"


def test_working_dir_from_s3(s3_bucket: str, tmp_path: Path) -> None:
    from runenv.storage import Store

    Store(f"s3://{s3_bucket}").put_file(repo_zip(tmp_path / "r.zip"), "code/repo.zip")
    env = RuntimeEnv(working_dir=f"s3://{s3_bucket}/code/repo.zip")
    assert read_data(materialize(env)) == "from the archive"


def test_py_modules_dir_file_and_wheel(tmp_path: Path) -> None:
    (tmp_path / "mylib").mkdir()
    (tmp_path / "mylib" / "__init__.py").write_text("NAME = 'dir'\n")
    (tmp_path / "single.py").write_text("NAME = 'file'\n")
    wheel = build_wheel(tmp_path / "dist", "wheeled", "3.1")
    env = RuntimeEnv(py_modules=[str(tmp_path / "mylib"), str(tmp_path / "single.py"), str(wheel)])
    code = "import mylib, single, wheeled; print(mylib.NAME, single.NAME, wheeled.VERSION)"
    assert output_of(materialize(env), code) == "dir file 3.1"


# --- failures ---------------------------------------------------------------------------


def test_missing_package_is_a_clear_error(wheelhouse: Path, home: Path) -> None:
    with pytest.raises(EnvSetupError) as caught:
        materialize(pip_env(wheelhouse, "runenv-no-such-package"))
    assert "runenv-no-such-package" in caught.value.message
    assert "was not found" in caught.value.message  # uv's own words, from its stderr
    assert caught.value.log_path and Path(caught.value.log_path).is_file()
    assert leftovers(home) == []


def test_failed_install_is_a_clear_error(wheelhouse: Path, home: Path) -> None:
    env = RuntimeEnv(
        pip={
            "packages": ["runenv-demo-a"],
            "pip_install_options": offline(wheelhouse),
            "lock": {"python": "3.11", "requirements": ["runenv-demo-a==9.9"]},
        }
    )
    with pytest.raises(EnvSetupError) as caught:
        materialize(env)
    assert caught.value.message.startswith("installing pip packages failed (exit code")
    assert "runenv-demo-a==9.9" in caught.value.message
    assert published(home, "python") == []
    assert leftovers(home) == []


def test_corrupt_archive(tmp_path: Path, home: Path) -> None:
    corrupt = tmp_path / "code.zip"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(EnvSetupError, match=r"working_dir: .* is not a zip or tar archive"):
        materialize(RuntimeEnv(working_dir=corrupt.as_uri()))
    assert leftovers(home) == []
    assert published(home, "working_dir") == []


def test_unreachable_store(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # the discard port: closed
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    with pytest.raises(EnvSetupError, match="cannot reach the storage endpoint"):
        materialize(RuntimeEnv(working_dir="s3://bucket/code.zip"))
    assert leftovers(home) == []


def test_missing_object(http_server: object, home: Path) -> None:
    url = f"{http_server.base_url}/nothing-here.zip"  # type: ignore[attr-defined]
    with pytest.raises(EnvSetupError, match="object not found"):
        materialize(RuntimeEnv(working_dir=url))


# --- the cache across processes ---------------------------------------------------------


def materialize_in_subprocess(env: RuntimeEnv) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", MATERIALIZE, json.dumps(prepare(env).to_dict())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def venv_builds(home: Path) -> int:
    """How many venvs were built, from every setup log on this node."""
    logs = (home / "logs").glob("setup-*.log")
    return sum(log.read_text().count(" venv --quiet --relocatable ") for log in logs)


def test_eight_processes_build_once(wheelhouse: Path, home: Path) -> None:
    env = pip_env(wheelhouse, "runenv-demo-b")
    processes = [materialize_in_subprocess(env) for _ in range(8)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 8, outputs
    pythons = {line for out, _ in outputs for line in out.splitlines() if line.startswith("python")}
    assert len(pythons) == 1
    installs = sum(out.count("stage install") for out, _ in outputs)
    assert installs == 1
    assert venv_builds(home) == 1


def test_a_new_process_reuses_the_entry(wheelhouse: Path, home: Path) -> None:
    env = pip_env(wheelhouse, "runenv-demo-a")
    first = materialize_in_subprocess(env)
    first_out, _ = first.communicate(timeout=120)
    second = materialize_in_subprocess(env)  # as after a restart: a new process, same node
    second_out, _ = second.communicate(timeout=120)
    assert "stage install" in first_out
    assert "stage install" not in second_out
    assert "stage cached" in second_out
    assert venv_builds(home) == 1


def test_gc_never_removes_an_entry_in_use(wheelhouse: Path) -> None:
    from runenv.cache import ResourceCache

    context = materialize(pip_env(wheelhouse, "runenv-demo-a"))
    report = ResourceCache().gc(0)
    assert report.removed == []
    assert {entry.kind for entry in report.kept_in_use} == {"lock", "python"}
    assert output_of(context, "import runenv_demo_a") == ""
    release(context)
    assert {entry.kind for entry in ResourceCache().gc(0).removed} == {"lock", "python"}


def test_lock_for_a_python_this_node_lacks(wheelhouse: Path, home: Path) -> None:
    lock = {"python": "3.99.1", "requirements": ["runenv-demo-a==1.0"]}
    env = RuntimeEnv(
        pip={
            "packages": ["runenv-demo-a"],
            "lock": lock,
            "pip_install_options": offline(wheelhouse),
        }
    )
    with pytest.raises(EnvSetupError, match=r"locked for Python 3\.99\.1, and this node has no"):
        materialize(env)
    assert leftovers(home) == []


def test_uv_version_is_seeded(wheelhouse: Path) -> None:
    build_wheel(wheelhouse, "uv", "0.4.0")  # a stand-in uv: the seeding is what is tested
    env = RuntimeEnv(
        uv={
            "packages": ["runenv-demo-a"],
            "uv_version": "==0.4.0",
            "uv_pip_install_options": offline(wheelhouse),
        }
    )
    context = materialize(env)
    assert output_of(context, "import uv; print(uv.VERSION)") == "0.4.0"
    assert run_in(context, "import pip").returncode == 1  # no pip was seeded instead
