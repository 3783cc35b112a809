"""The Typer application the command modules register on."""

from __future__ import annotations

import typer

from runenv import __version__

app = typer.Typer(
    name="runenv",
    help="Runtime environments for distributed Python.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
env_app = typer.Typer(help="Inspect and validate runtime environments.", no_args_is_help=True)
app.add_typer(env_app, name="env")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"runenv {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Runtime environments for distributed Python."""
