"""Saying "the disk is full" about the file being written, not whatever else was involved."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from runenv.errors import RunenvError

E = TypeVar("E", bound=RunenvError)

# Out of space, or out of the user's quota: the same remedy.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


@contextmanager
def writing(
    destination: Path | str, what: str, error_type: type[RunenvError] = RunenvError
) -> Iterator[None]:
    """In the block, a full disk (or quota) becomes ``error_type`` naming ``destination``."""
    try:
        yield
    except OSError as error:
        if not is_disk_full(error):
            raise
        raise disk_full_error(destination, what, error, error_type) from None


def disk_full_error(destination: Path | str, what: str, error: OSError, error_type: type[E]) -> E:
    """``error_type`` saying the disk is full where ``destination`` (``what``) was written."""
    where = Path(destination).parent
    return error_type(
        f"the disk is full: cannot write {what + ' ' if what else ''}{destination} "
        f"({error.strerror})",
        hint=f"free space there (see `df -h {where}`), or set RUNENV_HOME (or the env's "
        "upload_path) to a disk with room",
    )
