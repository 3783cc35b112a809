"""The Ray job backend's pieces that need no cluster: the entrypoint guard, package names,
modes, and Ray's job record as runenv's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from runenv.errors import PackagingError, UsageError
from runenv.jobs.models import JobStatus
from runenv.ray import jobs, translate

KEY = "ab" * 32


def run_in_sh(command: str, active: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    """As Ray runs an entrypoint: ``/bin/sh -c`` (dash on Debian, not bash)."""
    env = {name: value for name, value in os.environ.items() if name != translate.ACTIVE_VARIABLE}
    if active is not None:
        env[translate.ACTIVE_VARIABLE] = active
    return subprocess.run(
        ["/bin/sh", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("active", [None, "", "1", KEY[:-1]])
def test_the_guard_stops_the_entrypoint_where_the_plugin_did_not_act(
    active: str | None, tmp_path: Path
) -> None:
    finished = run_in_sh(jobs.guarded("touch ran", KEY), active, tmp_path)
    assert finished.returncode == jobs.GUARD_EXIT_CODE
    assert "runenv: error: Ray node " in finished.stderr
    assert "has no runenv plugin" in finished.stderr and "--ray-mode stock" in finished.stderr
    assert not (tmp_path / "ran").exists()


def test_the_guard_lets_the_entrypoint_run_in_the_env(tmp_path: Path) -> None:
    finished = run_in_sh(jobs.guarded('echo "it\'s me" && exit 5', KEY), KEY, tmp_path)
    assert (finished.returncode, finished.stdout) == (5, "it's me\n")


def test_split_guard_gives_back_the_user_entrypoint() -> None:
    entrypoint = 'python -c "print(1)" && echo "${HOME}"'
    assert jobs.split_guard(jobs.guarded(entrypoint, KEY)) == (entrypoint, KEY)
    assert jobs.split_guard(entrypoint) == (entrypoint, "")
    # looks like a guard, but is not runenv's: left as it is
    lookalike = f'[ "${{{translate.ACTIVE_VARIABLE}-}}" = {KEY} ] || exit 1; true'
    assert jobs.split_guard(lookalike) == (lookalike, "")


def test_ray_package_names() -> None:
    digest = "0123456789abcdef" * 4
    assert jobs.ray_package_name(f"pkgs/{digest}.zip") == f"_ray_pkg_{digest}.zip"
    assert f"gcs://_ray_pkg_{digest}.zip".startswith(translate.RAY_PACKAGE_PREFIX)
    with pytest.raises(PackagingError, match="zip archives only"):
        jobs.ray_package_name(f"pkgs/{digest}/demo-1.0-py3-none-any.whl")


def test_mode_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(jobs.MODE_VARIABLE, raising=False)
    assert jobs.mode_setting() == "auto"
    monkeypatch.setenv(jobs.MODE_VARIABLE, "Stock")
    assert jobs.mode_setting() == "stock"
    assert jobs.mode_setting("plugin") == "plugin"  # the flag wins over the variable
    with pytest.raises(UsageError, match="unknown Ray mode"):
        jobs.mode_setting("sometimes")


def test_job_info_from_ray_details() -> None:
    field = {"env_vars": {"API_TOKEN": "s3cret"}}
    details = SimpleNamespace(
        submission_id="job-1",
        entrypoint=jobs.guarded("python main.py", translate.plugin_key(field)),
        status="FAILED",
        message="Job entrypoint command failed with exit code 3",
        runtime_env={translate.PLUGIN_FIELD: field, "working_dir": "gcs://_ray_pkg_ab.zip"},
        metadata={"team": "a"},
        driver_exit_code=3,
        start_time=1_700_000_000_500,
        end_time=None,
    )
    info = jobs.job_info(details)
    assert info.entrypoint == "python main.py"
    assert info.env_key == translate.plugin_key(field)
    assert (info.status, info.exit_code, info.attempts) == (JobStatus.FAILED, 3, 1)
    # runenv's form of the env: env_vars at the top, where `job show` masks secrets
    assert info.runtime_env["env_vars"] == {"API_TOKEN": "s3cret"}
    assert info.runtime_env["working_dir"] == "gcs://_ray_pkg_ab.zip"
    assert (info.start_time, info.end_time) == (1_700_000_000.5, None)
