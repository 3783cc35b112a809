"""Environments benchmark: runenv against Ray's `pip` and `uv` runtime envs, in one run.

Times, from "nothing cached" until code runs in the env (`import <package>`, exit 0):
  - runenv, the whole `runenv run --pip PKG -- python -c "import PKG"` command in a new process:
    fully cold (empty RUNENV_HOME and empty uv cache: uv downloads from PyPI), and with a cold
    env but a warm uv cache (a node that installed anything before);
  - Ray, `ray.get(f.options(runtime_env={"pip" | "uv": [PKG]}).remote())` in a new Ray session
    (so Ray's per-session env cache is empty); starting the cluster is not counted;
  - warm: a new process in an already built env, through the CLI and through the engine's path
    (`materialize()` + `start_process()` + wait, in a process that imported runenv already);
  - after a restart: runenv in a new Python process with the same RUNENV_HOME (reused, not
    rebuilt), Ray after `ray.shutdown()` and a new `ray.init()` (rebuilt);
  - the disk footprint of each env.
Ray's pip and uv envs start as a copy of the driver's venv, so Ray runs from two venvs: this
project's, and a lean one with only ray (and virtualenv, pip) that the script builds first; the
restart and pandas rows use the lean one (one run each for pandas).

  - warm CLI (rows marked new): `runenv run` and `runenv job submit --no-wait` of a built
    working_dir + pip env, beside `python -c pass` and `uv run`, min and median
    (`--warm-cli-only` runs just these).

  - second node from the store (rows marked new, issue 13; `--store-only` runs just these):
    node A locks `pandas` and uploads the files its lock names to a moto S3 bucket (and, with
    config.share_env, its built venv); a second node (empty RUNENV_HOME and uv cache) then
    builds the env from the index (PyPI, the lock's URLs), from the store's wheelhouse with every
    index a closed port, and from node A's prebuilt env, also without an index; and Ray's `pip`
    field on a node without an index (a local Ray, the index a closed port): it fails.

    .venv/bin/python bench/envs.py [--repeat 3] [--warm-repeat 20] [--skip-ray]
                                   [--no-with-pandas] [--no-lean-ray] [--warm-cli-only]
                                   [--store-only]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# Keep bench/ off the path: a script there must never shadow a library, and Ray would put a
# driver script's directory on its workers' sys.path (only when it is on the driver's).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

SMALL = "six"
BIG = "pandas"
RESULT_MARK = "BENCH-RESULT "
RAY_TIMEOUT = 900.0


# --- helpers ---------------------------------------------------------------------------------


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def du_bytes(path: Path) -> int:
    """`du -sb`: apparent bytes, each hard-linked file counted once (within ``path``)."""
    output = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(output.stdout.split()[0])


def human(size: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def runenv_command() -> list[str]:
    script = Path(sys.executable).parent / "runenv"
    return [str(script)] if script.exists() else [sys.executable, "-m", "runenv"]


def bench_env(home: Path, uv_cache: Path) -> dict[str, str]:
    env = dict(os.environ, RUNENV_HOME=str(home), UV_CACHE_DIR=str(uv_cache))
    env.pop("VIRTUAL_ENV", None)
    return env


@dataclass
class CliRun:
    seconds: float
    stages: list[str]  # the progress lines runenv printed (on stderr: not a terminal)


def runenv_run(package: str, home: Path, uv_cache: Path) -> CliRun:
    """`runenv run --pip PACKAGE -- python -c "import PACKAGE"`, timed end to end."""
    argv = [*runenv_command(), "run", "--pip", package, "--", "python", "-c", f"import {package}"]
    start = time.perf_counter()
    result = subprocess.run(argv, env=bench_env(home, uv_cache), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"runenv run failed ({result.returncode}):\n{result.stderr}")
    return CliRun(seconds, [line for line in result.stderr.splitlines() if line])


def run_timed(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(list(argv), env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def python_entries(home: Path) -> list[Any]:
    from runenv.cache import ResourceCache

    cache = ResourceCache(home / "runtime_resources")
    return [entry for entry in cache.entries() if entry.kind == "python"]


@dataclass
class Footprint:
    own: int  # runenv.cache.disk_bytes: leaves out files hard-linked from uv's cache
    apparent: int  # du -sb


def runenv_footprint(home: Path) -> Footprint:
    from runenv.cache import disk_bytes

    (entry,) = python_entries(home)
    return Footprint(disk_bytes(entry.path), du_bytes(entry.path))


# --- runenv ----------------------------------------------------------------------------------


@dataclass
class ColdResult:
    fully_cold: list[float] = field(default_factory=list)
    warm_uv: list[float] = field(default_factory=list)
    footprint: Footprint | None = None
    uv_cache_bytes: int = 0  # du -sb of uv's cache after a fully cold build
    home: Path | None = None  # a RUNENV_HOME with the env built (for the warm runs)
    uv_cache: Path | None = None


def runenv_cold(package: str, work: Path, repeat: int) -> ColdResult:
    result = ColdResult()
    for index in range(repeat):
        home, uv_cache = work / f"{package}-cold-home-{index}", work / f"{package}-cold-uv-{index}"
        os.sync()
        run = runenv_run(package, home, uv_cache)
        check_built(run, package)
        result.fully_cold.append(run.seconds)
        result.footprint = runenv_footprint(home)
        result.uv_cache_bytes = du_bytes(uv_cache)
        shutil.rmtree(home)
        shutil.rmtree(uv_cache)
    shared_uv = work / f"{package}-uv"
    runenv_run(package, work / f"{package}-prime-home", shared_uv)  # fills uv's cache only
    shutil.rmtree(work / f"{package}-prime-home")
    for index in range(repeat):
        home = work / f"{package}-home-{index}"
        if index > 0:
            shutil.rmtree(work / f"{package}-home-{index - 1}")
        os.sync()
        run = runenv_run(package, home, shared_uv)
        check_built(run, package)
        result.warm_uv.append(run.seconds)
        result.home = home
    result.uv_cache = shared_uv
    return result


def check_built(run: CliRun, package: str) -> None:
    if not any("installing" in line for line in run.stages):
        raise SystemExit(f"expected a cold build of {package}, runenv said: {run.stages}")


def runenv_warm_cli(package: str, home: Path, uv_cache: Path, repeat: int) -> float:
    runs = [runenv_run(package, home, uv_cache) for _ in range(repeat)]
    if any("installing" in line for run in runs for line in run.stages):
        raise SystemExit("a warm run rebuilt the env")
    return median([run.seconds for run in runs])


def runenv_warm_engine(package: str, home: Path, uv_cache: Path, repeat: int) -> float:
    """materialize() + start_process() + wait, in this process (runenv imported already)."""
    os.environ.update(RUNENV_HOME=str(home), UV_CACHE_DIR=str(uv_cache))
    from runenv.context import start_process
    from runenv.materialize import materialize, release
    from runenv.spec import RuntimeEnv

    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        context = materialize(RuntimeEnv.from_dict({"pip": [package]}))
        code = start_process(context, ["python", "-c", f"import {package}"]).wait()
        samples.append(time.perf_counter() - start)
        release(context)
        if code != 0:
            raise SystemExit(f"import {package} failed in the env")
    return median(samples)


@dataclass
class RestartResult:
    seconds: float  # the whole new process, Python start and imports included
    engine_seconds: float  # materialize + start_process + wait inside it
    stages: list[str]
    created_unchanged: bool


def runenv_restart(package: str, home: Path, uv_cache: Path, repeat: int) -> RestartResult:
    """A new Python process, same RUNENV_HOME: the entry is reused, not rebuilt."""
    created = [entry.created for entry in python_entries(home)]
    argv = [sys.executable, __file__, "--runenv-probe", package]
    totals, engine, stages = [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        output = subprocess.run(
            argv, env=bench_env(home, uv_cache), capture_output=True, text=True, check=True
        )
        totals.append(time.perf_counter() - start)
        report = parse_result(output.stdout)
        engine.append(float(report["seconds"]))
        stages = [str(stage) for stage in report["stages"]]
    unchanged = [entry.created for entry in python_entries(home)] == created
    return RestartResult(median(totals), median(engine), stages, unchanged)


def runenv_probe(package: str) -> None:
    """(In the new process.) Materialize and run, reporting the stages runenv went through."""
    from runenv.context import start_process
    from runenv.materialize import materialize
    from runenv.spec import RuntimeEnv

    stages: list[str] = []
    start = time.perf_counter()
    context = materialize(
        RuntimeEnv.from_dict({"pip": [package]}),
        lambda stage, detail: stages.append(f"{stage} {detail}"),
    )
    code = start_process(context, ["python", "-c", f"import {package}"]).wait()
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"import {package} failed in the env")
    print(RESULT_MARK + json.dumps({"seconds": seconds, "stages": stages}))


def floor_seconds(home: Path, package: str, repeat: int) -> float:
    """The env's own interpreter importing the package, no runenv at all."""
    (entry,) = python_entries(home)
    python = entry.path / "venv" / "bin" / "python"
    return median([run_timed([str(python), "-c", f"import {package}"]) for _ in range(repeat)])


