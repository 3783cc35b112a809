"""Fetching a code archive into a cache entry being built, and unpacking it there."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from runenv import store_layout, uris
from runenv.envs.setup import Setup
from runenv.errors import EnvSetupError, RunenvError, StorageError


def fetch(uri: str, staging: Path, setup: Setup, step: str) -> Path:
    """A local path holding the archive at ``uri``: the file itself for file://, else a download
    into ``staging`` (keeping the file name, which wheels need). An object a store names by its
    digest is checked against it before anything uses it."""
    if uris.scheme_of(uri) == "file":
        target = Path(unquote(urlsplit(uri).path))
        if not target.is_file():
            with as_setup_error(step, setup):
                hint = "check the path: a file:// URI is read on the node that sets up the env"
                raise StorageError(f"object not found: {uri}", hint=hint)
    else:
        from runenv.storage import download  # on use: an env without code never loads storage

        setup.report("download", uri)
        target = staging / (Path(urlsplit(uri).path).name or "archive")
        with as_setup_error(step, setup):
            download(uri, target)
    name = store_layout.package_name_in_uri(uri)
    if name is not None:
        from runenv.packaging.archive import verify_package

        with as_setup_error(step, setup):
            verify_package(target, name, source=uri)
    setup.check_deadline(step)
    return target


def fetch_and_unpack(uri: str, destination: Path, setup: Setup, step: str, *, lift: bool) -> None:
    from runenv.packaging import unpack

    archive = fetch(uri, destination.parent, setup, step)
    setup.report("unpack", uri)
    with as_setup_error(step, setup):
        unpack(archive, destination, lift_single_directory=lift)
    if archive.parent == destination.parent:
        archive.unlink()  # a download into the entry: only what it unpacked stays


@contextmanager
def as_setup_error(step: str, setup: Setup) -> Iterator[None]:
    """Download and unpack failures become EnvSetupErrors naming the step, logged."""
    try:
        yield
    except EnvSetupError:
        raise
    except RunenvError as error:
        setup.log.write(f"{step}: {error.message}")
        raise EnvSetupError(
            f"{step}: {error.message}",
            hint=error.hint,
            step=step,
            log_path=str(setup.log.path),
        ) from error
