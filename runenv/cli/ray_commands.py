"""``runenv ray ...``: start Ray nodes with runenv's plugin registered."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import typer

from runenv.cli.app import app
from runenv.errors import RunenvError
from runenv.ray.translate import PLUGIN_CLASS, plugins_variable_value

PLUGINS_VARIABLE = "RAY_RUNTIME_ENV_PLUGINS"

ray_app = typer.Typer(help="Run Ray nodes with runenv's plugin.", no_args_is_help=True)
app.add_typer(ray_app, name="ray")


@ray_app.command(
    "start",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def start(arguments: list[str] = typer.Argument(None, help="Arguments of `ray start`.")) -> None:
    """Run `ray start ARGS...` with runenv's plugin registered (RAY_RUNTIME_ENV_PLUGINS)."""
    ray = ray_command()
    environment = dict(os.environ)
    environment[PLUGINS_VARIABLE] = merged_plugins(environment.get(PLUGINS_VARIABLE))
    sys.stdout.flush()
    os.execve(ray, [ray, "start", *(arguments or [])], environment)


@ray_app.command("plugin-env")
def plugin_env(
    shell: bool = typer.Option(False, "--shell", help="Print an `export` line for a shell."),
) -> None:
    """Print the RAY_RUNTIME_ENV_PLUGINS value that registers runenv's plugin (set it in the
    environment of `ray start` on every node, e.g. a KubeRay pod's env)."""
    value = merged_plugins(os.environ.get(PLUGINS_VARIABLE))
    typer.echo(f"export {PLUGINS_VARIABLE}='{value}'" if shell else value)


def merged_plugins(current: str | None) -> str:
    """``current`` (the user's other plugins, if any) with runenv's plugin added once."""
    if not current or not current.strip():
        return plugins_variable_value()
    try:
        plugins = json.loads(current)
    except ValueError:
        plugins = None
    if not isinstance(plugins, list):
        raise RunenvError(
            f"{PLUGINS_VARIABLE} is set to {current!r}, which is not a JSON list of plugins",
            hint=f'unset it, or make it a list like [{{"class": "{PLUGIN_CLASS}"}}]',
        )
    if any(isinstance(p, dict) and p.get("class") == PLUGIN_CLASS for p in plugins):
        return current
    return json.dumps([*plugins, *json.loads(plugins_variable_value())])


def ray_command() -> str:
    """The `ray` program: the one on PATH, else the one installed beside this Python."""
    found = shutil.which("ray") or shutil.which("ray", path=str(Path(sys.executable).parent))
    if found is None:
        raise RunenvError(
            "Ray is not installed here: no `ray` command on PATH or beside " + sys.executable,
            hint="install Ray in the Python runenv is installed in: pip install 'runenv[ray]'",
        )
    return found
