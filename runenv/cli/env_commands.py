"""``runenv env ...``: the runtime_env dict's schema, and validating a file."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from runenv.cli.app import env_app
from runenv.cli.progress import stage_reporter
from runenv.errors import RunenvError
from runenv.spec import RuntimeEnv
from runenv.units import human_bytes, parse_size

if TYPE_CHECKING:
    from runenv.cache import EntryInfo, ResourceCache
    from runenv.context import Context


@env_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the runtime_env dict (for editors)."""
    from runenv.spec import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@env_app.command("validate")
def validate(file: Path = typer.Argument(..., help="A runtime_env JSON or YAML file.")) -> None:
    """Print the normalized runtime_env of FILE, or what is wrong with it."""
    env = _env_of(file)
    typer.echo(json.dumps(env.to_dict(), indent=2, sort_keys=True))
    print(f"valid runtime_env, key {env.key}", file=sys.stderr)


@env_app.command("create")
def create(
    file: Path = typer.Argument(..., help="A runtime_env JSON or YAML file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Set up the runtime env of FILE (a runtime_env, or a conda environment.yml) in this
    node's cache."""
    context = _materialized(file, quiet)
    typer.echo(f"key:    {context.env_key}")
    conda_prefix = context.env_vars.get("CONDA_PREFIX")
    if conda_prefix:
        typer.echo(f"prefix: {conda_prefix}")
    typer.echo(f"python: {context.python_executable}")
    for entry, _ in context.fresh_copies:  # the copy made for this command is gone with it
        typer.echo(f"code:   {entry} (read-only: each run works in a copy of its own)")
    typer.echo(f"log:    {context.setup_log}")


@env_app.command("lock")
def lock(
    file: Path = typer.Argument(..., help="A runtime_env JSON or YAML file."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the lock here (pylock.toml)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Resolve FILE's pip/uv packages once for every platform in config.platforms and print
    (or write) the PEP 751 lock every node installs from. Check it in as pylock.toml next to
    the code (or name it in the pip/uv field) and it is used as it is."""
    from runenv.envs import pylock
    from runenv.materialize import lock as lock_env

    env = RuntimeEnv.from_file(file)
    with stage_reporter(quiet) as on_stage:
        packages = lock_env(env, on_stage)
    if packages is None or packages.lock is None or packages.lock.pylock is None:
        raise RunenvError(
            f"{file} has no pip or uv packages to lock (or an old-style lock without files)",
            hint="add a pip or uv field to the runtime_env",
        )
    text = pylock.render(packages.lock.pylock)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
    platforms = ", ".join(packages.lock.platforms) or "as given"
    print(f"locked {len(packages.lock.requirements)} packages for {platforms}", file=sys.stderr)


@env_app.command("path")
def path(file: Path = typer.Argument(..., help="A runtime_env JSON or YAML file.")) -> None:
    """Set up the runtime env of FILE if needed and print its Python interpreter."""
    typer.echo(_materialized(file, quiet=True).python_executable)


@env_app.command("list")
def list_entries(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The entries of this node's env cache: kind, key, size, last use, whether in use."""
    entries = _cache().entries()
    if as_json:
        typer.echo(json.dumps([_entry_record(entry) for entry in entries], indent=2))
        return
    from rich.console import Console  # on use: the run path doesn't need rich
    from rich.table import Table

    table = Table("kind", "key", "size", "last used", "in use", "what", box=None)
    for entry in entries:
        table.add_row(
            entry.kind,
            entry.key[:12],
            human_bytes(entry.size),
            _ago(entry.last_used),
            "yes" if entry.in_use else "",
            _what(entry),
        )
    Console(highlight=False).print(table)


@env_app.command("show")
def show(key: str = typer.Argument(..., help="A cache key, or its first characters.")) -> None:
    """Everything known about one cache entry."""
    matches = [entry for entry in _cache().entries() if entry.key.startswith(key)]
    if len(matches) != 1:
        found = "no entry" if not matches else f"{len(matches)} entries"
        raise RunenvError(f"{found} with a key starting {key!r}", hint="see `runenv env list`")
    typer.echo(json.dumps(_entry_record(matches[0]), indent=2))


@env_app.command("verify")
def verify(
    key: str = typer.Argument(None, help="A cache key, or its first characters (default: all)."),
    full: bool = typer.Option(
        False, "--full", help="Also re-hash every file (reads everything; slower)."
    ),
) -> None:
    """Check cache entries against what was built: ok, modified or damaged. Exits 1 if any is
    not ok (the next use of such an entry builds it again)."""
    cache = _cache()
    entries = [entry for entry in cache.entries() if key is None or entry.key.startswith(key)]
    if key is not None and not entries:
        raise RunenvError(f"no entry with a key starting {key!r}", hint="see `runenv env list`")
    bad = 0
    for entry in entries:
        problem = cache.verify(entry, full=full)
        bad += problem is not None
        state = "ok" if problem is None else f"{problem.state}: {problem.detail}"
        typer.echo(f"{entry.kind:<12} {entry.key[:12]}  {state}")
    if bad:
        raise RunenvError(
            f"{bad} of {len(entries)} entries are not as they were built",
            hint="they are rebuilt when next used; `runenv env gc` removes unused ones now",
        )


@env_app.command("gc")
def gc(
    max_size: str = typer.Option("0", "--max-size", help="Keep at most this much (10G, 500M)."),
) -> None:
    """Remove unused cache entries, least recently used first, down to --max-size."""
    report = _cache().gc(parse_size(max_size))
    for entry in report.removed:
        typer.echo(f"removed {entry.kind} {entry.key[:12]} ({human_bytes(entry.size)})")
    for entry in report.kept_in_use:
        typer.echo(f"kept    {entry.kind} {entry.key[:12]} (in use)")
    typer.echo(f"freed {human_bytes(report.bytes_freed)}")


def _cache() -> ResourceCache:
    from runenv.cache import ResourceCache

    return ResourceCache()


def _materialized(file: Path, quiet: bool) -> Context:
    from runenv.materialize import materialize

    env = _env_of(file)
    with stage_reporter(quiet) as on_stage:
        return materialize(env, on_stage)


def _env_of(file: Path) -> RuntimeEnv:
    """The env of a runtime_env file, or of a conda environment.yml (a mapping with
    ``dependencies`` and no runtime_env field) as ``{"conda": FILE}``."""
    from runenv.spec import read_env_file

    data = read_env_file(file)
    conda_only = {"name", "channels", "dependencies", "variables", "prefix"}
    if "dependencies" in data and set(data) <= conda_only:
        return RuntimeEnv.from_dict({"conda": str(file.expanduser().resolve())})
    return RuntimeEnv.from_dict(data, base_dir=None)


def _entry_record(entry: EntryInfo) -> dict[str, object]:
    return {
        "kind": entry.kind,
        "key": entry.key,
        "path": str(entry.path),
        "size": entry.size,
        "created": entry.created,
        "last_used": entry.last_used,
        "in_use": entry.in_use,
        "description": entry.description,
    }


def _what(entry: EntryInfo) -> str:
    description = entry.description
    if "uri" in description:
        return str(description["uri"])
    packages = description.get("packages")
    return ", ".join(map(str, packages)) if isinstance(packages, list) else ""


def _ago(timestamp: float) -> str:
    seconds = max(0.0, time.time() - timestamp)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"
