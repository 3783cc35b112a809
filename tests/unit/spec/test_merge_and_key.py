"""merge(parent, child), canonical JSON and the content key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runenv import RuntimeEnv, merge


def test_child_fields_replace_parent_fields() -> None:
    parent = RuntimeEnv(working_dir="s3://b/parent.zip", pip=["six"], excludes=["*.log"])
    child = RuntimeEnv(working_dir="s3://b/child.zip")
    merged = merge(parent, child)
    assert merged.working_dir == "s3://b/child.zip"
    assert merged.pip == parent.pip
    assert merged.excludes == ("*.log",)


def test_env_vars_merge_per_key_child_wins() -> None:
    parent = RuntimeEnv(env_vars={"A": "parent", "B": "parent"})
    child = RuntimeEnv(env_vars={"B": "child", "C": "child"})
    assert merge(parent, child).env_vars == {"A": "parent", "B": "child", "C": "child"}


def test_config_merges_per_key() -> None:
    parent = RuntimeEnv(config={"eager_install": False, "setup_timeout_seconds": 30})
    child = RuntimeEnv(config={"setup_timeout_seconds": 90})
    config = merge(parent, child).config
    assert (config.eager_install, config.setup_timeout_seconds) == (False, 90)


def test_child_python_env_replaces_any_parent_python_env() -> None:
    parent = RuntimeEnv(pip=["six"])
    merged = merge(parent, RuntimeEnv(conda="my-env"))
    assert merged.pip is None
    assert merged.conda == "my-env"
    assert merge(RuntimeEnv(conda="x"), RuntimeEnv(uv=["six"])).conda is None


def test_empty_child_inherits_everything() -> None:
    parent = RuntimeEnv(pip=["six"], env_vars={"A": "1"})
    assert merge(parent, RuntimeEnv()) == parent


def test_nested_merge_inherits_from_the_nearest_parent() -> None:
    job = RuntimeEnv(env_vars={"LEVEL": "job", "JOB": "1"}, pip=["six"])
    task = merge(job, RuntimeEnv(env_vars={"LEVEL": "task"}))
    nested = merge(task, RuntimeEnv(env_vars={"NESTED": "1"}))
    assert nested.env_vars == {"LEVEL": "task", "JOB": "1", "NESTED": "1"}
    assert nested.pip == job.pip


def test_merge_does_not_change_its_inputs() -> None:
    parent = RuntimeEnv(env_vars={"A": "1"})
    merge(parent, RuntimeEnv(env_vars={"A": "2"}))
    assert parent.env_vars == {"A": "1"}


def test_canonical_json_sorted_and_compact() -> None:
    env = RuntimeEnv(env_vars={"B": "2", "A": "1"}, pip=["six"])
    assert env.canonical_json() == (
        '{"env_vars":{"A":"1","B":"2"},"pip":{"packages":["six"],"pip_check":false}}'
    )


def test_key_ignores_config_and_upload_path() -> None:
    base = RuntimeEnv(pip=["six"])
    assert RuntimeEnv(pip=["six"], config={"setup_timeout_seconds": 5}).key == base.key
    assert RuntimeEnv(pip=["six"], upload_path="s3://b/p").key == base.key


def test_key_same_for_equivalent_spellings() -> None:
    assert RuntimeEnv(pip=["six"]).key == RuntimeEnv(pip={"packages": ["six"]}).key
    assert RuntimeEnv(pip=["six", "six"]).key == RuntimeEnv(pip=["six"]).key
    assert (
        RuntimeEnv(env_vars={"A": "1", "B": "2"}).key
        == RuntimeEnv(env_vars={"B": "2", "A": "1"}).key
    )


@pytest.mark.parametrize(
    "changed",
    [
        {"pip": ["six==1.16"]},
        {"pip": ["six", "attrs"]},
        {"pip": {"packages": ["six"], "pip_check": True}},
        {"pip": {"packages": ["six"], "pip_version": "==24.0"}},
        {"pip": {"packages": ["six"], "pip_install_options": ["--pre"]}},
        {"uv": ["six"]},
        {"pip": ["six"], "env_vars": {"A": "2"}},
        {"pip": ["six"], "env_vars": {"A": "1", "B": ""}},
        {"pip": ["six"], "working_dir": "s3://b/other.zip"},
        {"pip": ["six"], "working_dir": "s3://b/code.zip", "excludes": ["*.log"]},
        {"pip": ["six"], "working_dir": "s3://b/code.zip", "py_modules": ["s3://b/m.zip"]},
    ],
)
def test_key_changes_for_each_meaningful_change(changed: dict[str, object]) -> None:
    base = RuntimeEnv(pip=["six"], env_vars={"A": "1"}, working_dir="s3://b/code.zip")
    if "env_vars" not in changed:
        changed = {**changed, "env_vars": {"A": "1"}}
    if "working_dir" not in changed:
        changed = {**changed, "working_dir": "s3://b/code.zip"}
    assert RuntimeEnv(**changed).key != base.key


def test_key_is_stable_across_processes(tmp_path: Path) -> None:
    env = {"pip": ["six", "attrs"], "env_vars": {"Z": "1", "A": "2"}, "working_dir": "s3://b/c.zip"}
    script = (
        "import json, sys, runenv\n"
        "print(runenv.RuntimeEnv.from_dict(json.loads(sys.argv[1])).key)\n"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", script, json.dumps(env)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert keys == {RuntimeEnv.from_dict(env).key}


def test_envs_are_hashable_and_comparable() -> None:
    assert len({RuntimeEnv(pip=["six"]), RuntimeEnv(pip={"packages": ["six"]})}) == 1
    assert RuntimeEnv(pip=["six"]) != RuntimeEnv(pip=["attrs"])


def test_replace_revalidates() -> None:
    env = RuntimeEnv(pip=["six"])
    assert env.replace(pip=None, uv=["six"]).uv is not None
    with pytest.raises(Exception, match="pip and uv are both set"):
        env.replace(uv=["six"])


def test_keys_of_existing_envs_do_not_change() -> None:
    # Cache entries and job records refer to envs by key: a new release must compute the same.
    assert RuntimeEnv(pip=["six"]).key == (
        "c0c582d1bc504bd0aa28eb6c9a76e265b7aeec7dd20dc18fdc37df23bf8c40a1"
    )
    env = RuntimeEnv(pip=["requests>=2,<3"], env_vars={"A": "é"}, working_dir="s3://b/x.zip")
    assert env.key == "82f9dbf9ab53bf3159aa0787d5c6c102ab5bf3772fdb8e4039e928d32adf74b3"
