"""runenv's API on Ray vs plain Ray, in ONE driver process, interleaved round by round.

    .venv/bin/python bench/ray_overhead.py [--tasks 2000] [--rounds 7]

bench/ray_backend.py compares two driver processes; this one runs both APIs in the same process
against the same workers, alternating, so that load from elsewhere and worker warm-up fall on
both alike. It prints each round and the median time ratio (runenv / ray) for tasks and for
actor calls. A 2-node cluster (1 CPU each) is started and killed by pid.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Keep bench/ off the path: a script there must never shadow a library Ray or runenv imports.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent / "tests"))

from raycluster import Node, RayCluster  # noqa: E402


def noop(x: int = 0) -> int:
    return x


class Echo:
    def call(self, x: int = 0) -> int:
        return x


def timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="runenv-ray-overhead-"))
    cluster = RayCluster(root, [Node("a", root / "a", head=True), Node("b", root / "b")]).start()
    os.environ.update(cluster.env)
    try:
        compare(cluster.address, args.tasks, args.rounds)
    finally:
        cluster.stop()


def compare(address: str, n: int, rounds: int) -> None:
    import ray

    import runenv

    runenv.init(address=address)
    ray_task, runenv_task = ray.remote(noop), runenv.remote(noop)
    ray_actor, runenv_actor = ray.remote(Echo).remote(), runenv.remote(Echo).remote()
    ray.get([ray_task.remote(i) for i in range(200)] + [ray_actor.call.remote()])
    runenv.get([runenv_task.remote(i) for i in range(200)] + [runenv_actor.call.remote()])
    ratios: dict[str, list[float]] = {"tasks": [], "actor calls": []}
    for index in range(rounds):
        pairs = {
            "tasks": (
                lambda: ray.get([ray_task.remote(i) for i in range(n)]),
                lambda: runenv.get([runenv_task.remote(i) for i in range(n)]),
            ),
            "actor calls": (
                lambda: ray.get([ray_actor.call.remote(i) for i in range(n)]),
                lambda: runenv.get([runenv_actor.call.remote(i) for i in range(n)]),
            ),
        }
        for what, (plain, ours) in pairs.items():
            first, second = (plain, ours) if index % 2 == 0 else (ours, plain)
            a, b = timed(first), timed(second)
            ray_s, runenv_s = (a, b) if index % 2 == 0 else (b, a)
            ratios[what].append(runenv_s / ray_s)
            print(f"round {index + 1} {what}: ray {n / ray_s:6.0f}/s  runenv {n / runenv_s:6.0f}/s")
    runenv.shutdown()
    for what, values in ratios.items():
        print(f"{what}: runenv/ray time, median of {rounds}: {statistics.median(values):.3f}")


if __name__ == "__main__":
    main()
