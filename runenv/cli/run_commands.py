"""``runenv run``: materialize a runtime env, then run a command in it."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import typer

from runenv.cli.app import app
from runenv.cli.options import env_from_flags
from runenv.cli.progress import stage_reporter
from runenv.errors import RunenvError

_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run(
    command: list[str] = typer.Argument(None, help="The command to run, after --."),
    runtime_env: Path = typer.Option(None, "--runtime-env", help="A runtime_env YAML/JSON file."),
    runtime_env_json: str = typer.Option(None, "--runtime-env-json", help="A runtime_env as JSON."),
    working_dir: str = typer.Option(None, "--working-dir", help="Overrides the env's working_dir."),
    pip: list[str] = typer.Option([], "--pip", help="A pip requirement (repeatable)."),
    env_var: list[str] = typer.Option([], "--env-var", help="NAME=VALUE (repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Set up the runtime env, then run COMMAND in it; its exit code is passed through."""
    if not command:
        raise RunenvError("no command to run", hint="runenv run [OPTIONS] -- python main.py")
    from runenv.context import start_process  # here: `runenv --help` needn't load them
    from runenv.materialize import materialize

    env = env_from_flags(runtime_env, runtime_env_json, working_dir, pip, env_var)
    with stage_reporter(quiet) as on_stage:
        context = materialize(env, on_stage)
    try:
        # In our process group: the terminal's foreground group, as an interactive command needs.
        process = start_process(context, command, own_group=False)
    except FileNotFoundError:
        raise RunenvError(
            f"command not found: {command[0]}",
            hint="check the name; the env's bin directory is first on PATH",
        ) from None
    except PermissionError:
        raise RunenvError(f"command is not executable: {command[0]}") from None

    def forward(signum: int, frame: FrameType | None) -> None:
        process.send_signal(signum)

    for signum in _FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    code = process.wait()
    sys.exit(128 - code if code < 0 else code)  # killed by signal N: 128 + N, as shells do
