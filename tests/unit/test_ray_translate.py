"""The Ray backend's pure parts: env translation (both modes), package URIs, error mapping."""

from __future__ import annotations

import pytest
import ray.exceptions as rx

from runenv import (
    ActorDiedError,
    GetTimeoutError,
    RuntimeEnvSetupError,
    TaskError,
    UsageError,
    WorkerCrashedError,
)
from runenv.ray import errors, translate
from runenv.ray.envs import RayPackageStore
from runenv.spec import RuntimeEnv

DIGEST = "ab" * 32
LOCKED = {
    "packages": ["six"],
    "pip_install_options": ["--no-index", "--find-links", "/wheels"],
    "lock": {"python": "3.11.7", "requirements": ["six==1.16.0"]},
}


def prepared(**fields: object) -> RuntimeEnv:
    return RuntimeEnv.from_dict(fields)


def test_plugin_mode_carries_the_env_whole_and_gives_ray_its_own_packages() -> None:
    env = prepared(
        working_dir=f"gcs://_ray_pkg_{DIGEST}.zip",
        py_modules=[f"gcs://_ray_pkg_{DIGEST}.zip", "s3://bucket/pkgs/mod.zip"],
        pip=LOCKED,
        env_vars={"A": "1"},
        config={"setup_timeout_seconds": 30},
        upload_path="s3://bucket",
    )
    ray_env = translate.to_ray(env, "plugin")
    assert ray_env["working_dir"] == f"gcs://_ray_pkg_{DIGEST}.zip"
    assert ray_env["py_modules"] == [f"gcs://_ray_pkg_{DIGEST}.zip"]
    field = ray_env["runenv"]
    assert field["py_modules"] == ["s3://bucket/pkgs/mod.zip"]
    assert field["pip"]["lock"]["requirements"] == ["six==1.16.0"]
    assert "working_dir" not in field and "upload_path" not in field
    assert ray_env["config"] == {"setup_timeout_seconds": 30}
    # What the worker's check expects is what the plugin computes from the field.
    assert translate.expected_key(ray_env) == RuntimeEnv._from_canonical(field).key
    back = translate.from_ray(ray_env)
    assert back is not None and back.working_dir == env.working_dir
    assert sorted(back.py_modules) == sorted(env.py_modules)


def test_plugin_mode_keeps_the_upload_path_where_nodes_find_a_pylocks_files() -> None:
    pylocked = {
        "packages": ["six"],
        "lock": {
            "python": "3.11.7",
            "requirements": ["six==1.16.0"],
            "pylock": {"lock-version": "1.0", "packages": [{"name": "six", "version": "1.16.0"}]},
            "platforms": ["x86_64-unknown-linux-gnu"],
        },
    }
    env = prepared(pip=pylocked, upload_path="s3://bucket", config={"share_env": True})
    field = translate.to_ray(env, "plugin")["runenv"]
    assert field["upload_path"] == "s3://bucket"
    assert field["config"]["share_env"] is True
    assert translate.expected_key(translate.to_ray(env, "plugin")) == env.key


def test_stock_mode_spells_the_locked_pins_in_rays_own_fields() -> None:
    env = prepared(working_dir="s3://bucket/pkgs/code.zip", pip=LOCKED, env_vars={"A": "1"})
    assert translate.to_ray(env, "stock") == {
        "working_dir": "s3://bucket/pkgs/code.zip",
        "pip": {
            "packages": ["six==1.16.0"],
            "pip_install_options": ["--no-index", "--find-links", "/wheels"],
        },
        "env_vars": {"A": "1"},
        "config": {"setup_timeout_seconds": 600},
    }
    uv = prepared(uv={**{k: v for k, v in LOCKED.items() if k != "pip_install_options"}})
    assert translate.to_ray(uv, "stock")["uv"] == {"packages": ["six==1.16.0"]}
    assert translate.expected_key(translate.to_ray(env, "stock")) is None


def test_stock_mode_passes_a_conda_env_name_and_empty_envs_translate_to_nothing() -> None:
    assert translate.to_ray(prepared(conda="base"), "stock")["conda"] == "base"
    assert translate.to_ray(prepared(), "plugin") == {}


def test_rays_package_store_names_are_content_addressed() -> None:
    store = RayPackageStore()
    assert store.uri(f"pkgs/{DIGEST}.zip") == f"gcs://_ray_pkg_{DIGEST}.zip"
    with pytest.raises(UsageError, match="upload_path"):
        store.uri(f"pkgs/{DIGEST}/demo-1.0-py3-none-any.whl")


class Custom(Exception):
    pass


def test_a_task_error_is_also_the_causes_type_with_the_remote_traceback() -> None:
    ray_error = rx.RayTaskError("f", "Traceback: line 3", Custom("bad"), pid=1, ip="x")
    raised = errors.from_ray(ray_error.as_instanceof_cause())
    assert isinstance(raised, Custom) and isinstance(raised, TaskError)
    assert "bad" in str(raised) and "Traceback" in str(raised)


def test_ray_failures_become_runenvs() -> None:
    assert isinstance(errors.from_ray(rx.GetTimeoutError("late")), GetTimeoutError)
    assert isinstance(errors.from_ray(rx.WorkerCrashedError()), WorkerCrashedError)
    assert isinstance(errors.from_ray(rx.ActorDiedError()), ActorDiedError)
    setup = errors.from_ray(rx.RuntimeEnvSetupError("pip failed"))
    assert isinstance(setup, RuntimeEnvSetupError) and "pip failed" in str(setup)


def test_the_plugin_check_failure_inside_an_actor_init_stays_a_setup_error() -> None:
    check = RuntimeEnvSetupError("node n has no runenv plugin", hint="start it")
    remote_traceback = (
        f"Traceback (most recent call last):\nrunenv.errors.RuntimeEnvSetupError: {check}"
    )
    creation = rx.RayTaskError("A.__init__", remote_traceback, check, pid=1, ip="x")
    raised = errors.from_ray(rx.ActorDiedError(creation))
    assert isinstance(raised, RuntimeEnvSetupError)
    assert "has no runenv plugin" in str(raised)
    init_failed = rx.ActorDiedError(rx.RayTaskError("A.__init__", "tb", Custom("x"), pid=1, ip="x"))
    assert "__init__ raised" in str(errors.from_ray(init_failed))
