"""make_portable: local code in an env becomes URIs in the store; nothing local is left."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from runenv import RuntimeEnv, uris
from runenv.upload import make_portable


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "mylib").mkdir(parents=True)
    (root / "main.py").write_text("import mylib\n")
    (root / "debug.log").write_text("noise")
    (root / "mylib" / "__init__.py").write_text("VALUE = 1\n")
    (root / "mylib" / "trace.log").write_text("noise")
    (root / "helpers.py").write_text("def helper(): ...\n")
    (root / "dist-1.0-py3-none-any.whl").write_bytes(b"PK-wheel")
    return root


def names_in(uri: str) -> list[str]:
    with zipfile.ZipFile(uri.removeprefix("file://")) as archive:
        return archive.namelist()


def test_working_dir_and_py_modules_become_uris(project: Path, tmp_path: Path) -> None:
    env = RuntimeEnv(
        working_dir=str(project),
        py_modules=[
            str(project / "mylib"),
            str(project / "helpers.py"),
            str(project / "dist-1.0-py3-none-any.whl"),
            "s3://bucket/remote.zip",
        ],
        excludes=["*.log"],
        upload_path=str(tmp_path / "uploads"),
        env_vars={"A": "1"},
    )
    seen: list[str] = []
    portable = make_portable(env, on_packaged=lambda location, package: seen.append(location))
    store = (tmp_path / "uploads").as_uri()
    assert portable.working_dir is not None and portable.working_dir.startswith(store + "/pkgs/")
    assert "debug.log" not in names_in(portable.working_dir)
    lib, helpers, wheel, remote = portable.py_modules
    assert names_in(lib) == ["mylib/__init__.py"]
    assert names_in(helpers) == ["helpers.py"]
    assert wheel.endswith("/dist-1.0-py3-none-any.whl")
    assert remote == "s3://bucket/remote.zip"
    assert portable.excludes == ()
    assert portable.env_vars == {"A": "1"}
    assert all(
        uris.scheme_of(location) for location in [portable.working_dir, *portable.py_modules]
    )
    assert len(seen) == 4


def test_default_store_is_under_runenv_home(project: Path, home: Path) -> None:
    portable = make_portable(RuntimeEnv(working_dir=str(project)))
    assert portable.working_dir is not None
    assert portable.working_dir.startswith((home / "store" / "pkgs").as_uri())


def test_same_code_gives_same_portable_env(project: Path) -> None:
    env = RuntimeEnv(working_dir=str(project), pip=["six"])
    assert make_portable(env) == make_portable(env)
    assert make_portable(env).key == make_portable(env).key


def test_env_without_local_code_is_returned_as_is() -> None:
    env = RuntimeEnv(working_dir="s3://bucket/code.zip", excludes=["*.log"])
    assert make_portable(env) is env


def test_local_zip_working_dir_is_uploaded_as_is(project: Path, tmp_path: Path) -> None:
    archive = tmp_path / "code.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("top/main.py", "print(1)\n")
    portable = make_portable(RuntimeEnv(working_dir=str(archive)))
    assert portable.working_dir is not None
    assert Path(portable.working_dir.removeprefix("file://")).read_bytes() == archive.read_bytes()
