"""Ray backend benchmark: runenv on a real 2-node Ray cluster against Ray's own fields, one run.

    .venv/bin/python bench/ray_backend.py            # full run (3 repeats), ~15-25 min on 2 cores
    .venv/bin/python bench/ray_backend.py --quick    # smoke run: 1 repeat, 200 tasks

The script starts every cluster itself (tests/raycluster.py: one `ray start` per node, 1 CPU
each, its own --temp-dir, RUNENV_HOME and caches, runenv's plugin registered) and kills it by
pid at the end (never `ray stop`). Rows:
  1. Cold env with one small package (PACKAGE, below) on both nodes: from a new driver process's
     `init` until a task pinned to each node has returned from the env, for runenv
     (`runenv.init(address=..., runtime_env={"pip": [PACKAGE]})`, the plugin builds it on each
     node), Ray's `pip` field and Ray's `uv` field (`ray.init(address=...)` then
     `f.options(runtime_env={"pip" | "uv": [PACKAGE]})`). Cold: each (system, repeat) gets a
     cluster of its own with empty RUNENV_HOMEs and empty uv/pip caches (UV_CACHE_DIR,
     PIP_CACHE_DIR, XDG_CACHE_HOME per node, and per driver).
  2. The same after that cluster is restarted (same RUNENV_HOMEs, same caches, a new Ray session):
     runenv reuses each node's cache entry, Ray builds its env again in the new session dir.
  3. Throughput, no env: N tiny tasks submitted then gathered, and N actor calls, through
     runenv's API on Ray and through plain `ray`, on the same cluster, in alternating driver
     processes; medians.
  4. Disk footprint of the env on each node: runenv's cache entry (its files are hard links into
     the node's uv cache: counted alone and together with that cache) against Ray's env dir
     (`<session>/runtime_resources/pip|uv/<hash>`).
Every task reports its interpreter's prefix and the package's version, and a row only counts if
the task really ran in that system's env (the cluster's own Python has six 1.17.0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
# Keep bench/ off the path: a script there must never shadow a library Ray or runenv imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE.parent]
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from raycluster import Node, RayCluster  # noqa: E402

# Small (one 11 KiB pure-Python wheel, no dependencies) and not the version in the cluster's own
# Python (six 1.17.0, a Ray dependency): every system must download and install it, and a task
# that reports 1.16.0 ran in the built env, not in the base one.
PACKAGE = "six==1.16.0"
DISTRIBUTION, VERSION = PACKAGE.split("==")
SYSTEMS = ("runenv", "pip", "uv")  # runenv's plugin, Ray's `pip` field, Ray's `uv` field
DRIVER_TIMEOUT_S = 600.0
RESULT_MARK = "BENCH-RESULT "

GOAL_COLD = 5.0  # runenv at least 5x faster than Ray for a cold env
GOAL_RESTART = 20.0  # and 20x after a cluster restart
GOAL_OVERHEAD = 0.10  # runenv's API on Ray at most 10% slower than plain ray


# --- the cluster -------------------------------------------------------------------------------


class BenchNode(Node):
    """A test node whose package caches are its own (a machine of its own, cold when new)."""

    @property
    def uv_cache(self) -> Path:
        return self.root / "uv-cache"

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        return {**super().environment(base), **cache_variables(self.root)}


def cache_variables(root: Path) -> dict[str, str]:
    return {
        "UV_CACHE_DIR": str(root / "uv-cache"),
        "PIP_CACHE_DIR": str(root / "pip-cache"),
        "XDG_CACHE_HOME": str(root / "xdg-cache"),
    }


def new_cluster(root: Path) -> RayCluster:
    nodes: list[Node] = [
        BenchNode(name="head", root=root / "head", head=True),
        BenchNode(name="worker", root=root / "worker"),
    ]
    return RayCluster(root, nodes)


def start_healthy(cluster: RayCluster, restart: bool = False, attempts: int = 3) -> None:
    """Start (or restart) the cluster until every node's raylet is alive after it started.
    On a machine where other clusters start too, a port picked free can be taken before a
    node's agent binds it: that node's raylet exits at once, and a task pinned there waits."""
    for attempt in range(attempts):
        try:
            if restart or attempt:
                cluster.restart()
            else:
                cluster.start()
        except RuntimeError as error:  # e.g. `ray start` itself lost a port
            step(f"the cluster did not start ({str(error).splitlines()[0]}): starting again")
            continue
        dead = [node.name for node in cluster.nodes if not raylet_alive(cluster, node)]
        if not dead:
            return
        step(f"node(s) {', '.join(dead)} died at start (a port taken?): starting again")
    raise RuntimeError(f"the cluster did not come up healthy in {attempts} attempts")


def raylet_alive(cluster: RayCluster, node: Node) -> bool:
    for pid in cluster.processes(node):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"/raylet/raylet" in command:
            return True
    return False


def remove_cluster(cluster: RayCluster) -> None:
    """Kill the nodes by pid, then delete their dirs (Ray's envs are ~0.6 GiB each here)."""
    cluster.stop()
    for node in cluster.nodes:
        shutil.rmtree(node.temp_dir, ignore_errors=True)
    shutil.rmtree(cluster.root, ignore_errors=True)


# --- driver processes (each measurement in a new Python) -----------------------------------------


def driver_environment(cluster: RayCluster) -> dict[str, str]:
    driver = cluster.root / "driver"
    return {**cluster.env, "RUNENV_HOME": str(driver / "runenv-home"), **cache_variables(driver)}


def run_driver(cluster: RayCluster, config: dict[str, Any]) -> dict[str, Any]:
    config = {**config, "address": cluster.address}
    workdir = cluster.root / "driver"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [sys.executable, str(HERE), "--driver", json.dumps(config)],
            env=driver_environment(cluster),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=DRIVER_TIMEOUT_S + 60,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"the driver ran over {DRIVER_TIMEOUT_S + 60:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT_MARK))
            return result
    tail = "\n".join(done.stderr.splitlines()[-15:])
    return {"error": f"driver exit {done.returncode}: {tail}"}


def probe(distribution: str) -> dict[str, str | None]:
    """(A task.) Where it ran: its prefix, the package's version, the plugin's mark."""
    import importlib.metadata

    try:
        version: str | None = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"prefix": sys.prefix, "version": version, "active": os.environ.get("RUNENV_ACTIVE")}


