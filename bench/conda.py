"""Conda environments benchmark, offline, with a local channel (tests/conda_channel.py).

    .venv/bin/python bench/conda.py [--repeat 5]

Builds the standard test channel once (timed), then times each row ``--repeat`` times and
prints min / median seconds as a markdown table:
  - raw py-rattler, the baseline: solve, and install into a new prefix, timed apart, each in a
    child that ends with os._exit (tests/rattler_solve.py; py-rattler can crash a process that
    finalizes right after a call). Cold: empty package cache; warm: the package cache filled by
    an earlier install, new prefix. Plus the child's whole wall time (python start, import
    rattler, solve, install);
  - a new python process in a built env: ``PREFIX/bin/python -c "import tinybar"``;
  - runenv: a cold ``runenv run`` of the env (fresh RUNENV_HOME: solve in prepare, install),
    a warm one (the CLI's fast path), and a new process through the engine's path
    (``materialize`` + start + wait) in the built env;
  - the ``conda``, ``mamba`` and ``micromamba`` binaries creating the same env, only where one
    is on PATH ("not installed" otherwise).
Rows are :class:`Row` objects in :func:`rows`; a runenv row is one more entry there (its
``measure`` gets the :class:`Context`: the channel, the spec, a fresh directory per sample).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent / "tests"))

from conda_channel import CondaChannel, build_standard_channel  # noqa: E402

SOLVE_SCRIPT = HERE.parent / "tests" / "rattler_solve.py"
BINARIES = ("conda", "mamba", "micromamba")


@dataclass
class Context:
    channel: CondaChannel
    specs: list[str]
    scratch: Path  # every sample gets a fresh directory under it

    def fresh_directory(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.scratch))


# One sample: the seconds of each measured quantity, keyed by the row's labels.
Sample = dict[str, float]


@dataclass
class Row:
    """A group of measured lines; ``measure`` is called ``--repeat`` times, one Sample each."""

    name: str
    measure: Callable[[Context], Sample]
    available: Callable[[], str | None] = lambda: None  # a reason when it cannot run here


def rattler_child(context: Context, prefix: Path, cache: Path) -> dict[str, float]:
    """Solve + install in a tests/rattler_solve.py child; its own timings plus wall time."""
    command = [sys.executable, str(SOLVE_SCRIPT), "--channel", context.channel.url]
    command += ["--prefix", str(prefix), "--cache", str(cache), *context.specs]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    wall = time.perf_counter() - start
    report = json.loads(result.stdout)
    return {"solve": report["solve_seconds"], "install": report["install_seconds"], "wall": wall}


def rattler_cold(context: Context) -> Sample:
    directory = context.fresh_directory()
    timings = rattler_child(context, directory / "env", directory / "pkgs")
    return {f"py-rattler cold: {name}": seconds for name, seconds in timings.items()}


def rattler_warm(context: Context) -> Sample:
    directory = context.fresh_directory()
    rattler_child(context, directory / "first", directory / "pkgs")  # fills the package cache
    timings = rattler_child(context, directory / "env", directory / "pkgs")
    return {f"py-rattler warm cache, new prefix: {name}": s for name, s in timings.items()}


def new_python_process(context: Context) -> Sample:
    directory = context.fresh_directory()
    rattler_child(context, directory / "env", directory / "pkgs")
    python = directory / "env" / "bin" / "python"
    start = time.perf_counter()
    subprocess.run([str(python), "-c", "import tinybar"], check=True, timeout=60)
    return {"new python process in the built env (import tinybar)": time.perf_counter() - start}


def runenv_runs(context: Context) -> Sample:
    """Cold and warm ``runenv run`` of the env, from a fresh RUNENV_HOME."""
    import os

    directory = context.fresh_directory()
    env_file = directory / "env.json"
    env = {"conda": {"channels": [context.channel.url], "dependencies": context.specs}}
    env_file.write_text(json.dumps(env))
    past = time.time() - 10  # older than the racy window: the cold run records its recipe
    os.utime(env_file, (past, past))
    while time.time_ns() <= env_file.stat().st_ctime_ns + 2.1e9:  # ctime cannot be set back
        time.sleep(0.05)
    environ = {**os.environ, "RUNENV_HOME": str(directory / "home")}
    command = [sys.executable, "-m", "runenv", "run", "--runtime-env", str(env_file), "--"]
    command += ["python", "-c", "pass"]
    sample = {}
    for label in ("runenv run, cold (solve + install)", "runenv run, warm (fast path)"):
        start = time.perf_counter()
        subprocess.run(command, env=environ, cwd=directory, check=True, capture_output=True)
        sample[label] = time.perf_counter() - start
    return sample


def runenv_new_process(context: Context) -> Sample:
    """A new process in the built env through the engine's path: materialize + start + wait."""
    import os

    os.environ["RUNENV_HOME"] = str(context.scratch / "engine-home")
    from runenv import RuntimeEnv
    from runenv.context import start_process
    from runenv.materialize import materialize, prepare, release

    env = {"conda": {"channels": [context.channel.url], "dependencies": context.specs}}
    prepared = prepare(RuntimeEnv.from_dict(env))
    release(materialize(prepared))  # built once
    start = time.perf_counter()
    built = materialize(prepared)
    start_process(built, ["python", "-c", "import tinybar"]).wait()
    release(built)
    return {
        "runenv: new process in the built env (materialize + start + wait)": (
            time.perf_counter() - start
        )
    }


def binary_row(binary: str) -> Row:
    def measure(context: Context) -> Sample:
        prefix = context.fresh_directory() / "env"
        command = [binary, "create", "-y", "-p", str(prefix), "--override-channels"]
        command += ["-c", context.channel.url, *context.specs]
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, timeout=600)
        return {f"{binary} create (solve + install)": time.perf_counter() - start}

    def available() -> str | None:
        return None if shutil.which(binary) else "not installed"

    return Row(binary, measure, available)


def rows() -> list[Row]:
    return [
        Row("py-rattler cold", rattler_cold),
        Row("py-rattler warm", rattler_warm),
        Row("new process", new_python_process),
        Row("runenv run", runenv_runs),
        Row("runenv new process", runenv_new_process),
        *(binary_row(binary) for binary in BINARIES),
    ]


def run_rows(context: Context, repeat: int) -> Iterator[tuple[str, str]]:
    """(line label, "min / median s" or why not) for every line of every row."""
    for row in rows():
        reason = row.available()
        if reason is not None:
            yield row.name, reason
            continue
        samples = [row.measure(context) for _ in range(repeat)]
        for label in samples[0]:
            values = [sample[label] for sample in samples]
            yield label, f"{min(values):.3f} / {statistics.median(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-conda-") as scratch:
        try:
            measure(arguments.repeat, Path(scratch))
        finally:  # runenv's entries are sealed when run as root: rm -rf cannot remove them
            from runenv.cache import remove_tree

            remove_tree(Path(scratch))


def measure(repeat: int, scratch: Path) -> None:
    start = time.perf_counter()
    channel = build_standard_channel(scratch / "channel")
    build_seconds = time.perf_counter() - start
    specs = [f"python={channel.python.major_minor}", "tinybar", "tinycli"]
    context = Context(channel, specs, scratch)
    print(f"specs: {' '.join(specs)}; {repeat} runs each; seconds min / median\n")
    print("| what | seconds (min / median) |\n|---|---|")
    print(f"| build the local test channel (once) | {build_seconds:.3f} |")
    for label, value in run_rows(context, repeat):
        print(f"| {label} | {value} |", flush=True)


if __name__ == "__main__":
    main()
