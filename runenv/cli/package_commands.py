"""``runenv package DIR``: package a directory into a store and say what went in."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from runenv import settings
from runenv.cli.app import app
from runenv.spec import RuntimeEnv
from runenv.units import human_bytes

if TYPE_CHECKING:
    from runenv.packaging import Package


@app.command("package")
def package(
    directory: Path = typer.Argument(..., help="The directory to package."),
    upload_path: str = typer.Option(
        None, "--upload-path", help="Where to store it (path, file://, s3://, gs://)."
    ),
    exclude: list[str] = typer.Option(
        [], "--exclude", "-x", help="A gitignore-style pattern to leave out (repeatable)."
    ),
    max_size_mb: float = typer.Option(
        None, "--max-size-mb", help="Size limit in MiB (default RUNENV_MAX_PACKAGE_MB or 100)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print everything as one JSON object."),
    list_files: bool = typer.Option(False, "--list", help="Print the included paths."),
) -> None:
    """Package DIR as a content-addressed archive and print its URI."""
    from runenv.packaging import package_directory
    from runenv.storage import Store

    # Validate the same way a runtime_env would, so errors read the same.
    env = RuntimeEnv(working_dir=str(directory), excludes=exclude, upload_path=upload_path)
    store = Store(env.upload_path or settings.default_store_uri())
    max_bytes = None if max_size_mb is None else int(max_size_mb * 1024 * 1024)
    result = package_directory(
        Path(str(env.working_dir)), store, excludes=env.excludes, max_bytes=max_bytes
    )
    if as_json:
        typer.echo(json.dumps(package_summary(result), indent=2))
        return
    if list_files:
        for path in result.files:
            typer.echo(path)
    report = "\n".join(describe_package(result))
    print(report, file=sys.stderr if list_files else sys.stdout)


def package_summary(result: Package) -> dict[str, Any]:
    excluded = result.excluded
    return {
        "uri": result.uri,
        "digest": result.digest,
        "uploaded": result.uploaded,
        "included": {"files": len(result.files), "bytes": result.total_bytes},
        "archive_bytes": result.archive_bytes,
        "excluded": {
            "files": excluded.files,
            "directories": excluded.directories,
            "bytes": excluded.bytes,
            "partial": excluded.partial,
            "largest": [{"path": path, "bytes": size} for size, path in excluded.largest],
        },
        "external_links": [{"path": p, "target": t} for p, t in result.external_links],
        "skipped": [{"path": p, "reason": r} for p, r in result.skipped],
        "files_read": result.files_read,
        "files": result.files,
    }


def describe_package(result: Package) -> list[str]:
    excluded = result.excluded
    archive = f" (archive {human_bytes(result.archive_bytes)})" if result.archive_bytes else ""
    lines = [
        f"uri:      {result.uri}",
        f"digest:   sha256:{result.digest}",
        f"included: {_count(len(result.files), 'file')}, "
        f"{human_bytes(result.total_bytes)}{archive}",
        f"excluded: {_count(excluded.files, 'file')}{'+' if excluded.partial else ''} "
        f"(directories: {excluded.directories}), {human_bytes(excluded.bytes)}",
    ]
    lines += [f"          {human_bytes(size):>10}  {path}" for size, path in excluded.largest]
    lines.append("uploaded: " + ("yes" if result.uploaded else "no, already in the store"))
    lines += [
        f"note:     {p} links outside the directory, to {t} (its content was packaged)"
        for p, t in result.external_links
    ]
    lines += [f"skipped:  {p} ({reason})" for p, reason in result.skipped]
    return lines


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