def connect(system: str, address: str, runtime_env: dict[str, Any] | None) -> Any:
    """runenv's API on Ray, or plain ray, connected; the module is the API."""
    if system == "runenv":
        import runenv

        runenv.init(address=address, runtime_env=runtime_env)
        return runenv
    import logging

    import ray

    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    return ray


def cold_driver(config: dict[str, Any]) -> dict[str, Any]:
    """init, then one probe pinned to each node; when each node's result came back."""
    system, package = config["system"], config["package"]
    start = time.perf_counter()
    job_env = {"pip": [package]} if system == "runenv" else None
    api = connect(system, config["address"], job_env)
    init_s = time.perf_counter() - start
    task_env = None if system == "runenv" else {system: [package]}
    remote = api.remote(probe)
    pending = {}
    for resource in config["resources"]:
        options: dict[str, Any] = {"resources": {resource: 1}}
        if task_env is not None:
            options["runtime_env"] = task_env
        pending[resource] = remote.options(**options).remote(package.split("==")[0])
    submitted_s = time.perf_counter() - start
    nodes: dict[str, Any] = {}
    while pending:
        ready, _ = api.wait(list(pending.values()), num_returns=1, timeout=DRIVER_TIMEOUT_S)
        seconds = time.perf_counter() - start
        if not ready:
            raise TimeoutError(f"no result from {sorted(pending)} in {DRIVER_TIMEOUT_S:.0f} s")
        for resource, ref in list(pending.items()):
            if ref in ready:
                nodes[resource] = {**api.get(ref), "seconds": seconds}
                del pending[resource]
    api.shutdown()
    return {"init": init_s, "submitted": submitted_s, "nodes": nodes}


