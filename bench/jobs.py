"""Jobs benchmark: ``runenv job submit`` against ``ray job submit`` on a local Ray head.

    .venv/bin/python bench/jobs.py [--ray-bin PATH/TO/ray] [--repeat 5] [--concurrent 50]

For ``python -c 'print(1)'`` with a small working dir, each the median of ``--repeat`` runs:
submit → first line of the job's output, and submit → the CLI's exit (logs followed to the end).
Then ``--concurrent`` submissions at once (``--no-wait``): all must complete; jobs/s reported.
The Ray column needs ``ray[default]`` (for ``ray job``); ``--ray-bin`` points at its ``ray``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve()
RUNENV = [sys.executable, "-m", "runenv"]
ENTRYPOINT = ["python", "-c", "print(1)"]


def timed_submit(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds until the job's first output line ("1"), and until the command exits."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert process.stdout is not None
    first = None
    for line in process.stdout:
        if first is None and line.strip() == "1":
            first = time.perf_counter() - start
    code = process.wait()
    total = time.perf_counter() - start
    if code != 0 or first is None:
        raise SystemExit(f"{' '.join(command)} failed (exit {code})")
    return first, total


def burst(submit: list[str], wait_all: list[str] | None, env: dict[str, str], count: int) -> float:
    """Jobs per second for ``count`` submissions at once, all followed to completion."""
    start = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        ids = list(
            pool.map(
                lambda _: (
                    subprocess.run(
                        submit, capture_output=True, text=True, env=env, check=True
                    ).stdout
                ),
                range(count),
            )
        )
    if wait_all is not None:
        for output in ids:
            job_id = re.findall(r"(?:raysubmit|runenv-job)[-_][A-Za-z0-9]+", output)[-1]
            subprocess.run([*wait_all, job_id], capture_output=True, env=env, check=True)
    return count / (time.perf_counter() - start)


def rows(
    cli: list[str], project: Path, repeat: int, concurrent: int, env: dict[str, str]
) -> dict[str, float]:
    """The measurements for a job CLI: ``runenv`` and ``ray`` take the same ``job`` commands."""
    submit = [*cli, "job", "submit", "--working-dir", str(project), "--", *ENTRYPOINT]
    timed_submit(submit, env)  # warm the caches once, as any second submission would be
    samples = [timed_submit(submit, env) for _ in range(repeat)]
    no_wait = [*cli, "job", "submit", "--no-wait", "--working-dir", str(project), "--", *ENTRYPOINT]
    follow = [*cli, "job", "logs", "--follow"]
    return {
        "submit → first log line": statistics.median(s[0] for s in samples),
        "submit → exit": statistics.median(s[1] for s in samples),
        f"{concurrent} concurrent submissions (jobs/s)": burst(no_wait, follow, env, concurrent),
    }


def ray_rows(ray: str, project: Path, repeat: int, concurrent: int) -> dict[str, float]:
    """The same rows against a local Ray head, started here and stopped after."""
    temp = tempfile.mkdtemp(prefix="ray-jobs-")
    # Ray 2.60's dashboard asks for a token once one exists in ~/.ray: use token auth throughout.
    env = {**os.environ, "RAY_ADDRESS": "http://127.0.0.1:8266", "RAY_AUTH_MODE": "token"}
    subprocess.run([ray, "get-auth-token", "--generate"], capture_output=True, env=env)
    head = [
        "--head",
        "--num-cpus",
        "2",
        "--dashboard-port",
        "8266",
        "--port",
        "6391",
        "--temp-dir",
        temp,
        "--include-dashboard",
        "true",
    ]
    subprocess.run([ray, "start", *head], check=True, capture_output=True, env=env)
    try:
        return rows([ray], project, repeat, concurrent, env)
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env)
        shutil.rmtree(temp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--ray-bin", default=shutil.which("ray"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runenv-jobs-bench-") as scratch:
        project = Path(scratch) / "project"
        project.mkdir()
        (project / "main.py").write_text("print(1)\n")
        (project / "README.md").write_text("a small working dir\n")
        env = {**os.environ, "RUNENV_HOME": str(Path(scratch) / "home")}
        ours = rows(RUNENV, project, args.repeat, args.concurrent, env)
        theirs = (
            ray_rows(args.ray_bin, project, args.repeat, args.concurrent) if args.ray_bin else {}
        )
    print(f"{os.cpu_count()} cores; Python {sys.version.split()[0]}; median of {args.repeat}")
    print("| what | runenv | ray job | ratio |")
    print("|---|---:|---:|---|")
    for name, value in ours.items():
        other = theirs.get(name)
        if other is None:
            ratio = ""
        elif "jobs/s" in name:
            ratio = f"runenv {value / other:.1f}x the throughput"
        else:
            ratio = f"runenv {other / value:.1f}x faster"
        shown = "" if other is None else f"{other:.2f}"
        print(f"| {name} | {value:.2f} | {shown} | {ratio} |")


if __name__ == "__main__":
    main()
