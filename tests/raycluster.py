"""Real Ray clusters for the tests: one `ray start` per node on this machine.

Each node has its own ``--temp-dir``, ``RUNENV_HOME`` and ports; ``HOME`` is a temp dir and
``RAY_AUTH_MODE`` is set explicitly, so no user's Ray config or token leaks in. Every process a
node starts inherits a marker variable; teardown kills exactly those processes by pid (never
``ray stop``, which kills every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "RUNENV_TEST_RAY_NODE"
PLUGIN_VALUE = json.dumps([{"class": "runenv.ray.plugin.RunenvPlugin", "priority": 90}])
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Node:
    """One Ray node: its name (also a custom resource ``node:<name>`` of 1000 units, so tests
    can pin work to it), whether runenv's plugin is registered on it, and its own dirs."""

    name: str
    root: Path
    plugin: bool = True
    head: bool = False
    cpus: int = 1
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def runenv_home(self) -> Path:
        return self.root / "runenv-home"

    @property
    def temp_dir(self) -> Path:
        # Ray's socket paths must stay under 107 bytes: keep the temp dir short.
        return Path("/tmp") / f"rt-{self.marker[:10]}"

    @property
    def resource(self) -> str:
        return f"node_{self.name}"

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        env = {**base, MARKER: self.marker, "RUNENV_HOME": str(self.runenv_home)}
        if self.plugin:
            env["RAY_RUNTIME_ENV_PLUGINS"] = PLUGIN_VALUE
        else:
            env.pop("RAY_RUNTIME_ENV_PLUGINS", None)
        return env


def base_environment(root: Path) -> dict[str, str]:
    """What every node and the test's driver share: a temp HOME, auth off, no usage stats."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    for name in ("RAY_ADDRESS", "RUNENV_ADDRESS", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    return env


class RayCluster:
    """A head and worker nodes started with ``ray start``; ``address`` is the GCS address."""

    def __init__(self, root: Path, nodes: list[Node]) -> None:
        self.root = root
        self.nodes = nodes
        self.env = base_environment(root)
        self.port = free_port()
        self.dashboard_port = free_port()
        self.client_port = free_port()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def client_address(self) -> str:
        return f"ray://127.0.0.1:{self.client_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def head(self) -> Node:
        return self.nodes[0]

    def start(self) -> RayCluster:
        """Start every node; if that fails, nothing of the cluster is left running."""
        try:
            for node in self.nodes:
                try:
                    self._start_node(node)
                except RuntimeError:  # a loaded machine can miss Ray's start-up deadlines
                    self.stop_node(node)
                    self._start_node(node)
            self.wait_for_nodes(len(self.nodes))
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, node: Node) -> None:
        node.runenv_home.mkdir(parents=True, exist_ok=True)
        node.temp_dir.mkdir(parents=True, exist_ok=True)
        worker_low = free_port()
        argv = [
            RAY,
            "start",
            f"--num-cpus={node.cpus}",
            "--object-store-memory=100000000",
            f"--temp-dir={node.temp_dir}",
            f"--resources={json.dumps({node.resource: 1000})}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--min-worker-port={worker_low}",
            f"--max-worker-port={worker_low + 40}",
            "--disable-usage-stats",
        ]
        if node is self.head:
            argv += [
                "--head",
                f"--port={self.port}",
                "--node-ip-address=127.0.0.1",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={self.client_port}",
            ]
        else:
            argv += [f"--address={self.address}", "--node-ip-address=127.0.0.1"]
        log = self.root / f"ray-start-{node.name}.log"
        with open(log, "ab") as output:
            finished = subprocess.run(
                argv,
                env=node.environment(self.env),
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=300,
                check=False,
            )
        if finished.returncode != 0:
            raise RuntimeError(f"ray start for node {node.name} failed:\n{log.read_text()[-4000:]}")

    def wait_for_nodes(self, count: int, timeout: float = 240) -> None:
        """Until ``count`` nodes are alive in the GCS, asked by a separate Python."""
        probe = (
            "import sys, time, ray\n"
            f"ray.init(address={self.address!r}, logging_level='ERROR')\n"
            f"deadline = time.monotonic() + {timeout}\n"
            "while time.monotonic() < deadline:\n"
            f"    if sum(n['Alive'] for n in ray.nodes()) >= {count}: sys.exit(0)\n"
            "    time.sleep(0.2)\n"
            "sys.exit(1)\n"
        )
        finished = subprocess.run(
            [sys.executable, "-c", probe], env=self.env, timeout=timeout + 60, check=False
        )
        if finished.returncode != 0:
            raise RuntimeError(f"the cluster at {self.address} did not reach {count} nodes")

    def processes(self, node: Node) -> list[int]:
        """Pids of every process that node started (found by the marker in their environ)."""
        needle = f"{MARKER}={node.marker}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                found.append(int(entry.name))
        return found

    def stop_node(self, node: Node) -> None:
        """Kill the node's processes by pid and wait until they are gone."""
        for _ in range(50):
            pids = [pid for pid in self.processes(node) if pid != os.getpid()]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for pid in pids:
                _reap(pid)
            time.sleep(0.1)
        raise RuntimeError(f"processes of node {node.name} survived SIGKILL: {pids}")

    def stop(self) -> None:
        """Every node stopped; their Ray logs kept beside the node's other files (pytest keeps
        the last runs' basetemps), their Ray temp dirs (sockets, sessions) removed."""
        self._kill_all()
        for node in self.nodes:
            logs = node.temp_dir / "session_latest" / "logs"
            if logs.is_dir():
                kept = node.root / "ray-logs"
                shutil.rmtree(kept, ignore_errors=True)
                shutil.copytree(logs, kept, symlinks=True, ignore_dangling_symlinks=True)
            shutil.rmtree(node.temp_dir, ignore_errors=True)

    def _kill_all(self) -> None:
        for node in reversed(self.nodes):
            self.stop_node(node)

    def restart(self) -> None:
        """Every node stopped and started again: a new Ray session, the same RUNENV_HOMEs."""
        self._kill_all()
        self.port = free_port()
        self.dashboard_port = free_port()
        self.start()


def _reap(pid: int) -> None:
    """Until ``pid`` is gone or a zombie (reaped here if it is our child)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # not our child: its parent reaps it
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.02)