def throughput_driver(config: dict[str, Any]) -> dict[str, Any]:
    api = connect(config["system"], config["address"], None)
    tasks = int(config["tasks"])

    def noop(x: int = 0) -> int:
        return x

    class Echo:
        def call(self, x: int = 0) -> int:
            return x

    task, actor_class = api.remote(noop), api.remote(Echo)
    api.get([task.remote(i) for i in range(50)])  # workers started on both nodes
    actor = actor_class.remote()
    api.get(actor.call.remote())
    tasks_s = timed(lambda: api.get([task.remote(i) for i in range(tasks)]))
    calls_s = timed(lambda: api.get([actor.call.remote(i) for i in range(tasks)]))
    api.shutdown()
    return {"tasks/s": tasks / tasks_s, "calls/s": tasks / calls_s}


def timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def driver_main(config: dict[str, Any]) -> None:
    try:
        kind = config["kind"]
        result = cold_driver(config) if kind == "cold" else throughput_driver(config)
    except Exception as error:  # reported as the row's failure, not a traceback
        result = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:300]}
    print(RESULT_MARK + json.dumps(result), flush=True)


# --- measurements -------------------------------------------------------------------------------


@dataclass
class Cold:
    """One env's first tasks: the time both nodes' results were back, and what they reported."""

    seconds: float  # NaN when it failed or did not run in the system's env
    per_node: dict[str, float] = field(default_factory=dict)
    init: float = float("nan")
    submitted: float = float("nan")  # init and the .remote() calls returned
    agent: dict[str, dict[str, float]] = field(default_factory=dict)  # node -> env -> seconds
    prefixes: dict[str, str] = field(default_factory=dict)  # node resource -> sys.prefix
    problem: str = ""


def agent_creations(node: Node) -> dict[str, float]:
    """Seconds the node's env agent took to create each env (this session), from its log:
    'Creating runtime env: <env> with timeout' to 'Successfully created runtime env: <env>,'.
    Keyed 'probe' (runenv's check that the plugin acts on the node) or by the env's field."""
    log = node.temp_dir / "session_latest" / "logs" / "runtime_env_agent.log"
    begun: dict[str, datetime] = {}
    took: dict[str, float] = {}
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    for line in lines:
        stamp = log_time(line)
        creating = re.search(r"Creating runtime env: (.*) with timeout", line)
        created = re.search(r"Successfully created runtime env: (.*?), context:", line)
        if stamp and creating:
            begun.setdefault(creating[1], stamp)
        elif stamp and created and created[1] in begun:
            env = created[1]
            label = "probe" if "RUNENV_PROBE" in env else env_label(env)
            took[label] = took.get(label, 0.0) + (stamp - begun.pop(env)).total_seconds()
    return took


def env_label(env: str) -> str:
    for name in ("runenv", "pip", "uv"):
        if f'"{name}"' in env:
            return name
    return "other"


def log_time(line: str) -> datetime | None:
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    except ValueError:
        return None


def measure_cold(cluster: RayCluster, system: str) -> Cold:
    resources = [node.resource for node in cluster.nodes]
    config = {"kind": "cold", "system": system, "package": PACKAGE, "resources": resources}
    os.sync()  # the previous measurement's writes are not flushed during this one
    result = run_driver(cluster, config)
    if "error" in result:
        return Cold(float("nan"), problem=result["error"])
    nodes = result["nodes"]
    cold = Cold(
        max(node["seconds"] for node in nodes.values()),
        {resource: node["seconds"] for resource, node in nodes.items()},
        result["init"],
        result["submitted"],
        {node.name: agent_creations(node) for node in cluster.nodes},
        {resource: node["prefix"] for resource, node in nodes.items()},
    )
    for node in cluster.nodes:
        wrong = wrong_env(system, node, nodes[node.resource])
        if wrong:
            cold.problem = "; ".join(filter(None, [cold.problem, f"{node.name}: {wrong}"]))
            cold.seconds = float("nan")
    return cold


