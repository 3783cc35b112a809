"""Packaging benchmark: runenv against `zip -r` and Ray's own packaging, in one run.

Generates a tree of ~2,000 small source files plus a few large binaries (80 MiB by default),
then times, each the median of --repeat runs:
  - runenv: package + upload to a local store, cold (fresh hash cache and store), entries
    stored as for every store on this machine, and deflated as for s3:// and gs:// stores;
  - runenv: re-package the unchanged tree (warm hash cache, archive already in the store);
  - `zip -r -q` of the same tree;
  - Ray: hash + zip, as `ray.init(runtime_env={"working_dir": ...})` does (when ray is installed).

    .venv/bin/python bench/code_packaging.py [--size-mb 80] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Keep bench/ off the path: a script there must never shadow a library Ray or runenv imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

SOURCE_FILES = 2_000
LARGE_FILES = 4
WORDS = [
    "def",
    "class",
    "return",
    "import",
    "from",
    "self",
    "value",
    "result",
    "data",
    "model",
    "train",
    "step",
    "loss",
]


def generate_tree(root: Path, size_mb: int, seed: int = 7) -> int:
    """~2,000 Python-like text files in nested packages, one CSV, and random binaries."""
    rng = random.Random(seed)
    total = 0
    for index in range(SOURCE_FILES):
        path = root / f"pkg{index % 20}" / f"sub{index % 7}" / f"module_{index}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            f"{rng.choice(WORDS)} {rng.choice(WORDS)}_{rng.randrange(1000)} = {rng.random()}"
            for _ in range(rng.randrange(50, 250))
        ]
        text = "\n".join(lines) + "\n"
        path.write_text(text)
        total += len(text)
    csv = root / "data.csv"
    rows = [f"{i},{rng.random():.6f},{rng.choice(WORDS)}\n" for i in range(200_000)]
    csv.write_text("".join(rows))
    total += csv.stat().st_size
    remaining = size_mb * 1024 * 1024 - total
    for index in range(LARGE_FILES):
        blob = root / "weights" / f"shard{index}.bin"
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(os.urandom(max(remaining // LARGE_FILES, 0)))
    age(root)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def age(root: Path) -> None:
    """Make the files an hour old, as in a real source tree (see docs/benchmarks.md)."""
    old = time.time() - 3600
    for path in root.rglob("*"):
        os.utime(path, (old, old))


def timed(action: Callable[[], object], prepare: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        prepare()
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def runenv_first(tree: Path, work: Path, compress: bool | None = None) -> Callable[[], object]:
    from runenv.packaging import package_directory
    from runenv.storage import Store

    def run() -> object:
        return package_directory(tree, Store(str(work / "store")), compress=compress)

    return run


def fresh_runenv_state(work: Path) -> Callable[[], None]:
    def reset() -> None:
        for name in ("store", "home"):
            shutil.rmtree(work / name, ignore_errors=True)

    return reset


def archive_size(work: Path) -> str:
    archive = next((work / "store" / "pkgs").glob("*.zip"))
    return f"{archive.stat().st_size / 2**20:.1f} MiB"


def zip_r(tree: Path, work: Path) -> Callable[[], object]:
    def run() -> object:
        target = work / "tree.zip"
        target.unlink(missing_ok=True)
        return subprocess.run(["zip", "-r", "-q", str(target), "."], cwd=tree, check=True)

    return run


def ray_hash_and_zip(tree: Path, work: Path) -> Callable[[], object] | None:
    try:
        from ray._private.runtime_env import packaging as ray_packaging
    except ImportError:
        return None

    def run() -> object:
        ray_packaging.get_uri_for_directory(str(tree), include_gitignore=True, excludes=[])
        target = work / "ray.zip"
        target.unlink(missing_ok=True)
        ray_packaging.create_package(str(tree), target, include_gitignore=True, excludes=[])
        return target

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runenv-bench-") as scratch:
        work = Path(scratch)
        os.environ["RUNENV_HOME"] = str(work / "home")
        tree = work / "tree"
        size = generate_tree(tree, args.size_mb)
        print(
            f"tree: {SOURCE_FILES + LARGE_FILES + 1} files, {size / 2**20:.1f} MiB; "
            f"median of {args.repeat} runs; {os.cpu_count()} cores; Python {sys.version.split()[0]}"
        )
        reset = fresh_runenv_state(work)
        deflated = timed(runenv_first(tree, work, compress=True), reset, args.repeat)
        deflated_size = archive_size(work)
        first = timed(runenv_first(tree, work), reset, args.repeat)
        runenv_first(tree, work)()  # warm: hash cache filled, archive in the store
        again = timed(runenv_first(tree, work), lambda: None, args.repeat)
        zip_time = timed(zip_r(tree, work), lambda: None, args.repeat)
        ray = ray_hash_and_zip(tree, work)
        ray_time = timed(ray, lambda: None, args.repeat) if ray else None
        rows = [
            ("runenv package, local store (cold)", first, f"archive {archive_size(work)}"),
            (
                "runenv package, deflated (cold)",
                deflated,
                f"archive {deflated_size}; as for s3:// and gs://",
            ),
            ("runenv re-package, unchanged", again, f"{first / again:.1f}x faster than cold"),
            ("zip -r -q", zip_time, f"runenv cold is {zip_time / first:.2f}x its speed"),
        ]
        if ray_time is not None:
            rows.append(
                ("Ray hash + zip", ray_time, f"runenv cold is {ray_time / first:.2f}x faster")
            )
        else:
            rows.append(("Ray hash + zip", float("nan"), "ray not installed"))
        print(f"| {'what':<34} | {'seconds':>8} | notes |")
        print(f"|{'-' * 36}|{'-' * 10}|-------|")
        for name, seconds, note in rows:
            print(f"| {name:<34} | {seconds:8.3f} | {note} |")


if __name__ == "__main__":
    main()
