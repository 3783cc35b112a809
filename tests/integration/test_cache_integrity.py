"""What comes from a store is checked before the cache keeps it: digests, bombs, links."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import fsspec
import pytest
from conftest import can_seal, make_changeable, sealed
from wheels import build_wheel

from runenv import RuntimeEnv
from runenv.cache import ResourceCache
from runenv.context import Context, start_process
from runenv.errors import EnvSetupError
from runenv.materialize import materialize, prepare, release
from runenv.storage import Store


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def published(home: Path, kind: str) -> list[str]:
    bucket = home / "runtime_resources" / f"{kind}-v1"
    if not bucket.is_dir():
        return []
    return [p.name for p in bucket.iterdir() if p.is_dir() and not p.name.startswith(".")]


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "main.py").write_text("print('the original')\n")
    return root


@pytest.mark.parametrize("where", ["s3", "file"])
def test_a_replaced_archive_is_refused_by_its_digest(
    where: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_path = (
        f"s3://{request.getfixturevalue('s3_bucket')}/jobs"
        if where == "s3"
        else (tmp_path / "store").as_uri()
    )
    env = prepare(RuntimeEnv(working_dir=str(project(tmp_path)), upload_path=upload_path))
    uri = str(env.working_dir)
    name = uri.removeprefix(upload_path + "/")
    assert name.startswith("pkgs/") and name.endswith(".zip")
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as archive:
        archive.writestr("main.py", "print('replaced')\n")
    with fsspec.open(uri, "wb") as sink:  # someone with write access to the bucket
        sink.write(forged.read_bytes())
    node = tmp_path / "another-node"  # whose cache has never seen this code
    monkeypatch.setenv("RUNENV_HOME", str(node))
    with pytest.raises(EnvSetupError, match="does not match the digest in its name"):
        materialize(env)
    assert published(node, "working_dir") == []


def test_a_bomb_from_a_bucket_never_reaches_the_cache(
    s3_bucket: str, tmp_path: Path, home: Path
) -> None:
    bomb = tmp_path / "bomb.zip"
    with (
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("zeros.bin", "w") as sink,
    ):
        for _ in range(64):
            sink.write(bytes(1 << 20))
    Store(f"s3://{s3_bucket}").put_file(bomb, "code/bomb.zip")
    with pytest.raises(EnvSetupError, match="times its own size") as refused:
        materialize(RuntimeEnv(working_dir=f"s3://{s3_bucket}/code/bomb.zip"))
    assert "RUNENV_MAX_COMPRESSION_RATIO" in str(refused.value.hint)
    assert published(home, "working_dir") == []


@pytest.mark.parametrize("field", ["working_dir", "py_modules"])
def test_link_order_cannot_leave_a_link_to_the_host(field: str, tmp_path: Path, home: Path) -> None:
    archive = tmp_path / "links.zip"
    escape = "/".join(["q"] * 20 + [".."] * 20 + [*tmp_path.parts[1:], "secret"])
    with zipfile.ZipFile(archive, "w") as out:
        for name, target in (("pkg/esc", escape), ("pkg/q", ".")):
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            out.writestr(info, target)
        out.writestr("pkg/__init__.py", "")
    (tmp_path / "secret").write_text("host file")
    env = RuntimeEnv.from_dict(
        {field: archive.as_uri() if field == "working_dir" else [archive.as_uri()]}
    )
    with pytest.raises(EnvSetupError, match="'pkg/esc' is a link to"):
        materialize(env)
    assert published(home, field) == []


# --- entries the processes that use them cannot change ------------------------------------


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "runenv-demo-a", "1.0")
    return wheels


def pip_env(wheels: Path) -> RuntimeEnv:
    options = ["--no-index", "--find-links", str(wheels)]
    return RuntimeEnv(pip={"packages": ["runenv-demo-a"], "pip_install_options": options})


def run_python(context: Context, code: str) -> subprocess.CompletedProcess[str]:
    process = start_process(
        context, ["python", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(
        process.args, process.returncode, stdout.decode(), stderr.decode()
    )


def module_file(context: Context) -> Path:
    found = run_python(context, "import runenv_demo_a; print(runenv_demo_a.__file__)")
    assert found.returncode == 0, found.stderr
    return Path(found.stdout.strip())


def test_a_job_that_writes_into_its_env_changes_nothing_else(wheelhouse: Path, home: Path) -> None:
    context = materialize(pip_env(wheelhouse))
    module = module_file(context)
    assert module.stat().st_nlink == 1  # a copy: not a hard link into uv's cache
    assert stat.S_IMODE(module.stat().st_mode) & 0o222 == 0  # no write bits
    careless = (
        "import os, runenv_demo_a\n"
        "try:\n"
        "    os.chmod(runenv_demo_a.__file__, 0o644)\n"  # what a careless job does without asking
        "    with open(runenv_demo_a.__file__, 'a') as poison: poison.write('POISONED = 1')\n"
        "except OSError as error: print('refused', error.errno)\n"
        "else: print('written')\n"
    )
    outcome = run_python(context, careless).stdout.strip()
    protected = os.geteuid() != 0 or sealed(module)
    assert outcome.startswith("refused") if protected else outcome == "written"
    uv_copies = [p for p in (home / "uv-cache").rglob(module.name) if p.is_file()]
    assert uv_copies and all("POISONED" not in p.read_text() for p in uv_copies)
    stages: list[str] = []
    again = materialize(pip_env(wheelhouse), on_stage=lambda stage, detail: stages.append(stage))
    assert stages.count("rebuilt") == (0 if protected else 1)
    clean = run_python(again, "import runenv_demo_a; print(hasattr(runenv_demo_a, 'POISONED'))")
    assert clean.stdout.strip() == "False"


def test_root_seals_read_only_entries_where_the_kernel_allows(
    wheelhouse: Path, tmp_path: Path
) -> None:
    expected = can_seal(tmp_path)
    context = materialize(pip_env(wheelhouse))
    module = module_file(context)
    assert sealed(module) == expected
    if expected:
        with pytest.raises(PermissionError):
            module.unlink()  # even root cannot, without unsealing first
        with pytest.raises(PermissionError):
            (module.parent / "added.py").write_text("")
    release(context)
    ResourceCache().gc()  # unseals what it removes: nothing of the entries is left
    (bucket,) = [parent for parent in module.parents if parent.name == "python-v1"]
    assert [path for path in bucket.iterdir() if path.is_dir()] == []  # no entry, no trash


@pytest.mark.parametrize("damage", ["delete a module", "delete bin/python", "add a .pth file"])
def test_a_damaged_env_is_rebuilt_before_use(damage: str, wheelhouse: Path) -> None:
    context = materialize(pip_env(wheelhouse))
    module = module_file(context)
    venv = Path(context.python_executable).parent.parent
    make_changeable(module)
    make_changeable(venv / "bin" / "python")
    if damage == "delete a module":
        module.unlink()
    elif damage == "delete bin/python":
        (venv / "bin" / "python").unlink()
    else:
        (module.parent / "evil.pth").write_text("import os; os.environ['EVIL'] = '1'\n")
    stages: list[tuple[str, str]] = []
    again = materialize(pip_env(wheelhouse), on_stage=lambda *stage: stages.append(stage))
    rebuilt = [detail for stage, detail in stages if stage == "rebuilt"]
    assert len(rebuilt) == 1 and "pip env runenv-demo-a" in rebuilt[0]
    check = run_python(again, "import os, runenv_demo_a; print(os.environ.get('EVIL'))")
    assert check.returncode == 0 and check.stdout.strip() == "None"


@pytest.mark.parametrize("damage", ["truncate", "edit"])
def test_a_damaged_lock_is_resolved_again(damage: str, wheelhouse: Path, home: Path) -> None:
    materialize(pip_env(wheelhouse))
    (lock_file,) = (home / "runtime_resources" / "lock-v1").glob("*/lock.json")
    make_changeable(lock_file)
    text = lock_file.read_text()
    lock_file.write_text(text[:10] if damage == "truncate" else text.replace("1.0", "9.9"))
    stages: list[str] = []
    context = materialize(pip_env(wheelhouse), on_stage=lambda stage, _: stages.append(stage))
    assert "rebuilt" in stages
    assert module_file(context).parent.name == "runenv_demo_a"
    assert "9.9" not in lock_file.read_text()


def test_an_entry_with_unreadable_metadata_is_listed_and_collected(
    wheelhouse: Path, home: Path
) -> None:
    from runenv.cache import ENTRY_META

    release(materialize(pip_env(wheelhouse)))
    cache = ResourceCache()
    (venv_entry,) = [e for e in cache.entries() if e.kind == "python"]
    meta = venv_entry.path / ENTRY_META
    make_changeable(meta)
    meta.write_text('{"kind": "pyth')
    listed = {e.key: e for e in cache.entries()}
    assert "damaged" in listed[venv_entry.key].description
    assert cache.verify(listed[venv_entry.key]) is not None
    report = cache.gc()
    assert venv_entry.key in {e.key for e in report.removed}
    assert not venv_entry.path.exists()


def test_each_run_writes_into_a_working_dir_of_its_own(tmp_path: Path, home: Path) -> None:
    code = project(tmp_path)
    first = materialize(RuntimeEnv(working_dir=str(code)))
    edited = Path(first.cwd or "") / "main.py"
    edited.write_text("print('edited by a job')\n")  # a run's working dir is writable
    (Path(first.cwd or "") / "output.csv").write_text("a job's output\n")
    stages: list[str] = []
    second = materialize(  # while the first run still works in its own
        RuntimeEnv(working_dir=str(code)), on_stage=lambda stage, _: stages.append(stage)
    )
    assert "cached" in stages and "rebuilt" not in stages  # the entry itself never changed
    assert second.cwd != first.cwd and second.pythonpath[0] == second.cwd
    assert (Path(second.cwd or "") / "main.py").read_text() == "print('the original')\n"
    assert not (Path(second.cwd or "") / "output.csv").exists()
    assert edited.read_text() == "print('edited by a job')\n"  # the first run keeps its edits
    release(first)
    ResourceCache().gc()
    assert not Path(first.cwd or "").exists()  # its run is over: its copy goes
    assert Path(second.cwd or "").is_dir()  # still held


def test_env_verify_in_stat_and_full_modes(wheelhouse: Path, home: Path) -> None:
    context = materialize(pip_env(wheelhouse))
    module = module_file(context)
    release(context)

    def verify(*flags: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "runenv", "env", "verify", *flags]
        return subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))

    clean = verify()
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.count(" ok") == 2  # the lock and the venv
    make_changeable(module)
    before = module.stat()
    data = module.read_bytes()
    module.write_bytes(data.replace(b"1.0", b"6.6"))  # same size...
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))  # ...and the old time
    assert verify().returncode == 0  # the stat check cannot see it
    full = verify("--full")
    assert full.returncode == 1
    assert "modified:" in full.stdout and module.name in full.stdout
    assert full.stderr.count("error:") == 1 and full.stderr.count("hint:") == 1
