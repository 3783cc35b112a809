"""Jobs benchmark: ``runenv job submit`` against ``ray job submit`` on a local Ray head.

    .venv/bin/python bench/jobs.py [--quick] [--repeat 5] [--concurrent 50] [--skip-ray]

For ``python -c 'print(1)'`` with a small working dir, each the median of ``--repeat`` runs:
submit → first line of the job's output, and submit → the CLI's exit (logs followed to the end).
Then ``--concurrent`` submissions at once (``--no-wait``): all must complete; jobs/s reported.
runenv is measured embedded (no server) and against ``runenv serve`` with token auth on (a
``--token-file`` of its own, the CLI given ``RUNENV_TOKEN``); Ray against a head started here
with tests/raycluster.py (one ``ray start``, its processes killed by pid after — never
``ray stop``). ``--quick``: 2 repeats, 10 concurrent.

Against the server alone: 200 concurrent ``GET /api/jobs/{id}`` (httpx async; p50/p99 ms), and
the server's RSS while a 100 MB log is tailed and while ``GET …/logs`` streams it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve()
# Keep bench/ off the path: a script there must never shadow a library Ray or runenv imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE.parent]
sys.path.insert(0, str(HERE.parents[1] / "tests"))

import httpx  # noqa: E402
import psutil  # noqa: E402
from peak_rss import PeakRss  # noqa: E402

RUNENV = [sys.executable, "-m", "runenv"]
ENTRYPOINT = ["python", "-c", "print(1)"]
MB = 1024 * 1024


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
        "submit → first log line (s)": statistics.median(s[0] for s in samples),
        "submit → exit (s)": statistics.median(s[1] for s in samples),
        f"{concurrent} concurrent submissions (jobs/s)": burst(no_wait, follow, env, concurrent),
    }


def ray_rows(project: Path, repeat: int, concurrent: int) -> dict[str, float]:
    """The same rows against a local Ray head (2 CPUs) started here and killed by pid after."""
    from raycluster import Node, RayCluster

    root = Path(tempfile.mkdtemp(prefix="ray-jobs-"))
    cluster = RayCluster(root, [Node(name="head", root=root / "head", head=True, cpus=2)])
    cluster.start()
    try:
        env = {**cluster.env, "RAY_ADDRESS": cluster.dashboard_url}
        ray = str(Path(sys.executable).with_name("ray"))
        return rows([ray], project, repeat, concurrent, env)
    finally:
        cluster.stop()


@contextmanager
def job_server(env: dict[str, str], scratch: Path) -> Iterator[tuple[str, str, int]]:
    """``runenv serve`` with a token file (0600): its address, token and pid."""
    token = secrets.token_urlsafe(32)
    token_file = scratch / "server-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [*RUNENV, "serve", "--port", str(port), "--token-file", str(token_file)]
    server = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(address, token, server)
        yield address, token, server.pid
    finally:
        server.kill()
        server.wait()


def wait_until_up(address: str, token: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(
                f"{address}/api/version", headers={"Authorization": f"Bearer {token}"}, timeout=1
            ).raise_for_status()
            return
        except httpx.HTTPError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("runenv serve did not start") from None
            time.sleep(0.05)


def status_latencies(address: str, token: str, job_id: str, count: int) -> list[float]:
    """Milliseconds of each of ``count`` concurrent ``GET /api/jobs/{id}``."""

    async def one(client: httpx.AsyncClient) -> float:
        start = time.perf_counter()
        (await client.get(f"/api/jobs/{job_id}")).raise_for_status()
        return (time.perf_counter() - start) * 1000

    async def all_at_once() -> list[float]:
        limits = httpx.Limits(max_connections=count)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            base_url=address, headers=headers, limits=limits, timeout=120
        ) as client:
            await asyncio.gather(*(one(client) for _ in range(10)))  # connections warmed
            return list(await asyncio.gather(*(one(client) for _ in range(count))))

    return asyncio.run(all_at_once())


def server_rows(address: str, token: str, pid: int, home: Path) -> dict[str, float]:
    """Status requests under concurrency, and memory while a 100 MB log is served."""
    client = httpx.Client(base_url=address, headers={"Authorization": f"Bearer {token}"})
    job_id = client.post("/api/jobs/", json={"entrypoint": "true"}).json()["submission_id"]
    while client.get(f"/api/jobs/{job_id}").json()["status"] not in ("SUCCEEDED", "FAILED"):
        time.sleep(0.05)
    latencies = sorted(status_latencies(address, token, job_id, 200))
    line = b"a line of a long job log, with a little unicode: \xc3\xa9\n"
    with open(home / "jobs" / job_id / "job.log", "wb") as log:
        for _ in range(100 * MB // len(line)):
            log.write(line)
    idle = psutil.Process(pid).memory_info().rss
    peaks = {}
    for name, path in (("tailed", "/logs/tail"), ("GET …/logs", "/logs")):
        with (
            PeakRss(pid) as rss,
            client.stream("GET", f"/api/jobs/{job_id}{path}", timeout=None) as response,
        ):
            received = sum(len(chunk) for chunk in response.iter_bytes())
        assert received >= 100 * MB * 0.99, received
        peaks[name] = rss.peak
    return {
        "200 concurrent GET /api/jobs/{id}, p50 (ms)": statistics.median(latencies),
        "200 concurrent GET /api/jobs/{id}, p99 (ms)": latencies[int(len(latencies) * 0.99) - 1],
        "server RSS idle (MB)": idle / MB,
        "server RSS peak while a 100 MB log is tailed (MB)": peaks["tailed"] / MB,
        "server RSS peak while GET …/logs streams it (MB)": peaks["GET …/logs"] / MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats, 10 concurrent")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.concurrent = 2, 10
    with tempfile.TemporaryDirectory(prefix="runenv-jobs-bench-") as temp:
        scratch = Path(temp)
        project = scratch / "project"
        project.mkdir()
        (project / "main.py").write_text("print(1)\n")
        (project / "README.md").write_text("a small working dir\n")
        home = scratch / "home"
        env = {**os.environ, "RUNENV_HOME": str(home)}
        env.pop("RUNENV_ADDRESS", None)
        embedded = rows(RUNENV, project, args.repeat, args.concurrent, env)
        with job_server(env, scratch) as (address, token, pid):
            client_env = {**env, "RUNENV_ADDRESS": address, "RUNENV_TOKEN": token}
            served = rows(RUNENV, project, args.repeat, args.concurrent, client_env)
            extra = server_rows(address, token, pid, home)
        theirs = {} if args.skip_ray else ray_rows(project, args.repeat, args.concurrent)
    report(args, embedded, served, theirs, extra)


def report(
    args: argparse.Namespace,
    embedded: dict[str, float],
    served: dict[str, float],
    theirs: dict[str, float],
    extra: dict[str, float],
) -> None:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} cores, load {load}; Python {sys.version.split()[0]}; ", end="")
    print(f"median of {args.repeat}")
    columns = "runenv embedded | runenv serve (token) | ray job | embedded vs ray | serve vs ray"
    print(f"| what | {columns} |")
    print("|---|---:|---:|---:|---|---|")
    for name, value in served.items():
        other = theirs.get(name)
        shown = "" if other is None else f"{other:.2f}"
        ratios = [ratio(name, ours, other) for ours in (embedded[name], value)]
        print(f"| {name} | {embedded[name]:.2f} | {value:.2f} | {shown} | {' | '.join(ratios)} |")
    print("\n| runenv serve (token) | value |\n|---|---:|")
    for name, value in extra.items():
        print(f"| {name} | {value:.1f} |")


def ratio(name: str, ours: float, theirs: float | None) -> str:
    if theirs is None:
        return ""
    if "jobs/s" in name:
        return f"{ours / theirs:.1f}x the throughput"
    return f"{theirs / ours:.1f}x faster"


if __name__ == "__main__":
    main()
