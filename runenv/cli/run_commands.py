"""``runenv run``: materialize a runtime env, then run a command in it."""

from __future__ import annotations

from pathlib import Path

import typer

from runenv.cli import fast
from runenv.cli.app import app
from runenv.cli.options import env_dict_from_flags
from runenv.cli.progress import stage_reporter
from runenv.errors import RunenvError


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
    """Set up the runtime env, then run COMMAND in it; its exit code is passed through.

    Once an env is set up, running it again with the same flags from the same directory,
    nothing it was made from having changed, starts COMMAND at once.
    """
    if not command:
        raise RunenvError("no command to run", hint="runenv run [OPTIONS] -- python main.py")
    from runenv.cli import recipes  # here: `runenv --help` needn't load setup code
    from runenv.materialize import materialize
    from runenv.spec import RuntimeEnv

    missed = fast.missed()
    flags = (runtime_env, runtime_env_json, working_dir, pip, env_var)
    with recipes.recording() as recording:
        data = env_dict_from_flags(*flags)
        env = RuntimeEnv.from_dict(data)
        with stage_reporter(quiet) as on_stage:
            context = materialize(env, on_stage)
    result = recipes.context_record(context)
    if missed is not None and recipes.agrees(missed[1], command, *flags):
        recipes.write(missed[0], runtime_env, data, env, result, recording)
    fast.run_command(command, result, context.lease_fds)
