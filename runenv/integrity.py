"""Cache entries checked before reuse: a stat manifest, as git's index keeps one.

When an entry is published its manifest (beside it: writing it into the entry would change the
entry's own directory) records, for every path in it, the type, size,
modification time and inode — and each file's sha256. Reusing the entry stats every recorded
path again (no reading, no hashing): a file edited in place, replaced, truncated or deleted, or a
directory that gained or lost a name (its modification time moves), makes the entry *modified*
or *damaged*, and the cache rebuilds it. ``runenv env verify --full`` also re-hashes every file.

Processes that use entries are started with ``PYTHONDONTWRITEBYTECODE`` (entries carry their
bytecode already), so using an entry never changes it.

As root, permission bits stop nothing. Where the kernel allows it (CAP_LINUX_IMMUTABLE, a file
system with inode flags), a read-only entry is also *sealed*: every file and directory in it gets
the immutable flag (``chattr +i``), which stops root too — changing it takes a deliberate
``chattr -i``, as changing a read-only entry takes a deliberate ``chmod`` — and checking it
stats its directories only, as for other users. Where sealing is refused, root's checks stat
every path.

Checking loads nothing beyond ``os`` and ``stat``: the CLI's fast path checks entries too.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # typing itself costs milliseconds on the fast path
if TYPE_CHECKING:
    from pathlib import Path

_HEADER = "runenv-manifest-v1"
_READ_ONLY = "read-only"  # on the header line: the entry's write bits were removed
_SEALED = "sealed"  # on the header line: every path in the entry is immutable, for root too
_SMALL = 256  # an entry of up to this many paths (a lock) is statted whole: that costs nothing
_GET_FLAGS, _SET_FLAGS, _IMMUTABLE = 0x80086601, 0x40086602, 0x10  # linux/fs.h
# Set for every process an env starts: importing from an entry must not write bytecode into it.
USE_WITHOUT_WRITING = {"PYTHONDONTWRITEBYTECODE": "1"}
_SEPARATOR = "\t"


class Problem:
    """Why an entry cannot be used as it is: ``state`` is "modified" or "damaged"."""

    __slots__ = ("detail", "state")

    def __init__(self, state: str, detail: str) -> None:
        self.state = state
        self.detail = detail

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and (self.state, self.detail) == (
            other.state,
            other.detail,
        )

    def __hash__(self) -> int:
        return hash((self.state, self.detail))

    def __repr__(self) -> str:
        return f"Problem({self.state!r}, {self.detail!r})"

    def __str__(self) -> str:
        return f"{self.state}: {self.detail}"


def record(root: Path, manifest: Path, *, read_only: bool = False) -> None:
    """Write the manifest of ``root`` to ``manifest`` (atomically: a crash leaves none);
    ``read_only``: the entry's write bits are gone (see :func:`check`)."""
    from runenv.digests import file_digest  # on use: checking needs no hashing

    rows = [f"{_HEADER}{_SEPARATOR}{_READ_ONLY}" if read_only else _HEADER]
    for relative, info in _walk(os.fspath(root)):
        digest = file_digest(os.path.join(root, relative)) if stat.S_ISREG(info.st_mode) else "-"
        rows.append(_row(relative, info, digest))
    partial = manifest.with_name(f".{manifest.name}.partial")
    partial.write_text("\n".join(rows) + "\n", encoding="utf-8", errors="surrogateescape")
    os.replace(partial, manifest)  # complete or absent


def check(root: str | Path, manifest: str | Path, *, full: bool = False) -> Problem | None:
    """The first way ``root`` differs from its ``manifest``, or None when it does not.

    Stats every recorded path; with ``full``, also re-hashes every file and looks for names
    the manifest does not have. In a read-only entry checked by a user other than root, only
    directories are statted (a tenth of the paths): its files cannot be written without first
    changing their modes on purpose, and any name added, removed or replaced moves a
    directory's mtime; so it is for root in a sealed entry. Otherwise, and in small entries
    (a lock), every path is statted.
    """
    try:
        with open(manifest, encoding="utf-8", errors="surrogateescape") as handle:
            text = handle.read()
    except OSError:
        return Problem("damaged", "its manifest is missing")
    rows = text.split("\n")
    header = rows[0].split(_SEPARATOR)
    if header[0] != _HEADER or rows[-1] != "":
        return Problem("damaged", "its manifest is incomplete")
    dirs_only = (
        not full
        and _READ_ONLY in header[1:]
        and (os.geteuid() != 0 or _SEALED in header[1:])
        and len(rows) > _SMALL + 2
    )
    recorded = set()
    body = rows[1:-1]
    if dirs_only:  # picked before splitting: nine rows in ten are files
        body = [row for row in body if row.startswith("d\t")]
    for row in body:
        fields = row.split(_SEPARATOR, 5)
        if len(fields) != 6:
            return Problem("damaged", "its manifest is unreadable")
        relative = _unescaped(fields[5])
        if full:
            recorded.add(relative)
        problem = _check_row(os.fspath(root), relative, fields, full)
        if problem is not None:
            return problem
    if full:
        for relative, _ in _walk(os.fspath(root)):
            if relative not in recorded:
                return Problem("modified", f"{relative} was added")
    return None


