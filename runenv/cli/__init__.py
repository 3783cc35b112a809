"""The ``runenv`` command: thin commands over the library; errors as ``error:`` / ``hint:``.

A plain ``runenv run ... -- COMMAND`` of an env that is already set up is served by the fast
path (:mod:`runenv.cli.fast`) before Typer and the command modules are imported.
"""

from __future__ import annotations

import sys

from runenv import __version__
from runenv.errors import EnvSetupError, RunenvError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_ERROR = 1
EXIT_INTERNAL = 3


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the command, turning failures into ``error:`` / ``hint:`` and exit codes.

    Usage errors are Click's (exit 2); everything else that is not a RunenvError is a bug.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from runenv.cli import fast

        fast.try_fast_path(args)  # returns only when the fast path cannot serve this command
        _run_click(args)
    except RunenvError as error:
        print_error(error)
        sys.exit(EXIT_ERROR)
    except Exception:  # a bug in runenv, not bad input: say so, with the traceback
        import traceback

        traceback.print_exc()
        print(f"internal error in runenv {__version__}: please report it", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)


def _run_click(args: list[str]) -> None:
    import typer

    # Importing the command modules registers their commands on ``app``.
    from runenv.cli import (  # noqa: F401
        env_commands,
        job_commands,
        package_commands,
        ray_commands,
        run_commands,
    )
    from runenv.cli.app import app

    command = typer.main.get_command(app)
    command.main(args=args, prog_name="runenv", standalone_mode=True)


def print_error(error: RunenvError) -> None:
    print(f"error: {error.message}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)
    if isinstance(error, EnvSetupError) and error.log_path:
        print(f"setup log: {error.log_path}", file=sys.stderr)
