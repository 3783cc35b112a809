from __future__ import annotations

import pytest

from runenv.redact import MASK, looks_random, mask_env_vars, mask_runtime_env, redact_text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://user:pw@host/x.zip", f"https://user:{MASK}@host/x.zip"),
        (
            "get postgres://u:p%40ss@db:5432/app failed",
            f"get postgres://u:{MASK}@db:5432/app failed",
        ),
        ("https://ghp_abc123@github.com/o/r.git", f"https://{MASK}@github.com/o/r.git"),
        ("'s3://bucket/key.zip'", "'s3://bucket/key.zip'"),
        ("no uri here: user:pw@host", "no uri here: user:pw@host"),
        (
            "https://b.s3.amazonaws.com/x.zip?X-Amz-Signature=abcd&X-Amz-Date=1",
            f"https://b.s3.amazonaws.com/x.zip?X-Amz-Signature={MASK}&X-Amz-Date=1",
        ),
        (
            "--index-url https://me:secret@pypi.example/simple",
            f"--index-url https://me:{MASK}@pypi.example/simple",
        ),
        (f"https://user:{MASK}@host", f"https://user:{MASK}@host"),
    ],
)
def test_credentials_inside_uris_are_redacted(text: str, shown: str) -> None:
    assert redact_text(text) == shown
    assert redact_text(redact_text(text)) == shown  # idempotent


def test_env_vars_masked_by_name_and_by_value_shape() -> None:
    shown = mask_env_vars(
        {
            "DATABASE_URL": "postgres://u:pw@db/app",
            "AUTH": "x",
            "MY_PASSWD": "hunter2",
            "GITHUB_TOKEN": "t",
            "OPAQUE": "sk-9fQ2xLr7TbVn3KpZ8wYc1HdJ",
            "JWT": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
            "LOG_LEVEL": "debug",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "MODEL": "meta-llama/Llama-3.1-8B-Instruct",
            "COUNT": 3,
        }
    )
    assert shown["DATABASE_URL"] == f"postgres://u:{MASK}@db/app"
    for name in ("AUTH", "MY_PASSWD", "GITHUB_TOKEN", "OPAQUE", "JWT"):
        assert shown[name] == MASK, name
    assert shown["LOG_LEVEL"] == "debug"
    assert shown["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert shown["MODEL"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert shown["COUNT"] == 3


@pytest.mark.parametrize(
    "value",
    [
        "sk-9fQ2xLr7TbVn3KpZ8wYc1HdJ",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "a3f9c2e8b1d74f60a9e2c5b8d1f4a7e0",
    ],
)
def test_keys_look_random(value: str) -> None:
    assert looks_random(value)


@pytest.mark.parametrize(
    "value",
    [
        "en_US.UTF-8",
        "1234567890123456789012",
        "production-us-east-1-cluster",
        "/home/user/project/data",
        "supercalifragilisticexpialidocious",
        "123e4567-e89b-12d3-a456-426614174000",
        "gpt-4o-mini-2024-07-18",
    ],
)
def test_ordinary_values_do_not(value: str) -> None:
    assert not looks_random(value)


def test_runtime_env_uris_and_env_vars_in_one_pass() -> None:
    env = {
        "working_dir": "https://u:pw@host/code.zip",
        "py_modules": ["https://tok@host/m.zip"],
        "pip": {"packages": ["--index-url https://a:b@idx/simple", "six"]},
        "env_vars": {"API_KEY": "k", "MODE": "fast"},
    }
    shown = mask_runtime_env(env)
    assert shown == {
        "working_dir": f"https://u:{MASK}@host/code.zip",
        "py_modules": [f"https://{MASK}@host/m.zip"],
        "pip": {"packages": [f"--index-url https://a:{MASK}@idx/simple", "six"]},
        "env_vars": {"API_KEY": MASK, "MODE": "fast"},
    }
    assert env["env_vars"]["API_KEY"] == "k"  # the record itself is untouched
