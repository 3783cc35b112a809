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
    clone) against the same env built with hard links into uv's cache (before issue 11);
  - the per-run copy of a working_dir (``--files`` files, 16 KiB each): the copy alone, and a
    warm ``runenv run --working-dir`` against a warm run without one.
As root, read-only entries are sealed where the kernel allows it, and then checked by
directory; the check of every path (root where sealing is refused) is measured too.
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
from runenv.cache import ResourceCache, remove_tree
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
    parser.add_argument("--files", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runenv-bench-integrity-") as scratch:
        try:
            measure(args, Path(scratch))
        finally:  # runenv's entries are sealed when run as root: rm -rf cannot remove them
            remove_tree(Path(scratch))


def measure(args: argparse.Namespace, work: Path) -> None:
    uv_cache, copied, linked = work / "uv-cache", work / "copied", work / "linked"
    cold = build(args.package, copied, uv_cache, None)
    build(args.package, linked, uv_cache, "hardlink")
    os.environ.update(RUNENV_HOME=str(copied), UV_CACHE_DIR=str(uv_cache))
    cache = ResourceCache()
    entries = cache.entries()
    files = sum(1 for entry in entries for _ in entry.path.rglob("*"))
    stat_check = median_seconds(lambda: [cache.verify(e) for e in entries], args.repeat)
    sealed = all("sealed" in Path(f"{e.path}.manifest").read_text()[:80] for e in entries)
    small = integrity._SMALL
    integrity._SMALL = 10**9  # every path statted: root where sealing is refused
    every_path = median_seconds(lambda: [cache.verify(e) for e in entries], args.repeat)
    integrity._SMALL = small
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
    print(f"| entries sealed (root, immutable) | {'yes' if sealed else 'no'} |")
    print(f"| stat check of every path (root, unsealed) | {every_path * 1e3:.1f} ms |")
    copy_rows(work, uv_cache, args.files, args.repeat)
    for name, size in venv_bytes.items():
        print(f"| disk, env entries built with {name} | {size / 2**20:.1f} MiB |")
    print(f"| disk, uv's cache (shared by both) | {all_bytes(uv_cache) / 2**20:.1f} MiB |")


def copy_rows(work: Path, uv_cache: Path, files: int, repeat: int) -> None:
    """The per-run copy of a working_dir: alone, and in a warm run against one without it."""
    from runenv import runs

    project = work / "project"
    for index in range(files):
        (project / f"pkg{index % 10}").mkdir(parents=True, exist_ok=True)
        (project / f"pkg{index % 10}" / f"m{index}.py").write_bytes(b"#" * 16384)
    home = work / "copies-home"
    environ = {**os.environ, "RUNENV_HOME": str(home), "UV_CACHE_DIR": str(uv_cache)}
    with_dir = [*RUNENV, "run", "-q", "--working-dir", str(project), "--", "true"]
    without = [*RUNENV, "run", "-q", "--", "true"]
    timed = {}
    for name, command in (("with", with_dir), ("without", without)):
        subprocess.run(command, env=environ, check=True, cwd=work)  # records the recipe
        run = lambda command=command: subprocess.run(command, env=environ, check=True, cwd=work)  # noqa: E731
        timed[name] = median_seconds(run, repeat)
    (entry,) = (home / "runtime_resources" / "working_dir-v1").glob("*/code")
    scratch = work / "copies"

    def copy_and_sweep() -> None:
        _, fd = runs.fresh_copy(str(entry), str(scratch))
        os.close(fd)

    copy = median_seconds(copy_and_sweep, repeat)
    target = work / "cp-copy"

    def cp_and_rm() -> None:  # the baseline: what a user copying the tree would wait for
        subprocess.run(["cp", "-r", str(entry), str(target)], check=True)
        subprocess.run(["rm", "-rf", str(target)], check=True)

    baseline = median_seconds(cp_and_rm, repeat)
    size = files * 16384 / 2**20
    print(f"| per-run copy of a {files}-file, {size:.1f} MiB working_dir (+ sweep) "
          f"| {copy * 1e3:.1f} ms |")  # fmt: skip
    print(f"| the same tree with `cp -r` + `rm -rf` (baseline) | {baseline * 1e3:.1f} ms |")
    print(f"| warm `runenv run --working-dir` / without a working_dir "
          f"| {timed['with'] * 1e3:.0f} / {timed['without'] * 1e3:.0f} ms |")  # fmt: skip


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