def wrong_env(system: str, node: Node, reported: dict[str, Any]) -> str:
    """Why the task did not run in the env ``system`` should have built on ``node`` ('' if it
    did): the pinned version, from the system's own directory."""
    prefix = str(reported["prefix"])
    if reported["version"] != VERSION:
        return f"{DISTRIBUTION} {reported['version']} in {prefix}"
    if system == "runenv":
        inside = prefix.startswith(str(node.runenv_home)) and bool(reported["active"])
        return "" if inside else f"not runenv's env (prefix {prefix}): is the plugin real?"
    return "" if f"runtime_resources/{system}/" in prefix else f"not Ray's {system} env: {prefix}"


@dataclass
class Footprint:
    """Bytes of one env on one node (`du -sb`: apparent size, a hard-linked file once)."""

    env: int  # runenv: the cache entry; Ray: runtime_resources/<tool>/<hash>
    with_uv_cache: int = 0  # runenv: the entry and the node's uv cache together
    uv_cache: int = 0
    everything: int = 0  # runenv: the node's whole RUNENV_HOME (locks, overlay) and uv cache


def du_bytes(*paths: Path) -> int:
    output = subprocess.run(
        ["du", "-sbc", *map(str, paths)], capture_output=True, text=True, check=True
    )
    return int(output.stdout.splitlines()[-1].split()[0])


def footprints(system: str, cluster: RayCluster, cold: Cold) -> dict[str, Footprint]:
    found = {}
    for node in cluster.nodes:
        prefix = cold.prefixes.get(node.resource)
        if prefix is None or cold.seconds != cold.seconds:
            continue
        if system == "runenv":
            assert isinstance(node, BenchNode)
            entry = runenv_entry(node.runenv_home, Path(prefix))
            found[node.name] = Footprint(
                du_bytes(entry),
                du_bytes(entry, node.uv_cache),
                du_bytes(node.uv_cache),
                du_bytes(node.runenv_home, node.uv_cache),
            )
        else:  # <session>/runtime_resources/<tool>/<hash>/virtualenv
            found[node.name] = Footprint(du_bytes(Path(prefix).parent))
    return found


def runenv_entry(home: Path, prefix: Path) -> Path:
    """The cache entry under ``home`` that holds the venv at ``prefix``."""
    entries = home / "runtime_resources"
    for parent in prefix.parents:
        if parent.parent.parent == entries:  # runtime_resources/<kind>-v1/<key>
            return parent
    return prefix


def measure_throughput(cluster: RayCluster, tasks: int, rounds: int) -> dict[str, list[Any]]:
    """Alternating runenv and ray drivers (who goes first alternates too), so that load from
    elsewhere falls on both alike."""
    samples: dict[str, list[Any]] = {"runenv": [], "ray": []}
    for index in range(rounds):
        order = ("runenv", "ray") if index % 2 == 0 else ("ray", "runenv")
        for system in order:
            step(f"throughput round {index + 1}/{rounds}: {system}")
            result = run_driver(cluster, {"kind": "throughput", "system": system, "tasks": tasks})
            samples[system].append(result)
    return samples


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Results:
    cold: dict[str, list[Cold]] = field(default_factory=dict)
    restarted: dict[str, list[Cold]] = field(default_factory=dict)
    disk: dict[str, dict[str, Footprint]] = field(default_factory=dict)
    throughput: dict[str, list[Any]] = field(default_factory=dict)


