"""Engine benchmark: runenv's embedded engine against Ray's local mode, in one run.

Each side runs in its own fresh Python process (so memory and caches are its own):

    .venv/bin/python bench/engine.py [--tasks 1000] [--skip-ray]

Rows: init + first task; 1,000 trivial tasks submitted then gathered; 1,000 sequential
``get(f.remote())``; 1,000 actor calls batched and sequential; actor creation + first call;
a new worker in an already built pip env and in an env_vars-only env; resident memory at idle
after init (the driver and every process it started); the driver's own resident memory after
``--long-tasks`` (200,000) small tasks and a ``put`` per 20 tasks whose refs are dropped, and how
much it grew after the first 10% (a driver that runs for days must not grow).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
# Keep bench/ off the path: a script there must never shadow a library Ray or runenv imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE.parent]


def tree_rss_mib() -> float:
    import psutil

    me = psutil.Process()
    processes = [me, *me.children(recursive=True)]
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total / 2**20


def seconds(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def driver_rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def long_run(api: Any, noop: Any, tasks: int) -> dict[str, float]:
    """Tasks in batches of 1,000, refs dropped; the driver's RSS after 10% and at the end."""
    batches = max(1, tasks // 1000)
    warm = 0.0
    for batch in range(batches):
        refs = [noop.remote(i) for i in range(1000)]
        api.get(refs)
        del refs
        for _ in range(50):
            api.put(bytes(1000))
        if batch == batches // 10:
            warm = driver_rss_mib()
    end = driver_rss_mib()
    return {
        f"driver MiB after {tasks // 1000}k tasks": end,
        f"driver MiB growth after {tasks // 10000}k tasks": end - warm,
    }


def measure(api: Any, tasks: int, init: Callable[[], None], long_tasks: int) -> dict[str, float]:
    """The same measurements for either API (runenv or ray: same names, same semantics)."""

    @api.remote
    def noop(x: int = 0) -> int:
        return x

    @api.remote
    class Actor:
        def call(self, x: int = 0) -> int:
            return x

    results: dict[str, float] = {}
    start = time.perf_counter()
    init()
    api.get(noop.remote())
    results["init + first task"] = time.perf_counter() - start
    time.sleep(2)  # let background start-up settle before reading memory
    results["resident MiB at idle"] = tree_rss_mib()
    results["tasks/s batched"] = tasks / seconds(
        lambda: api.get([noop.remote(i) for i in range(tasks)])
    )
    results["tasks/s sequential"] = tasks / seconds(
        lambda: [api.get(noop.remote(i)) for i in range(tasks)]
    )
    actor = Actor.remote()
    api.get(actor.call.remote())
    results["actor calls/s batched"] = tasks / seconds(
        lambda: api.get([actor.call.remote(i) for i in range(tasks)])
    )
    results["actor calls/s sequential"] = tasks / seconds(
        lambda: [api.get(actor.call.remote(i)) for i in range(tasks)]
    )
    results["actor creation + first call"] = statistics.median(
        seconds(lambda: api.get(Actor.remote().call.remote())) for _ in range(5)
    )
    pip_env = {"pip": ["six"]}
    api.get(Actor.options(runtime_env=pip_env).remote().call.remote())  # builds the env
    results["new worker, built pip env"] = statistics.median(
        seconds(lambda: api.get(Actor.options(runtime_env=pip_env).remote().call.remote()))
        for _ in range(5)
    )
    results["new worker, env_vars env"] = statistics.median(
        seconds(
            lambda i=i: api.get(  # a new env each time, so a new worker each time
                Actor.options(runtime_env={"env_vars": {"N": str(i)}}).remote().call.remote()
            )
        )
        for i in range(5)
    )
    if long_tasks:
        results.update(long_run(api, noop, long_tasks))
    return results


def child(side: str, tasks: int, long_tasks: int) -> None:
    if side == "runenv":
        import runenv

        results = measure(runenv, tasks, lambda: runenv.init(num_cpus=2), long_tasks)
        runenv.shutdown()
    else:
        import ray

        def start() -> None:
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                _temp_dir=tempfile.mkdtemp(prefix="ray-bench-"),
            )

        results = measure(ray, tasks, start, long_tasks)
        ray.shutdown()
    print(json.dumps(results))


def run_side(side: str, tasks: int, long_tasks: int, home: str) -> dict[str, float]:
    env = {**os.environ, "RUNENV_HOME": home}
    options = ["--tasks", str(tasks), "--long-tasks", str(long_tasks)]
    done = subprocess.run(
        [sys.executable, str(HERE), "--child", side, *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--long-tasks", type=int, default=200_000, help="0: skip that row")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--child", choices=["runenv", "ray"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.tasks, args.long_tasks)
        return
    with tempfile.TemporaryDirectory(prefix="runenv-bench-") as home:
        ours = run_side("runenv", args.tasks, args.long_tasks, home)
        theirs: dict[str, float] = {}
        if not args.skip_ray:
            try:
                import ray  # noqa: F401

                theirs = run_side("ray", args.tasks, args.long_tasks, home)
            except ImportError as error:
                print(f"ray cannot be imported ({error}): runenv's numbers only")
    print(f"{os.cpu_count()} cores; Python {sys.version.split()[0]}; {args.tasks} tasks per row")
    print("| what | runenv | Ray | ratio |")
    print("|---|---:|---:|---|")
    for name, value in ours.items():
        other = theirs.get(name)
        print(
            f"| {name} | {value:.3f} | {'' if other is None else f'{other:.3f}'} | "
            f"{_ratio(name, value, other)} |"
        )


def _ratio(name: str, ours: float, theirs: float | None) -> str:
    if theirs is None or ours <= 0 or theirs <= 0 or "growth" in name:
        return ""  # a growth may be negative (noise): compare the numbers themselves
    higher_is_better = name.endswith("/s batched") or name.endswith("/s sequential")
    ratio = ours / theirs if higher_is_better else theirs / ours
    return f"runenv {ratio:.1f}x {'the throughput' if higher_is_better else 'better'}"


if __name__ == "__main__":
    main()