def cli_import_seconds(repeat: int) -> float:
    return median([run_timed([sys.executable, "-c", "import runenv.cli"]) for _ in range(repeat)])


# --- warm CLI (issue 8) -----------------------------------------------------------------------

RACY_WINDOW_S = 2.0  # runenv records no recipe while an input is younger (packaging.hashes)
WARM_ENV = "working_dir: .\nexcludes: ['*.log']\npip: [six]\nenv_vars:\n  LOG_LEVEL: debug\n"


@dataclass
class Timing:
    name: str
    argv: list[str]
    note: str
    samples: list[float] = field(default_factory=list)


def warm_cli_rows(work: Path, repeat: int) -> list[Row]:
    """Warm `runenv run` and `runenv job submit --no-wait` of a working_dir + pip env, beside
    Python's own start and `uv run`, interleaved (so load falls on all alike): min and median."""
    from uv import find_uv_bin

    project, home, uv_cache = work / "warm-project", work / "warm-home", work / "warm-uv"
    project.mkdir()
    (project / "main.py").write_text("import six\nprint(six.__name__)\n")
    (project / "data.txt").write_text("some data\n")
    (project / "env.yaml").write_text(WARM_ENV)
    env = bench_env(home, uv_cache)
    runenv_argv = [*runenv_command(), "run", "--runtime-env", "env.yaml", "--"]
    first = subprocess.run(
        [*runenv_argv, "python", "main.py"], env=env, cwd=project, capture_output=True, text=True
    )
    if first.returncode != 0:
        raise SystemExit(f"runenv run failed:\n{first.stderr}")
    time.sleep(RACY_WINDOW_S)  # not a synchronization: the files must be older than the window
    submit = [*runenv_command(), "job", "submit", "--no-wait", "--runtime-env", "env.yaml"]
    for argv in ([*runenv_argv, "python", "-c", "pass"], [*submit, "--", "true"]):
        for _ in range(2):  # the first records the recipe, the second must use it
            last = subprocess.run(argv, env=env, cwd=project, capture_output=True, text=True)
        if "runenv: " in last.stderr:
            raise SystemExit(f"the warm run was not the fast path: {last.stderr}")
    (entry,) = python_entries(home)
    timings = [
        Timing("`python -c pass`", [sys.executable, "-c", "pass"], "runenv's interpreter"),
        Timing(
            "env's `python -c pass`",
            [str(entry.path / "venv" / "bin" / "python"), "-c", "pass"],
            "the floor: the command alone",
        ),
        Timing(
            "`uv run --no-project python -c pass`",
            [find_uv_bin(), "run", "--no-project", "python", "-c", "pass"],
            "uv's warm run (the Python uv finds)",
        ),
        Timing(
            "`uv run --no-project --python <runenv's> python -c pass`",
            [
                find_uv_bin(),
                "run",
                "--no-project",
                "--python",
                sys.executable,
                "python",
                "-c",
                "pass",
            ],
            "uv's warm run, runenv's interpreter (no discovery)",
        ),
        Timing(
            "runenv warm run, working_dir + pip",
            [*runenv_argv, "python", "-c", "pass"],
            "`runenv run --runtime-env env.yaml -- python -c pass`; target <= 0.100",
        ),
        Timing(
            "runenv job submit --no-wait, warm",
            [*submit, "--", "true"],
            "to the id printed (the job runs after); target <= 0.150",
        ),
    ]
    for _ in range(repeat):
        for timing in timings:
            start = time.perf_counter()
            subprocess.run(timing.argv, env=env, cwd=project, check=True, capture_output=True)
            timing.samples.append(time.perf_counter() - start)
    return [
        (f"{t.name} (new)", median(t.samples), f"min {min(t.samples):.3f}; {t.note}")
        for t in timings
    ]