def run(args: argparse.Namespace, scratch: Path, results: Results) -> None:
    systems = [s for s in SYSTEMS if s in args.systems.split(",")]
    for repeat in range(args.repeat):
        rotated = systems[repeat % len(systems) :] + systems[: repeat % len(systems)]
        for position, system in enumerate(rotated):
            last = repeat == args.repeat - 1 and position == len(rotated) - 1
            cluster = new_cluster(scratch / f"{system}-{repeat}")
            try:
                step(f"repeat {repeat + 1}/{args.repeat}, {system}: starting a new cluster")
                start_healthy(cluster)
                step(f"{system}: cold env")
                cold = measure_cold(cluster, system)
                results.cold.setdefault(system, []).append(cold)
                if system not in results.disk or not results.disk[system]:
                    results.disk[system] = footprints(system, cluster, cold)
                step(f"{system}: restarting the cluster")
                start_healthy(cluster, restart=True)
                results.restarted.setdefault(system, []).append(measure_cold(cluster, system))
                if last and args.tasks:
                    results.throughput = measure_throughput(cluster, args.tasks, args.rounds)
            finally:
                remove_cluster(cluster)


# --- the report ---------------------------------------------------------------------------------

Row = tuple[str, str, str, str, str, str]  # measure, runenv, Ray, ratio, goal, met?


def median(samples: Sequence[float]) -> float:
    valid = [sample for sample in samples if sample == sample]
    return statistics.median(valid) if valid else float("nan")


def seconds_text(samples: Sequence[Cold]) -> str:
    value = median([cold.seconds for cold in samples])
    return "failed" if value != value else f"{value:.2f}"


def verdict(ratio: float, goal: float, higher_is_better: bool = True) -> str:
    if ratio != ratio:
        return "n/a"
    return "met" if (ratio >= goal if higher_is_better else ratio <= goal) else "**not met**"


def speed_rows(results: Results) -> list[Row]:
    rows: list[Row] = []
    for name, measured, goal in (
        ("cold env, both nodes (s)", results.cold, GOAL_COLD),
        ("after a cluster restart, both nodes (s)", results.restarted, GOAL_RESTART),
    ):
        ours = median([cold.seconds for cold in measured.get("runenv", [])])
        for tool in ("pip", "uv"):
            if tool not in measured:
                continue
            theirs = median([cold.seconds for cold in measured[tool]])
            ratio = theirs / ours if ours > 0 else float("nan")
            rows.append(
                (
                    f"{name}, vs Ray `{tool}`",
                    seconds_text(measured.get("runenv", [])),
                    seconds_text(measured[tool]),
                    "n/a" if ratio != ratio else f"{ratio:.1f}x faster",
                    f">= {goal:.0f}x",
                    verdict(ratio, goal),
                )
            )
    return rows


def throughput_rows(results: Results) -> list[Row]:
    rows: list[Row] = []
    if not results.throughput:
        return rows
    for key, name in (
        ("tasks/s", "tasks/s, submitted then gathered"),
        ("calls/s", "actor calls/s"),
    ):
        ours = median([r[key] for r in results.throughput.get("runenv", []) if key in r])
        theirs = median([r[key] for r in results.throughput.get("ray", []) if key in r])
        overhead = theirs / ours - 1 if ours > 0 else float("nan")
        rows.append(
            (
                name,
                rate_text(ours),
                rate_text(theirs),
                "n/a" if overhead != overhead else f"{overhead:+.0%} time",
                f"<= {GOAL_OVERHEAD:.0%} overhead",
                verdict(overhead, GOAL_OVERHEAD, higher_is_better=False),
            )
        )
    return rows


def rate_text(rate: float) -> str:
    return "failed" if rate != rate else f"{rate:,.0f}"


