"""Cache integrity benchmark: what checking entries before reuse costs, and what copies cost.

    .venv/bin/python bench/integrity.py [--package pandas] [--repeat 20]

For a built env of ``--package`` (pandas by default: numpy, pandas, dateutil, pytz, tzdata):
  - the stat check of its entries (what every reuse pays) and the full check (``runenv env
    verify --full``: every file re-hashed), each the median of ``--repeat`` runs;
  - a warm ``runenv run --pip PKG -- python -c pass`` (the CLI's fast path: it checks every
    entry), and the share of it the check takes;
  - a new process in the built env through the engine's path (``materialize()`` +
    ``start_process()`` + wait) with the check, and with the check switched off in this process
    (the baseline, measured in the same run);
  - disk: the venv entry built with copies (runenv's default where the filesystem cannot
    clone) against the same env built with hard links into uv's cache (before issue 11).
The first build downloads from PyPI into a temporary uv cache shared by both builds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from runenv import RuntimeEnv, integrity
from runenv.cache import ResourceCache
from runenv.context import start_process
from runenv.materialize import materialize, release

RUNENV = [sys.executable, "-m", "runenv"]


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def build(package: str, home: Path, uv_cache: Path, link_mode: str | None) -> float:
    environ = {**os.environ, "RUNENV_HOME": str(home), "UV_CACHE_DIR": str(uv_cache)}
    if link_mode:
        environ["RUNENV_LINK_MODE"] = link_mode
    start = time.perf_counter()
    command = [*RUNENV, "run", "-q", "--pip", package, "--", "python", "-c", f"import {package}"]
    subprocess.run(command, env=environ, check=True)
    return time.perf_counter() - start


def warm_cli(package: str, home: Path, uv_cache: Path, repeat: int) -> float:
    environ = {**os.environ, "RUNENV_HOME": str(home), "UV_CACHE_DIR": str(uv_cache)}
    command = [*RUNENV, "run", "-q", "--pip", package, "--", "python", "-c", "pass"]
    subprocess.run(command, env=environ, check=True)  # records the fast path's recipe
    return median_seconds(lambda: subprocess.run(command, env=environ, check=True), repeat)


def new_process(env: RuntimeEnv, repeat: int) -> float:
    def once() -> None:
        context = materialize(env)
        start_process(context, ["python", "-c", "pass"]).wait()
        release(context)

    return median_seconds(once, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="pandas")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runenv-bench-integrity-") as scratch:
        work = Path(scratch)
        uv_cache, copied, linked = work / "uv-cache", work / "copied", work / "linked"
        cold = build(args.package, copied, uv_cache, None)
        build(args.package, linked, uv_cache, "hardlink")
        os.environ.update(RUNENV_HOME=str(copied), UV_CACHE_DIR=str(uv_cache))
        cache = ResourceCache()
        entries = cache.entries()
        files = sum(1 for entry in entries for _ in entry.path.rglob("*"))
        stat_check = median_seconds(lambda: [cache.verify(e) for e in entries], args.repeat)
        real_euid = os.geteuid
        os.geteuid = lambda: 1000  # as a normal user sees it: read-only entries, by directory
        user_check = median_seconds(lambda: [cache.verify(e) for e in entries], args.repeat)
        os.geteuid = real_euid
        full_check = median_seconds(lambda: [cache.verify(e, full=True) for e in entries], 3)
        cli = warm_cli(args.package, copied, uv_cache, args.repeat)
        env = RuntimeEnv(pip=[args.package])
        checked = new_process(env, args.repeat)
        real_check = integrity.check
        integrity.check = lambda *_, **__: None
        unchecked = new_process(env, args.repeat)
        integrity.check = real_check
        venv_bytes = {
            name: sum(e.size for e in ResourceCache(home / "runtime_resources").entries())
            for name, home in (("copies", copied), ("hard links", linked))
        }
        print_rows(args.package, cold, files, stat_check, full_check, cli, checked, unchecked)
        print(f"| stat check as a user other than root (directories) | {user_check * 1e3:.1f} ms |")
        for name, size in venv_bytes.items():
            print(f"| disk, env entries built with {name} | {size / 2**20:.1f} MiB |")
        print(f"| disk, uv's cache (shared by both) | {all_bytes(uv_cache) / 2**20:.1f} MiB |")


def all_bytes(root: Path) -> int:
    """Bytes on disk under ``root``, each inode once (``du``)."""
    seen, total = set(), 0
    for path in root.rglob("*"):
        info = path.lstat()
        if info.st_ino not in seen:
            seen.add(info.st_ino)
            total += info.st_blocks * 512
    return total


def print_rows(
    package: str,
    cold: float,
    files: int,
    stat_check: float,
    full_check: float,
    cli: float,
    checked: float,
    unchecked: float,
) -> None:
    print(f"\n{package} env: {files} paths in its entries; first build {cold:.1f} s\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| stat check of its entries (every reuse) | {stat_check * 1000:.1f} ms |")
    print(f"| full check, every file re-hashed (`env verify --full`) | {full_check:.2f} s |")
    print(f"| warm `runenv run` (fast path, checks included) | {cli * 1000:.0f} ms |")
    print(f"| share of the warm run that is the check | {stat_check / cli:.0%} |")
    print(f"| new process in the env, engine path, checked | {checked * 1000:.0f} ms |")
    print(f"| the same with the check switched off | {unchecked * 1000:.0f} ms |")
    print(f"| cost of the check on a new process | {checked / unchecked - 1:+.0%} |")


if __name__ == "__main__":
    main()
