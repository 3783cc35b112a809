"""RuntimeEnv.from_file (JSON and YAML) and the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runenv import RuntimeEnv, SpecError
from runenv.spec import json_schema


def test_from_yaml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "env.yaml").write_text("working_dir: .\npip: [six]\nenv_vars: {A: '1'}\n")
    env = RuntimeEnv.from_file("env.yaml")
    assert env.to_dict() == {
        "working_dir": str(tmp_path),
        "pip": {"packages": ["six"], "pip_check": False},
        "env_vars": {"A": "1"},
    }


def test_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / "env.json"
    path.write_text(json.dumps({"uv": ["six"]}))
    assert RuntimeEnv.from_file(path).to_dict() == {"uv": {"packages": ["six"], "uv_check": False}}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=f"runtime_env file not found: {tmp_path / 'x.yaml'}"):
        RuntimeEnv.from_file(tmp_path / "x.yaml")


def test_not_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text("- pip\n")
    with pytest.raises(SpecError, match="expected a runtime_env mapping at the top, got list"):
        RuntimeEnv.from_file(tmp_path / "env.yaml")


def test_invalid_yaml(tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text("pip: [six\n")
    with pytest.raises(SpecError, match="is not valid JSON or YAML"):
        RuntimeEnv.from_file(tmp_path / "env.yaml")


def test_schema_describes_every_field() -> None:
    schema = json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {
        "working_dir",
        "py_modules",
        "excludes",
        "pip",
        "uv",
        "conda",
        "env_vars",
        "config",
        "upload_path",
    }
    pip_forms = schema["properties"]["pip"]["anyOf"][0]["oneOf"]
    assert [form.get("type", form.get("$ref")) for form in pip_forms] == [
        "array",
        "string",
        "#/$defs/PipInput",
    ]