# --- Ray -------------------------------------------------------------------------------------


@dataclass
class RaySession:
    noop: float  # first task without a runtime_env in the new session
    env: float  # the task with the runtime_env: submit until its result is back
    env_dir: str
    footprint: int
    steps: dict[str, float]  # from Ray's logs: clone, install, agent (its whole env creation)
    preinstalled: bool  # the package is in the driver's venv already (so in Ray's copy of it)


def ray_missing() -> str | None:
    if importlib.util.find_spec("ray") is None:
        return "ray not installed"
    return None


@dataclass(frozen=True)
class RayVenv:
    """A venv to run Ray drivers from. Ray's pip/uv envs start as a copy of it."""

    name: str
    python: str
    env: dict[str, str]
    size: int  # du -sb of the venv


def driver_env() -> dict[str, str]:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    for name in ("RUNENV_HOME", "UV_CACHE_DIR", "VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(name, None)
    return env


def project_venv(work: Path) -> RayVenv:
    """This venv. Ray's pip/uv plugins need `virtualenv` importable (a `ray[default]`
    dependency); when it is missing it goes in a scratch dir on PYTHONPATH, not into the venv.
    (From a venv, Ray clones the venv and does not otherwise use virtualenv.)"""
    env = driver_env()
    if importlib.util.find_spec("virtualenv") is None:
        target = work / "virtualenv-for-ray"
        uv_install(["--no-deps", "--target", str(target), "virtualenv"], env)
        env["PYTHONPATH"] = str(target)
    return RayVenv("project venv", sys.executable, env, du_bytes(Path(sys.prefix)))


def lean_venv(work: Path) -> RayVenv:
    """A venv with only this Ray version, virtualenv and pip (which Ray's plugins need): what
    `pip install ray` gives. Built once per run with uv, from uv's default cache; not timed."""
    import ray

    venv = work / "lean-venv"
    env = driver_env()
    from uv import find_uv_bin

    subprocess.run(
        [find_uv_bin(), "venv", "-q", "--seed", "--python", sys.executable, str(venv)],
        check=True,
        env=env,
    )
    python = str(venv / "bin" / "python")
    uv_install(["--python", python, f"ray=={ray.__version__}", "virtualenv"], env)
    return RayVenv("lean venv", python, env, du_bytes(venv))


def uv_install(arguments: list[str], env: dict[str, str]) -> None:
    from uv import find_uv_bin

    subprocess.run([find_uv_bin(), "pip", "install", "-q", *arguments], check=True, env=env)


def ray_sessions(tool: str, package: str, sessions: int, venv: RayVenv) -> list[RaySession]:
    """``sessions`` Ray sessions one after the other in one driver; a fresh temp dir."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rb-ray-"))  # a short path: Ray's socket paths
    config = {"tool": tool, "package": package, "temp_dir": str(temp_dir), "sessions": sessions}
    os.sync()
    try:
        output = subprocess.run(
            [venv.python, __file__, "--ray-driver", json.dumps(config)],
            env=venv.env,
            cwd=temp_dir,
            capture_output=True,
            text=True,
            timeout=RAY_TIMEOUT,
        )
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    if output.returncode != 0:
        lines = output.stderr.splitlines()
        tail = "\n".join(lines[-30:])
        last = lines[-1] if lines else f"exit code {output.returncode}"
        raise RuntimeError(f"Ray {tool} {package}: {last}\n{tail}")
    return [RaySession(**session) for session in parse_result(output.stdout)["sessions"]]


def ray_probe(module: str) -> str:
    importlib.import_module(module)
    return sys.executable


def ray_driver(config: dict[str, Any]) -> None:
    """(In the driver process.) Cluster start is not timed; the env task is."""
    import ray

    tool, package = str(config["tool"]), str(config["package"])
    probe = ray.remote(ray_probe)
    results = []
    for _ in range(int(config["sessions"])):
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=str(config["temp_dir"]),
        )
        start = time.perf_counter()
        ray.get(probe.remote("sys"), timeout=RAY_TIMEOUT)
        noop = time.perf_counter() - start
        options = probe.options(runtime_env={tool: [package]})
        start = time.perf_counter()
        python = ray.get(options.remote(package), timeout=RAY_TIMEOUT)
        seconds = time.perf_counter() - start
        env_dir = Path(python).parents[2]  # runtime_resources/<tool>/<hash>/virtualenv/bin/python
        footprint = du_bytes(env_dir)
        ray.shutdown()
        session_dir = env_dir.parents[2]
        results.append(
            {
                "noop": noop,
                "env": seconds,
                "env_dir": str(env_dir),
                "footprint": footprint,
                "steps": ray_setup_steps(session_dir / "logs"),
                "preinstalled": importlib.util.find_spec(package) is not None,
            }
        )
        shutil.rmtree(session_dir, ignore_errors=True)  # ~0.5 GiB
        os.sync()
    print(RESULT_MARK + json.dumps({"sessions": results}))


def ray_setup_steps(logs: Path) -> dict[str, float]:
    """Seconds of the commands Ray's env agent ran, from its setup log: cloning the driver's
    venv, installing; and the agent's whole env creation, from the agent's log."""
    steps: dict[str, float] = {}
    started: dict[str, tuple[str, datetime]] = {}
    for log in logs.glob("runtime_env_setup-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            stamp = log_time(line)
            if stamp is None:
                continue
            command = re.search(r"Run cmd\[(\d+)\] (.*)", line)
            finished = re.search(r"(?:No output for|Output of) cmd\[(\d+)\]", line)
            if command:
                name = "clone" if "_clonevirtualenv" in command[2] else "other"
                if "'install'" in command[2]:
                    name = "install"
                started[command[1]] = (name, stamp)
            elif finished and finished[1] in started:
                name, begun = started.pop(finished[1])
                steps[name] = steps.get(name, 0.0) + (stamp - begun).total_seconds()
    agent_log = logs / "runtime_env_agent.log"
    if agent_log.exists():
        creating = created = None
        for line in agent_log.read_text(errors="replace").splitlines():
            if "Creating runtime env" in line and creating is None:
                creating = log_time(line)
            elif "Successfully created runtime env" in line and created is None:
                created = log_time(line)
        if creating and created:
            steps["agent"] = (created - creating).total_seconds()
    return steps


def log_time(line: str) -> datetime | None:
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    except ValueError:
        return None


def parse_result(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT_MARK))
            return result
    raise RuntimeError(f"no result in the output:\n{stdout}")


@dataclass
class RayResult:
    cold: list[RaySession] = field(default_factory=list)
    restart: RaySession | None = None
    error: str | None = None

    @property
    def seconds(self) -> float:
        return median([session.env for session in self.cold])

    @property
    def footprint(self) -> int:
        return self.cold[0].footprint if self.cold else 0


def ray_measure(tool: str, package: str, repeat: int, restart: bool, venv: RayVenv) -> RayResult:
    """``repeat`` cold builds, each in a new session; with ``restart``, the first driver also
    shuts Ray down, starts it again and builds the same env in the new session."""
    result = RayResult()
    try:
        for index in range(repeat):
            count = 2 if restart and index == 0 else 1
            sessions = ray_sessions(tool, package, count, venv)
            result.cold.append(sessions[0])
            if len(sessions) > 1:
                result.restart = sessions[1]
                if sessions[1].env_dir == sessions[0].env_dir:
                    raise RuntimeError("Ray reused the env dir across sessions")
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        result.error = str(error).splitlines()[0]
        print(error, file=sys.stderr)
    return result


# --- report ----------------------------------------------------------------------------------


Row = tuple[str, float, str]


def ratio(slow: float, fast: float) -> str:
    return f"{slow / fast:.1f}x" if fast > 0 and slow == slow else "n/a"


def ray_rows(label: str, ray: RayResult | None, runs: str) -> list[Row]:
    if ray is None:
        return [(label, float("nan"), "skipped")]
    if ray.error or not ray.cold:
        return [(label, float("nan"), f"failed: {ray.error}")]
    spread = ", ".join(f"{session.env:.2f}" for session in ray.cold)
    note = f"{runs} ({spread}); {breakdown(ray.cold)}"
    if ray.cold[0].preinstalled:
        note += "; the package is in the driver's venv, so in Ray's copy: nothing to download"
    return [(label, ray.seconds, note)]


def breakdown(sessions: Sequence[RaySession]) -> str:
    """Where Ray's time went, medians over the sessions, from its own logs."""

    def part(name: str) -> float:
        return median([session.steps.get(name, 0.0) for session in sessions])

    return (
        f"Ray's env agent {part('agent'):.2f} s, of which copying the driver's venv "
        f"{part('clone'):.2f} s, installing {part('install'):.2f} s"
    )


def versus(seconds: float, results: dict[str, RayResult]) -> str:
    """``seconds`` against each Ray result: '12.3x faster than Ray pip (project venv)'."""
    parts = [
        f"**{ratio(ray.seconds, seconds)}** vs {name}"
        for name, ray in results.items()
        if ray.cold and not ray.error
    ]
    return "; ".join(parts) if parts else "no Ray numbers"


def print_table(rows: Sequence[Row]) -> None:
    width = max(len(name) for name, _, _ in rows)
    print(f"| {'what':<{width}} | {'seconds':>8} | notes |")
    print(f"|{'-' * (width + 2)}|{'-' * 10}|-------|")
    for name, seconds, note in rows:
        shown = f"{seconds:8.3f}" if seconds == seconds else f"{'-':>8}"  # NaN: not measured
        print(f"| {name:<{width}} | {shown} | {note} |")


def machine_facts() -> str:
    from uv import find_uv_bin

    uv_version = subprocess.run([find_uv_bin(), "--version"], capture_output=True, text=True)
    ray = "not installed"
    if importlib.util.find_spec("ray") is not None:
        ray = importlib.import_module("ray").__version__
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return (
        f"{os.cpu_count()} cores, {human(memory)} RAM, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; "
        f"{uv_version.stdout.strip()}; Ray {ray}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each cold measurement")
    parser.add_argument("--warm-repeat", type=int, default=20, help="runs of each warm one")
    parser.add_argument("--skip-ray", action="store_true", help="runenv rows only")
    parser.add_argument(
        "--warm-cli-only", action="store_true", help="only the warm CLI rows (about a minute)"
    )
    parser.add_argument(
        "--with-pandas",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also pandas (Ray: one run each, lean venv); --no-with-pandas to skip",
    )
    parser.add_argument(
        "--lean-ray",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run Ray from a venv with only ray (its pip/uv envs copy the driver's venv)",
    )
    parser.add_argument(
        "--store-only", action="store_true", help="only the second-node-from-the-store rows"
    )
    parser.add_argument("--ray-driver", help=argparse.SUPPRESS)
    parser.add_argument("--runenv-probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ray_driver:
        ray_driver(json.loads(args.ray_driver))
        return
    if args.runenv_probe:
        runenv_probe(args.runenv_probe)
        return

    began = time.perf_counter()
    print(machine_facts())
    print(f"cold: median of {args.repeat} runs; warm: median of {args.warm_repeat} runs")
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"load average at the start: {load} (other work on the machine skews everything)")
    with tempfile.TemporaryDirectory(prefix="rb-") as scratch:
        work = Path(scratch)
        if args.warm_cli_only:
            rows, footprints = warm_cli_rows(work, args.warm_repeat), []
        elif args.store_only:
            rows, footprints = store_rows(work, args.repeat, args.skip_ray), []
        else:
            rows, footprints = measure(args, work)
    print_table(rows)
    print()
    for line in footprints:
        print(line)
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\n(whole run: {time.perf_counter() - began:.0f} s; load average at the end: {load})")


def measure(args: argparse.Namespace, work: Path) -> tuple[list[Row], list[str]]:
    repeat, warm = args.repeat, args.warm_repeat
    packages = [SMALL, BIG] if args.with_pandas else [SMALL]
    step("runenv cold builds")
    cold = {package: runenv_cold(package, work, repeat) for package in packages}
    small = cold[SMALL]
    assert small.home is not None and small.uv_cache is not None
    step("runenv warm and restart")
    warm_cli = runenv_warm_cli(SMALL, small.home, small.uv_cache, warm)
    warm_engine = runenv_warm_engine(SMALL, small.home, small.uv_cache, warm)
    floor = floor_seconds(small.home, SMALL, warm)
    cli_import = cli_import_seconds(warm)
    restart = runenv_restart(SMALL, small.home, small.uv_cache, repeat)
    step("warm CLI")
    warm_rows = warm_cli_rows(work, warm)
    big_home = cold[BIG].home if BIG in cold else None
    floor_big = floor_seconds(big_home, BIG, repeat) if big_home is not None else None

    reason = "--skip-ray" if args.skip_ray else ray_missing()
    venvs = ray_venvs(work, args.lean_ray) if reason is None else []
    # (package, tool) -> {"Ray pip (project venv)": result, ...}
    ray: dict[tuple[str, str], dict[str, RayResult]] = {}
    for venv in venvs:
        # The restart and pandas rows from one venv only (the lean one), to keep the run short.
        for package in packages if venv is venvs[-1] else [SMALL]:
            for tool in ("pip", "uv"):
                step(f"Ray {tool} {package}, {venv.name}")
                runs = repeat if package == SMALL else 1
                again = package == SMALL and venv is venvs[-1]
                result = ray_measure(tool, package, runs, again, venv)
                ray.setdefault((package, tool), {})[f"Ray {tool} ({venv.name})"] = result

    def all_ray(package: str) -> dict[str, RayResult]:
        return {**ray.get((package, "pip"), {}), **ray.get((package, "uv"), {})}

    rows = cold_rows(SMALL, cold[SMALL], all_ray(SMALL), reason, f"median of {repeat}")
    if reason is None:
        noops = [s.noop for per in ray.values() for r in per.values() for s in r.cold]
        rows.append(("Ray task, no runtime_env (new session)", median(noops), "for reference"))
    met = {True: "met", False: "**not met**"}
    rows += [
        (
            f"runenv warm `{SMALL}`, CLI",
            warm_cli,
            f"`runenv run` end to end; target <= 0.150: {met[warm_cli <= 0.15]}",
        ),
        (
            f"runenv warm `{SMALL}`, engine path",
            warm_engine,
            "materialize + start_process + wait, in-process; "
            f"target <= 0.150: {met[warm_engine <= 0.15]}",
        ),
        (f"floor: `import {SMALL}` in the built env", floor, "the env's python, no runenv"),
        ("`python -c 'import runenv.cli'`", cli_import, "the CLI's import cost alone"),
        (
            f"runenv after restart `{SMALL}`",
            restart.seconds,
            f"new process; in it materialize + run {restart.engine_seconds:.3f} s; stages: "
            f"{'; '.join(restart.stages)}; entry created time unchanged: "
            f"{'yes' if restart.created_unchanged else 'NO'}",
        ),
    ]
    for name, outcome in all_ray(SMALL).items():
        if outcome.restart is not None:
            rows.append(
                (
                    f"{name} after restart `{SMALL}`",
                    outcome.restart.env,
                    "shutdown + new init: rebuilt in the new session dir "
                    f"({breakdown([outcome.restart])}); runenv after restart "
                    f"{ratio(outcome.restart.env, restart.seconds)} faster",
                )
            )
    rows += warm_rows
    if BIG in cold:
        rows += cold_rows(BIG, cold[BIG], all_ray(BIG), reason, "1 run")
        if floor_big is not None:
            rows.append((f"floor: `import {BIG}` in the built env", floor_big, "in all the above"))
    footprints = [f"Ray driver venv: {venv.name}, {human(venv.size)} by `du -sb`" for venv in venvs]
    footprints += [footprint_line(p, cold[p], all_ray(p)) for p in packages]
    return rows, footprints


def ray_venvs(work: Path, lean: bool) -> list[RayVenv]:
    step("preparing Ray's driver venvs")
    venvs = [project_venv(work)]
    if lean:
        try:
            venvs.append(lean_venv(work))
        except subprocess.CalledProcessError as error:
            print(f"no lean venv for Ray: {error}", file=sys.stderr)
    return venvs


def cold_rows(
    package: str, built: ColdResult, ray: dict[str, RayResult], reason: str | None, runs: str
) -> list[Row]:
    fully, warm_uv = median(built.fully_cold), median(built.warm_uv)
    rows: list[Row] = [
        (
            f"runenv cold `{package}`, fully cold",
            fully,
            f"empty RUNENV_HOME and uv cache; {versus(fully, ray)}",
        ),
        (
            f"runenv cold `{package}`, warm uv cache",
            warm_uv,
            f"empty RUNENV_HOME; {versus(warm_uv, ray)}",
        ),
    ]
    if reason is not None:
        rows.append((f"Ray pip / uv `{package}`", float("nan"), reason))
    for name, outcome in ray.items():
        rows += ray_rows(f"{name} cold `{package}`", outcome, runs)
    return rows


def footprint_line(package: str, built: ColdResult, ray: dict[str, RayResult]) -> str:
    mine = built.footprint
    assert mine is not None
    line = (
        f"footprint `{package}`: runenv {human(mine.own)} own (runenv.cache.disk_bytes), "
        f"{human(mine.apparent)} by `du -sb` (its files are hard links into uv's cache, one per "
        f"node for all envs: {human(built.uv_cache_bytes)} after the fully cold build)"
    )
    for name, outcome in ray.items():
        if outcome.cold:
            line += (
                f"; {name} {human(outcome.footprint)} by `du -sb` "
                f"({ratio(outcome.footprint, mine.own)} runenv's own, "
                f"{ratio(outcome.footprint, mine.apparent)} its du)"
            )
    return line


# --- a second node from the store (issue 13) ---------------------------------------------


@dataclass
class MotoServer:
    process: subprocess.Popen[bytes]
    endpoint: str


def start_moto(work: Path) -> MotoServer:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    binary = Path(sys.executable).parent / "moto_server"
    log = open(work / "moto.log", "wb")  # noqa: SIM115 - the server's, until it stops
    command = [str(binary), "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return MotoServer(process, endpoint)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("moto_server did not start")


def aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def closed_index() -> dict[str, str]:
    """Every index a closed port (and pip's local mirrors ignored)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        index = f"http://127.0.0.1:{probe.getsockname()[1]}/simple"
    return {
        "UV_INDEX_URL": index,
        "UV_DEFAULT_INDEX": index,
        "PIP_INDEX_URL": index,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_FIND_LINKS": "",
        "UV_FIND_LINKS": "",
    }


def node_run(env_file: Path, home: Path, extra: dict[str, str]) -> CliRun:
    """`runenv run --runtime-env FILE -- python -c "import pandas"` as a fresh node."""
    argv = [*runenv_command(), "run", "--runtime-env", str(env_file), "--"]
    argv += ["python", "-c", f"import {BIG}"]
    env = {**bench_env(home, home.parent / f"{home.name}-uv"), **extra}
    os.sync()
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"runenv run failed ({result.returncode}):\n{result.stderr}")
    return CliRun(seconds, [line for line in result.stderr.splitlines() if line])


def prepared_env(work: Path, env: dict[str, Any], aws: dict[str, str], share: bool) -> Path:
    """Node A: lock (and upload the wheelhouse); with ``share``, build and share the venv."""
    home = work / f"node-a-{share}"
    env_file = work / f"env-{share}.json"
    env_file.write_text(json.dumps({**env, "config": {"share_env": share}}))
    code = (
        "import json, sys\nfrom runenv import RuntimeEnv\nfrom runenv.materialize import "
        "materialize, prepare\nenv = prepare(RuntimeEnv.from_file(sys.argv[1]))\n"
        "json.dump(env.to_dict(), open(sys.argv[1], 'w'))\n"
        "if env.config.share_env: materialize(env)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(env_file)],
        env={**bench_env(home, work / f"node-a-uv-{share}"), **aws},
        check=True,
    )
    return env_file


def store_rows(work: Path, repeat: int, skip_ray: bool) -> list[Row]:
    import boto3

    moto = start_moto(work)
    try:
        aws = aws_env(moto.endpoint)
        os.environ.update(aws)
        boto3.client("s3").create_bucket(Bucket="bench")
        env = {"pip": [BIG], "upload_path": "s3://bench/runenv"}
        step("node A: lock and upload the wheelhouse")
        wheelhouse = prepared_env(work, env, aws, share=False)
        step("node A: build and share the venv")
        shared = prepared_env(work, env, aws, share=True)
        from_index_file = work / "env-index.json"
        without_store = json.loads(wheelhouse.read_text())
        without_store.pop("upload_path")
        from_index_file.write_text(json.dumps(without_store))
        results: dict[str, list[float]] = {"index": [], "wheelhouse": [], "prebuilt": []}
        for index in range(repeat):
            step(f"second node, run {index + 1} of {repeat}")
            for name, env_file, extra in (
                ("index", from_index_file, {}),
                ("wheelhouse", wheelhouse, {**aws, **closed_index()}),
                ("prebuilt", shared, {**aws, **closed_index()}),
            ):
                home = work / f"node-b-{name}-{index}"
                results[name].append(node_run(env_file, home, extra).seconds)
                shutil.rmtree(home)
                shutil.rmtree(home.parent / f"{home.name}-uv", ignore_errors=True)
    finally:
        moto.process.kill()
        moto.process.wait()
    index_s = median(results["index"])
    runs = f"median of {repeat} (min {min(results['index']):.2f})"
    rows: list[Row] = [
        (
            f"new: second node cold `{BIG}`, from the index",
            index_s,
            f"empty RUNENV_HOME and uv cache; the lock's files from PyPI; {runs}",
        )
    ]
    for name, what in (
        ("wheelhouse", "the lock's files from the store (moto S3), every index a closed port"),
        ("prebuilt", "node A's venv unpacked (config.share_env), every index a closed port"),
    ):
        seconds = median(results[name])
        rows.append(
            (
                f"new: second node cold `{BIG}`, {name}",
                seconds,
                f"{what}; min {min(results[name]):.2f}; **{ratio(index_s, seconds)}** faster "
                f"than from the index (goal >= 3x)",
            )
        )
    rows.append(ray_pip_without_index(skip_ray, work))
    return rows


RAY_NO_INDEX = """
import sys
import ray
ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", _temp_dir=sys.argv[1])
try:
    ray.get(ray.remote(lambda: __import__("pandas").__version__).options(
        runtime_env={"pip": ["pandas"]}).remote(), timeout=600)
    print("RAY-OK")
except Exception as error:
    print("RAY-FAILED", type(error).__name__)
"""


def ray_pip_without_index(skip_ray: bool, work: Path) -> Row:
    """Ray's `pip` field on a node whose index is a closed port (a local Ray)."""
    name = f"new: Ray `pip` cold `{BIG}`, no index access"
    if skip_ray or ray_missing() is not None:
        return (name, float("nan"), "not measured (--skip-ray or Ray missing)")
    step("Ray pip without an index")
    # No index and no local mirror: pip's own config (find-links, extra index URLs) cut too.
    env = {**driver_env(), **closed_index(), "RAY_AUTH_MODE": "disabled"}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_RETRIES="0")
    env.pop("PIP_FIND_LINKS", None)
    env.pop("PIP_EXTRA_INDEX_URL", None)
    start = time.perf_counter()
    command = [sys.executable, "-c", RAY_NO_INDEX, str(work / "ray")]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    outcome = (
        "works"
        if "RAY-OK" in result.stdout
        else "**fails** ("
        + (result.stdout.strip().split("RAY-FAILED")[-1].strip() or "no result")
        + "): pip cannot reach an index; runenv works from the store"
    )
    return (name, seconds, f"until the error; {outcome}")


def step(what: str) -> None:
    print(f"... {what}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
