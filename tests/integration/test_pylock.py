"""Universal locks: one PEP 751 lock for several platforms, made and installed here, markers
honoured, the other platform's wheels named; lock files used as they are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from uv import find_uv_bin
from wheels import CP, LINUX_TAGS, build_wheel, platform_wheels

from runenv.envs import pylock

RUNENV = [sys.executable, "-m", "runenv"]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    return tmp_path / "home"


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    return platform_wheels(tmp_path / "wheels")


def env_file(path: Path, wheels: Path, **extra: object) -> Path:
    options = ["--no-index", "--find-links", str(wheels)]
    env = {"pip": {"packages": ["app"], "pip_install_options": options}, **extra}
    path.write_text(yaml.safe_dump(env))
    return path


def runenv(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNENV, *args], capture_output=True, text=True, timeout=300, cwd=cwd, check=False
    )


def lock_to(env: Path, output: Path) -> dict[str, object]:
    result = runenv("env", "lock", str(env), "-o", str(output))
    assert result.returncode == 0, result.stderr
    return pylock.parse(output.read_text(), str(output))


def wheel_names(lock: dict[str, object], name: str) -> list[str]:
    packages = {package["name"]: package for package in lock["packages"]}  # type: ignore[attr-defined]
    return sorted(pylock.wheel_name(wheel) for wheel in packages[name]["wheels"])


def test_one_lock_for_two_platforms(tmp_path: Path, wheels: Path) -> None:
    lock = lock_to(env_file(tmp_path / "env.yaml", wheels), tmp_path / "pylock.toml")
    assert lock["lock-version"] == "1.0"
    names = {package["name"]: package for package in lock["packages"]}  # type: ignore[attr-defined]
    # the other platform's wheel is named next to this one's, each with its hash
    assert wheel_names(lock, "native") == sorted(
        f"native-1.0-{CP}-{CP}-{tag}.whl" for tag in LINUX_TAGS.values()
    )
    assert all(wheel["hashes"]["sha256"] for wheel in names["native"]["wheels"])
    # markers kept; a package no target platform needs (macOS only) left out
    assert names["armonly"]["marker"] == "platform_machine == 'aarch64'"
    if pylock.here().endswith("linux-gnu"):
        assert "maconly" not in names


def test_the_lock_installs_here_with_markers_honoured(tmp_path: Path, wheels: Path) -> None:
    env = env_file(tmp_path / "env.yaml", wheels)
    code = "import importlib.util as u, native; print(native.ARCH, bool(u.find_spec('armonly')))"
    result = runenv("run", "--runtime-env", str(env), "--", "python", "-c", code)
    assert result.returncode == 0, result.stderr
    machine = "aarch64" if "aarch64" in pylock.here() else "x86_64"
    assert result.stdout.split() == [machine, str(machine == "aarch64")]


def test_the_lock_installs_the_other_platforms_wheels(tmp_path: Path, wheels: Path) -> None:
    lock_file = tmp_path / "pylock.toml"
    lock_to(env_file(tmp_path / "env.yaml", wheels), lock_file)
    other = "aarch64" if "x86_64" in pylock.here() else "x86_64"
    target = tmp_path / "target"
    install = [find_uv_bin(), "pip", "install", "--preview-features", "pylock"]
    install += ["--target", str(target), "--python-platform", f"{other}-unknown-linux-gnu"]
    install += ["--python-version", f"{sys.version_info.major}.{sys.version_info.minor}"]
    subprocess.run([*install, "-r", str(lock_file)], check=True, capture_output=True)
    native = (target / "native" / "__init__.py").read_text()
    assert native == f"ARCH = {other!r}\n"
    assert (target / "armonly").is_dir() == (other == "aarch64")


def test_a_platform_without_wheels_is_an_error_naming_the_package(
    tmp_path: Path, wheels: Path
) -> None:
    env = env_file(tmp_path / "env.yaml", wheels, config={"platforms": ["x86_64-pc-windows-msvc"]})
    result = runenv("env", "lock", str(env))
    assert result.returncode != 0
    assert "no wheel (and no sdist) of native==1.0 (x86_64-pc-windows-msvc)" in result.stderr


def test_unknown_platform_is_refused_naming_the_field(tmp_path: Path, wheels: Path) -> None:
    env = env_file(tmp_path / "env.yaml", wheels, config={"platforms": ["sparc-sun-solaris"]})
    result = runenv("env", "validate", str(env))
    assert result.returncode != 0
    assert "runtime_env.config.platforms: unknown platform 'sparc-sun-solaris'" in result.stderr


def test_a_checked_in_lock_is_used_as_it_is(tmp_path: Path, wheels: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    lock_to(env_file(tmp_path / "env.yaml", wheels), project / "pylock.toml")
    (project / "main.py").write_text("import app; print('app', app.VERSION)\n")
    build_wheel(wheels, "app", "2.0", requires=["native"])  # a resolution now would take 2.0
    result = runenv("run", "--working-dir", ".", "--", "python", "main.py", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "app 1.0\n"
    assert "resolving" not in result.stderr


def test_a_lock_file_named_in_the_field_is_used_as_it_is(tmp_path: Path, wheels: Path) -> None:
    lock_file = tmp_path / "pylock.toml"
    lock_to(env_file(tmp_path / "env.yaml", wheels), lock_file)
    named = tmp_path / "named.yaml"
    named.write_text(yaml.safe_dump({"uv": str(lock_file)}))
    result = runenv("env", "validate", str(named))
    assert result.returncode == 0, result.stderr
    validated = yaml.safe_load(result.stdout)
    assert validated["uv"]["packages"] == ["app", "armonly", "native"]
    assert validated["uv"]["lock"]["pylock"]["lock-version"] == "1.0"
    code = "import native; print(native.ARCH)"
    run = runenv("run", "--runtime-env", str(named), "--", "python", "-c", code)
    assert run.returncode == 0, run.stderr
    assert "resolving" not in run.stderr


def test_dates_in_a_lock_are_left_out_and_the_rest_written_back() -> None:
    text = (
        'lock-version = "1.0"\ncreated-by = "uv"\n\n[[packages]]\nname = "six"\nversion = "1.0"\n'
        'wheels = [{ url = "https://h/six-1.0-py3-none-any.whl", upload-time = '
        '2026-05-18T23:37:14Z, size = 10, hashes = { sha256 = "ab" } }]\n'
    )
    data = pylock.parse(text, "pylock.toml")
    assert data["packages"][0]["wheels"][0] == {
        "url": "https://h/six-1.0-py3-none-any.whl",
        "size": 10,
        "hashes": {"sha256": "ab"},
    }
    assert pylock.parse(pylock.render(data), "again") == data
