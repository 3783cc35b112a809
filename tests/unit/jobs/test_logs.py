"""Job logs in bounded pieces: windows by byte offset, chunks, text decoding, following."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from runenv.errors import RunenvError
from runenv.jobs import logs

TEXT = "line é€𝄞\n" * 1000  # characters of 1 to 4 bytes


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "job.log"
    path.write_bytes(TEXT.encode())
    return path


def test_a_window_is_the_bytes_asked_for(log: Path) -> None:
    data = TEXT.encode()
    assert logs.read_window(log, 5, 7) == data[5:12]
    assert logs.read_window(log, len(data) - 3, 100) == data[-3:]
    assert logs.read_window(log, len(data) + 10, 100) == b""
    assert logs.read_window(log.with_name("missing"), 0, 10) == b""


def test_text_windows_page_through_the_log_exactly(log: Path) -> None:
    data, pieces, offset = TEXT.encode(), [], 0
    while offset < len(data):
        text, start, offset = logs.text_window(log, offset, 1000)
        assert start <= offset <= start + 1000
        pieces.append(text)
    assert "".join(pieces) == TEXT  # no character split, none lost, none repeated


def test_a_window_from_the_end_starts_at_a_character(log: Path) -> None:
    data = TEXT.encode()
    for back in range(1, 20):
        text, start, next_offset = logs.text_window(log, -back, 100)
        assert next_offset == len(data) and data[start:].decode() == text
        assert "\ufffd" not in text and len(data) - start <= back


def test_a_window_limit_is_bounded(log: Path) -> None:
    with pytest.raises(RunenvError, match="limit"):
        logs.text_window(log, 0, logs.WINDOW_LIMIT_MAX_BYTES + 1)


def test_chunks_decode_characters_split_between_them(log: Path) -> None:
    chunks = list(logs.iter_chunks(log, chunk_bytes=7))
    assert max(map(len, chunks)) == 7 and b"".join(chunks) == TEXT.encode()
    assert "".join(logs.decoded(iter(chunks))) == TEXT


def test_chunks_stop_at_the_end_asked_for(log: Path) -> None:
    assert b"".join(logs.iter_chunks(log, 3, end=50, chunk_bytes=8)) == TEXT.encode()[3:50]


def test_follow_yields_what_is_written_until_the_end(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    ended = asyncio.Event()

    async def has_ended() -> bool:
        return ended.is_set()

    async def write_then_end() -> None:
        for index in range(3):
            with open(path, "ab") as handle:
                handle.write(f"part {index}\n".encode())
            await asyncio.sleep(0.1)
        with open(path, "ab") as handle:
            handle.write(b"last words\n")  # written just before the end: must not be lost
        ended.set()

    async def collect() -> bytes:
        writer = asyncio.create_task(write_then_end())
        received = b"".join([chunk async for chunk in logs.follow(path, has_ended)])
        await writer
        return received

    assert asyncio.run(collect()) == b"part 0\npart 1\npart 2\nlast words\n"


def test_an_idle_follow_backs_off(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    asked: list[float] = []

    async def has_ended() -> bool:
        asked.append(time.monotonic())
        return asked[-1] - asked[0] > 4.0

    async def drain() -> None:
        async for _ in logs.follow(path, has_ended):
            pass

    asyncio.run(drain())
    gaps = [later - earlier for earlier, later in itertools.pairwise(asked)]
    # 50 ms at first, then an eighth of the time idle: ~30 checks in 4 s, not 80.
    assert gaps[0] < 0.2 and max(gaps) >= 0.4 and len(asked) <= 40, gaps


def test_a_long_idle_follow_polls_once_a_second() -> None:
    idle_since = time.monotonic() - 3600
    assert logs._poll_delay(idle_since) == logs.FOLLOW_POLL_MAX_SECONDS
    assert logs._poll_delay(time.monotonic()) == logs.FOLLOW_POLL_FIRST_SECONDS


def test_follow_blocking_starts_at_an_offset(log: Path) -> None:
    data = b"".join(logs.follow_blocking(log, lambda: True, offset=10))
    assert data == TEXT.encode()[10:]
