"""The ``runenv`` command: thin commands over the library; errors as ``error:`` / ``hint:``."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import typer

from runenv import __version__

# Importing the command modules registers their commands on ``app``.
from runenv.cli import env_commands, job_commands, package_commands, run_commands  # noqa: F401
from runenv.cli.app import app
from runenv.errors import EnvSetupError, RunenvError

EXIT_ERROR = 1
EXIT_INTERNAL = 3


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the command, turning failures into ``error:`` / ``hint:`` and exit codes.

    Usage errors are Click's (exit 2); everything else that is not a RunenvError is a bug.
    """
    command = typer.main.get_command(app)
    args = list(argv) if argv is not None else None
    try:
        command.main(args=args, prog_name="runenv", standalone_mode=True)
    except RunenvError as error:
        print_error(error)
        sys.exit(EXIT_ERROR)
    except Exception:  # a bug in runenv, not bad input: say so, with the traceback
        traceback.print_exc()
        print(f"internal error in runenv {__version__}: please report it", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)


def print_error(error: RunenvError) -> None:
    print(f"error: {error.message}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)
    if isinstance(error, EnvSetupError) and error.log_path:
        print(f"setup log: {error.log_path}", file=sys.stderr)
