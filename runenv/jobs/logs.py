"""A job's log, read in bounded pieces: a window by byte offset, the whole in chunks, or followed
as it grows. Nothing here reads a log whole: a job may write gigabytes.

Following polls the file's size, every :data:`FOLLOW_POLL_FIRST_SECONDS` at first and then,
while nothing changes, every eighth of the time it has been idle, up to
:data:`FOLLOW_POLL_MAX_SECONDS`: new output is seen within 12.5 % of the quiet before it (a job's
first line promptly), and a long-idle follower wakes once a second (a ``stat`` and a status
check). inotify (``watchfiles``) was not taken: each watcher is an inotify instance — 128 per
user by default, so 128 tails would exhaust them — plus a thread, and a job's end is recorded in
the job store, not in its log, so the status would still be polled.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

from runenv.errors import RunenvError

CHUNK_BYTES = 256 * 1024
# A window asked for by offset is at most this long (a dashboard pages through the rest).
WINDOW_LIMIT_MAX_BYTES = 4 * 1024 * 1024
WINDOW_LIMIT_DEFAULT_BYTES = 1024 * 1024
FOLLOW_POLL_FIRST_SECONDS = 0.05
FOLLOW_POLL_MAX_SECONDS = 1.0
FOLLOW_POLL_IDLE_FRACTION = 1 / 8


def _poll_delay(idle_since: float) -> float:
    idle = time.monotonic() - idle_since
    return min(
        FOLLOW_POLL_MAX_SECONDS, max(FOLLOW_POLL_FIRST_SECONDS, idle * FOLLOW_POLL_IDLE_FRACTION)
    )


def size(path: Path) -> int:
    """The log's length in bytes (0 before the job has written anything)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def read_window(path: Path, offset: int, limit: int) -> bytes:
    """At most ``limit`` bytes of the log from byte ``offset`` on (fewer at its end)."""
    if offset < 0 or limit < 0:
        raise ValueError(f"a log window needs offset >= 0 and limit >= 0, not {offset}, {limit}")
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(limit)
    except FileNotFoundError:
        return b""


def iter_chunks(
    path: Path, offset: int = 0, end: int | None = None, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """The log from ``offset`` to ``end`` (default: its end when each chunk is read), in chunks
    of at most ``chunk_bytes``."""
    while end is None or offset < end:
        wanted = chunk_bytes if end is None else min(chunk_bytes, end - offset)
        chunk = read_window(path, offset, wanted)
        if not chunk:
            return
        offset += len(chunk)
        yield chunk


def decoded(chunks: Iterator[bytes]) -> Iterator[str]:
    """The chunks as text: a character split between two chunks is decoded whole."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield text
    if tail := decoder.decode(b"", final=True):
        yield tail


def text_window(path: Path, offset: int, limit: int) -> tuple[str, int, int]:
    """A window of the log as text, for paging by byte offset: ``(text, start, next_offset)``.

    A negative ``offset`` counts from the end (``-65536``: the last 64 KiB). The window never
    ends inside a character (``next_offset`` is where the next window starts cleanly), and one
    counted from the end starts at a character's first byte.
    """
    if not 0 < limit <= WINDOW_LIMIT_MAX_BYTES:
        raise RunenvError(
            f"a log window's limit must be between 1 and {WINDOW_LIMIT_MAX_BYTES}, not {limit}",
            hint="page through a longer log by its next_offset",
        )
    start = resolved_offset(path, offset)
    data = read_window(path, start, limit)
    if len(data) == limit:
        data = data[: len(data) - _incomplete_suffix(data)] or data
    return data.decode(errors="replace"), start, start + len(data)


def resolved_offset(path: Path, offset: int) -> int:
    """A byte offset where reading starts cleanly: a negative one counts from the end and
    moves forward to the first byte of a character."""
    if offset >= 0:
        return offset
    start = max(0, size(path) + offset)
    return start + _continuation_prefix(read_window(path, start, 3))


def _continuation_prefix(data: bytes) -> int:
    """How many bytes at the start continue a character begun before (at most 3)."""
    count = 0
    while count < min(3, len(data)) and data[count] & 0xC0 == 0x80:
        count += 1
    return count


def _incomplete_suffix(data: bytes) -> int:
    """How many bytes at the end begin a character that the data does not finish."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead
        needed = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4
        return back if byte >= 0xC0 and needed > back else 0
    return 0


async def follow(
    path: Path, has_ended: Callable[[], Awaitable[bool]], offset: int = 0
) -> AsyncIterator[bytes]:
    """The log's bytes from ``offset`` on, as they are written, until ``has_ended()`` is true
    and everything written before has been yielded.

    ``has_ended`` is asked only when the log has not grown (e.g. whether the job's status is
    terminal). Each step is short, so a consumer that goes away holds nothing; idle, the poll
    backs off to once a second (see the module's doc).
    """
    idle_since = time.monotonic()
    while True:
        if size(path) > offset:
            chunk = await asyncio.to_thread(read_window, path, offset, CHUNK_BYTES)
            offset += len(chunk)
            idle_since = time.monotonic()
            if chunk:
                yield chunk
        elif await has_ended():
            # What was written between the size check and the end is read now.
            while chunk := await asyncio.to_thread(read_window, path, offset, CHUNK_BYTES):
                offset += len(chunk)
                yield chunk
            return
        else:
            await asyncio.sleep(_poll_delay(idle_since))


def follow_blocking(path: Path, has_ended: Callable[[], bool], offset: int = 0) -> Iterator[bytes]:
    """:func:`follow` for a thread of its own (the local CLI): the same polling, blocking."""
    idle_since = time.monotonic()
    while True:
        if size(path) > offset:
            chunk = read_window(path, offset, CHUNK_BYTES)
            offset += len(chunk)
            idle_since = time.monotonic()
            if chunk:
                yield chunk
        elif has_ended():
            yield from iter_chunks(path, offset)
            return
        else:
            time.sleep(_poll_delay(idle_since))