def human(size: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def disk_rows(results: Results) -> list[Row]:
    ours = results.disk.get("runenv", {})
    if not ours:
        return []
    entry = max(footprint.env for footprint in ours.values())
    together = max(footprint.with_uv_cache for footprint in ours.values())
    rows: list[Row] = []
    for tool in ("pip", "uv"):
        theirs = results.disk.get(tool, {})
        if not theirs:
            continue
        ray = max(footprint.env for footprint in theirs.values())
        for what, size in (("entry alone", entry), ("entry + node's uv cache", together)):
            rows.append(
                (
                    f"disk per node, runenv {what}, vs Ray `{tool}`",
                    human(size),
                    human(ray),
                    f"{ray / size:,.0f}x smaller",
                    "-",
                    "-",
                )
            )
    return rows


def print_report(results: Results, args: argparse.Namespace) -> None:
    rows = speed_rows(results) + throughput_rows(results) + disk_rows(results)
    header: Row = ("measure", "runenv", "Ray", "ratio", "goal", "met?")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for index, row in enumerate([header, *rows]):
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print()
    for label, measured in (("cold", results.cold), ("after restart", results.restarted)):
        for system, samples in measured.items():
            runs = "; ".join(cold_detail(cold) for cold in samples)
            print(f"- {label}, {system}: {runs}")
    for system, nodes in results.disk.items():
        for node, footprint in nodes.items():
            extra = ""
            if system == "runenv":
                extra = (
                    f", with the node's uv cache {human(footprint.with_uv_cache)} "
                    f"(the uv cache alone {human(footprint.uv_cache)}); all of the node's "
                    f"RUNENV_HOME and uv cache {human(footprint.everything)}"
                )
            print(f"- disk, {system}, node {node}: env {human(footprint.env)}{extra}")
    for system, samples in results.throughput.items():
        shown = [
            r.get("error") or f"{r['tasks/s']:,.0f} tasks/s, {r['calls/s']:,.0f} calls/s"
            for r in samples
        ]
        print(f"- throughput, {system} ({args.tasks} each): {'; '.join(shown)}")


def cold_detail(cold: Cold) -> str:
    if cold.problem and cold.seconds != cold.seconds and not cold.per_node:
        return f"FAILED ({cold.problem})"
    nodes = ", ".join(f"{name.removeprefix('node_')} {s:.2f}" for name, s in cold.per_node.items())
    agents = ", ".join(
        f"{name}: " + " + ".join(f"{env} {s:.2f}" for env, s in envs.items())
        for name, envs in cold.agent.items()
    )
    text = (
        f"{cold.seconds:.2f} s (init {cold.init:.2f}, submitted {cold.submitted:.2f}; "
        f"results: {nodes}; env agents' creation: {agents})"
    )
    return text + (f" NOT COUNTED: {cold.problem}" if cold.problem else "")


def machine_facts() -> str:
    import ray

    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}; Python "
        f"{platform.python_version()}; Ray {ray.__version__}; load average {load}"
    )


def step(what: str) -> None:
    print(f"... {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, help="cold/restart runs per system (3)")
    parser.add_argument("--tasks", type=int, help="tasks and calls per round (2000; 0: none)")
    parser.add_argument("--rounds", type=int, help="throughput rounds per side (5)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="e.g. runenv,pip")
    parser.add_argument(
        "--quick", action="store_true", help="defaults of 1 repeat, 200 tasks, 1 round"
    )
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        driver_main(json.loads(args.driver))
        return
    defaults = (1, 200, 1) if args.quick else (3, 2000, 5)
    for name, default in zip(("repeat", "tasks", "rounds"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    began = time.perf_counter()
    print(machine_facts())
    print(f"package {PACKAGE}; {args.repeat} cold runs per system; {args.tasks} tasks per round")
    results = Results()
    try:
        with tempfile.TemporaryDirectory(prefix="rb-ray-") as scratch:
            run(args, Path(scratch), results)
    except (KeyboardInterrupt, RuntimeError) as stopped:
        print(f"STOPPED EARLY ({type(stopped).__name__}: {stopped}): partial results")
    print_report(results, args)
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\n(whole run: {time.perf_counter() - began:.0f} s; load average at the end: {load})")


if __name__ == "__main__":
    main()
