"""ResourceCache: build once, atomic publish, remembered failures, leases and GC."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runenv.cache import ResourceCache, disk_bytes
from runenv.deadline import Deadline
from runenv.errors import EnvSetupError, SetupTimeoutError

NO_LIMIT = Deadline(None)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ResourceCache:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RUNENV_CACHE_MAX_GB", raising=False)
    monkeypatch.delenv("RUNENV_FAILURE_TTL_SECONDS", raising=False)
    return ResourceCache(tmp_path / "cache")


def writer(content: str, calls: list[Path] | None = None):  # type: ignore[no-untyped-def]
    def build(directory: Path) -> dict[str, str]:
        if calls is not None:
            calls.append(directory)
        (directory / "data.txt").write_text(content)
        return {"content": content}

    return build


def test_builds_once_and_publishes_by_rename(cache: ResourceCache) -> None:
    calls: list[Path] = []
    first = cache.acquire("demo", "k1", writer("one", calls), NO_LIMIT)
    second = cache.acquire("demo", "k1", writer("two", calls), NO_LIMIT)
    assert first.built and not second.built
    assert len(calls) == 1
    assert calls[0].name.startswith(".build-k1-")  # built beside the entry, then renamed
    assert first.path == cache.entry_path("demo", "k1")
    assert (first.path / "data.txt").read_text() == "one"
    assert not calls[0].exists()


def test_failed_build_leaves_nothing_and_is_remembered(
    cache: ResourceCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []

    def failing(directory: Path) -> None:
        calls.append(directory)
        (directory / "half.txt").write_text("half")
        raise EnvSetupError("install failed", hint="fix it", step="install")

    for _ in range(3):
        with pytest.raises(EnvSetupError, match="install failed"):
            cache.acquire("demo", "bad", failing, NO_LIMIT)
    assert len(calls) == 1  # the second and third attempts got the remembered failure
    assert not cache.entry_path("demo", "bad").exists()
    assert list(cache.entry_path("demo", "bad").parent.glob(".build-*")) == []
    monkeypatch.setenv("RUNENV_FAILURE_TTL_SECONDS", "0")
    with pytest.raises(EnvSetupError):
        cache.acquire("demo", "bad", failing, NO_LIMIT)
    assert len(calls) == 2  # forgotten after the TTL: retried


def test_remembered_failure_says_so(cache: ResourceCache) -> None:
    def failing(directory: Path) -> None:
        raise EnvSetupError("boom", step="install", log_path="/tmp/log")

    with pytest.raises(EnvSetupError):
        cache.acquire("demo", "bad", failing, NO_LIMIT)
    with pytest.raises(EnvSetupError) as caught:
        cache.acquire("demo", "bad", failing, NO_LIMIT)
    assert "is remembered for 30 s" in caught.value.message
    assert caught.value.log_path == "/tmp/log"


def test_timeouts_are_not_remembered(cache: ResourceCache) -> None:
    calls: list[Path] = []

    def slow(directory: Path) -> None:
        calls.append(directory)
        raise SetupTimeoutError("timed out", step="install")

    for _ in range(2):
        with pytest.raises(SetupTimeoutError):
            cache.acquire("demo", "slow", slow, NO_LIMIT)
    assert len(calls) == 2


def test_success_clears_a_remembered_failure(
    cache: ResourceCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(directory: Path) -> None:
        raise EnvSetupError("boom")

    with pytest.raises(EnvSetupError):
        cache.acquire("demo", "k", failing, NO_LIMIT)
    monkeypatch.setenv("RUNENV_FAILURE_TTL_SECONDS", "0")
    cache.acquire("demo", "k", writer("ok"), NO_LIMIT)
    assert not (cache.entry_path("demo", "k").parent / "k.failed").exists()


def test_leftover_build_of_a_killed_process_is_removed(cache: ResourceCache) -> None:
    bucket = cache.entry_path("demo", "k").parent
    bucket.mkdir(parents=True)
    (bucket / ".build-k-deadbeef").mkdir()
    (bucket / ".build-k-deadbeef" / "partial").write_text("x")
    cache.acquire("demo", "k", writer("ok"), NO_LIMIT)
    assert sorted(p.name for p in bucket.iterdir() if p.name.startswith(".")) == []


def test_entries_report_size_use_and_description(cache: ResourceCache) -> None:
    entry = cache.acquire("demo", "k", writer("x" * 10_000), NO_LIMIT)
    [info] = cache.entries()
    assert (info.kind, info.key, info.in_use) == ("demo", "k", True)
    assert info.size >= 10_000
    assert info.description == {"content": "x" * 10_000}
    entry.lease.release()
    assert not cache.entries()[0].in_use


def test_gc_removes_least_recently_used_first_and_never_in_use(cache: ResourceCache) -> None:
    for index, key in enumerate(["old", "middle", "new"]):
        entry = cache.acquire("demo", key, writer("x" * 8192), NO_LIMIT)
        entry.lease.release()
        lease_file = entry.path.parent / f"{key}.lease"
        os.utime(lease_file, (1000 + index, 1000 + index))
    held = cache.acquire("demo", "old", writer("unused"), NO_LIMIT)  # in use again, now newest
    os.utime(held.path.parent / "old.lease", (999, 999))  # ...but the oldest by time
    one_entry = cache.entries()[0].size
    report = cache.gc(max_bytes=one_entry)
    assert [entry.key for entry in report.removed] == ["middle", "new"]
    assert [entry.key for entry in report.kept_in_use] == ["old"]
    assert report.bytes_freed == 2 * one_entry
    assert [entry.key for entry in cache.entries()] == ["old"]
    assert (held.path / "data.txt").read_text() == "x" * 8192


def test_gc_skips_entries_leased_by_another_process(cache: ResourceCache, tmp_path: Path) -> None:
    entry = cache.acquire("demo", "k", writer("x"), NO_LIMIT)
    entry.lease.release()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LEASE, str(cache.root), "demo", "k"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "leased"
        assert cache.gc(0).removed == []
        assert cache.entry_path("demo", "k").exists()
    finally:
        holder.kill()
        holder.wait()
    assert [entry.key for entry in cache.gc(0).removed] == ["k"]  # the lease died with it


HOLD_LEASE = """
import sys, time
from pathlib import Path
from runenv.cache import ResourceCache
from runenv.deadline import Deadline
entry = ResourceCache(Path(sys.argv[1])).acquire(sys.argv[2], sys.argv[3], None, Deadline(None))
print("leased", flush=True)
time.sleep(60)
"""


def test_automatic_gc_over_the_cap(cache: ResourceCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNENV_CACHE_MAX_GB", str(20_000 / 1024**3))
    first = cache.acquire("demo", "a", writer("a" * 16_000), NO_LIMIT)
    first.lease.release()
    second = cache.acquire("demo", "b", writer("b" * 16_000), NO_LIMIT)
    assert [entry.key for entry in cache.entries()] == ["b"]
    assert second.path.exists()


def test_disk_bytes_leaves_out_hard_links(tmp_path: Path) -> None:
    (tmp_path / "own").write_bytes(b"x" * 20_000)
    (tmp_path / "shared").write_bytes(b"y" * 20_000)
    os.link(tmp_path / "shared", tmp_path.parent / f"{tmp_path.name}-link")
    assert 20_000 <= disk_bytes(tmp_path) < 40_000


def test_gc_closes_what_it_opens(cache: ResourceCache) -> None:
    held = cache.acquire("demo", "busy", writer("x"), NO_LIMIT)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        assert cache.gc(0).removed == []
    assert len(os.listdir("/proc/self/fd")) == before
    held.lease.release()


def test_an_entry_removed_by_another_collection_is_not_an_error(cache: ResourceCache) -> None:
    entry = cache.acquire("demo", "k", writer("x"), NO_LIMIT)
    entry.lease.release()
    [info] = cache.entries()
    assert cache.gc(0).removed == [info]
    assert cache._remove_if_unused(info)  # a second collector, working from the same listing
