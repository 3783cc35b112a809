"""``runenv env ...``: the runtime_env dict's schema, and validating a file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from runenv.cli.app import env_app
from runenv.spec import RuntimeEnv, json_schema


@env_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the runtime_env dict (for editors)."""
    typer.echo(json.dumps(json_schema(), indent=2))


@env_app.command("validate")
def validate(file: Path = typer.Argument(..., help="A runtime_env JSON or YAML file.")) -> None:
    """Print the normalized runtime_env of FILE, or what is wrong with it."""
    env = RuntimeEnv.from_file(file)
    typer.echo(json.dumps(env.to_dict(), indent=2, sort_keys=True))
    print(f"valid runtime_env, key {env.key}", file=sys.stderr)