def seal(root: Path, manifest: Path) -> bool:
    """Make every file and directory of the published entry ``root`` immutable and say so in
    its ``manifest``; False (and nothing sealed) where the kernel or the file system refuses,
    or where a file is shared with another tree (a hard link: sealing it would seal that too)."""
    paths = _walk(os.fspath(root))
    if any(stat.S_ISREG(info.st_mode) and info.st_nlink > 1 for _, info in paths):
        return False
    sealed: list[str] = []
    for relative, info in reversed(paths):  # the root last: children first
        if stat.S_ISLNK(info.st_mode):
            continue  # links carry no flags; a sealed directory keeps them in place
        path = os.path.join(root, relative) if relative else os.fspath(root)
        if not _set_immutable(path, True):
            for done in sealed:
                _set_immutable(done, False)
            return False
        sealed.append(path)
    with open(manifest, encoding="utf-8", errors="surrogateescape") as handle:
        header, rest = handle.read().split("\n", 1)
    partial = manifest.with_name(f".{manifest.name}.partial")
    text = f"{header}{_SEPARATOR}{_SEALED}\n{rest}"
    partial.write_text(text, encoding="utf-8", errors="surrogateescape")
    os.replace(partial, manifest)
    return True


def unseal(root: str | Path, *, top_only: bool = False) -> None:
    """Clear the immutable flag under ``root`` (only root can have set it), so that the tree
    can be renamed (``top_only``: only that needs the top cleared) or deleted."""
    if os.geteuid() != 0 or not os.path.isdir(root):
        return
    paths = [("", os.lstat(root))] if top_only else _walk(os.fspath(root))
    for relative, info in paths:
        if not stat.S_ISLNK(info.st_mode):
            _set_immutable(os.path.join(root, relative) if relative else os.fspath(root), False)


def _set_immutable(path: str, immutable: bool) -> bool:
    import array
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _GET_FLAGS, flags)
        wanted = flags[0] | _IMMUTABLE if immutable else flags[0] & ~_IMMUTABLE
        if wanted != flags[0]:
            flags[0] = wanted
            fcntl.ioctl(fd, _SET_FLAGS, flags)
        return True
    except OSError:  # EPERM without CAP_LINUX_IMMUTABLE; ENOTTY/EOPNOTSUPP: no inode flags
        return False
    finally:
        os.close(fd)


def _check_row(root: str, relative: str, fields: list[str], full: bool) -> Problem | None:
    kind, size, mtime, inode, digest = fields[:5]
    path = os.path.join(root, relative) if relative else root
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return Problem("damaged", f"{relative} is missing")
    except OSError as error:
        return Problem("damaged", f"{relative} cannot be read ({error.strerror})")
    if _kind(info.st_mode) != kind:
        return Problem("modified", f"{relative or '.'} was replaced")
    if kind == "d":
        if str(info.st_mtime_ns) != mtime:
            return Problem("modified", f"names were added to or removed from {relative or '.'}")
        return None
    same_size = kind != "f" or str(info.st_size) == size
    if not same_size or str(info.st_ino) != inode or str(info.st_mtime_ns) != mtime:
        return Problem("modified", f"{relative} was changed")
    if full and kind == "f":
        from runenv.digests import file_digest

        if file_digest(path) != digest:
            return Problem("modified", f"{relative} was changed (its content differs)")
    return None


def _walk(root: str) -> list[tuple[str, os.stat_result]]:
    """Every path under ``root`` (itself as ""), with its lstat; links are not followed."""
    found = [("", os.lstat(root))]
    stack = [""]
    while stack:
        relative = stack.pop()
        with os.scandir(os.path.join(root, relative) if relative else root) as entries:
            for entry in entries:
                child = f"{relative}/{entry.name}" if relative else entry.name
                info = entry.stat(follow_symlinks=False)
                found.append((child, info))
                if stat.S_ISDIR(info.st_mode):
                    stack.append(child)
    return found


def _row(relative: str, info: os.stat_result, digest: str) -> str:
    kind = _kind(info.st_mode)
    size = info.st_size if kind == "f" else 0
    fields = (kind, str(size), str(info.st_mtime_ns), str(info.st_ino), digest, _escaped(relative))
    return _SEPARATOR.join(fields)


def _escaped(relative: str) -> str:
    """A path on one line of the manifest (names may hold tabs and newlines)."""
    if not any(c in relative for c in "\\\t\n"):
        return relative
    return relative.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _unescaped(field: str) -> str:
    if "\\" not in field:
        return field
    out, index = [], 0
    while index < len(field):
        char = field[index]
        if char == "\\" and index + 1 < len(field):
            out.append({"t": "\t", "n": "\n"}.get(field[index + 1], field[index + 1]))
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    return "f" if stat.S_ISREG(mode) else "o"
