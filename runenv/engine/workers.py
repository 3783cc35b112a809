"""Worker processes of the embedded engine: started in an env's Context, talked to by socket."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle

import runenv
from runenv.cache import Lease, ResourceCache
from runenv.context import Context, start_process
from runenv.core.protocol import Connection
from runenv.deadline import Deadline
from runenv.digests import file_digest, key_of

if TYPE_CHECKING:
    from runenv.engine.envs import EnvState

# What the driver runs: ``-c BOOTSTRAP <front dir or ""> <back dir> <fd> <driver pid>``. In an
# isolated env the front directory (runenv's worker side only) comes first, so no other
# ``runenv`` (say, a source tree in the cwd) shadows it; the back one (cloudpickle) comes after
# the env's own packages, so a cloudpickle the user pinned wins. The worker arms its death
# signal before anything else (the launcher starts it without a helper: runenv.process).
BOOTSTRAP = (
    "import sys; sys.argv[1] and sys.path.insert(0, sys.argv[1]); sys.path.append(sys.argv[2]); "
    "from runenv.core.lifetime import die_with_parent; die_with_parent(int(sys.argv[4])); "
    "from runenv.core.worker import main; main(int(sys.argv[3]))"
)

# The modules a worker imports as ``runenv``, copied into the bootstrap directory.
_WORKER_MODULES = (
    "api.py",
    "digests.py",
    "errors.py",
    "core/__init__.py",
    "core/lifetime.py",
    "core/messages.py",
    "core/protocol.py",
    "core/refs.py",
    "core/runtime.py",
    "core/serialization.py",
    "core/worker.py",
)
_WORKER_INIT = '''"""runenv inside a worker of an isolated env: the task and actor API only."""

from runenv.api import *  # noqa: F403
from runenv.api import __all__  # noqa: F401
'''

MessageHandler = Callable[["WorkerProcess", Any], None]
ExitHandler = Callable[["WorkerProcess"], None]


@dataclass(eq=False)
class WorkerProcess:
    """One worker: its process, its connection, and what it is doing."""

    worker_id: str
    env_key: str
    process: subprocess.Popen[bytes]
    connection: Connection
    env: EnvState | None = None  # the env it runs in (one of its users)
    actor_id: str | None = None
    task: Any = None  # the task it runs now (not for actors)
    defined: OrderedDict[str, None] = field(default_factory=OrderedDict)  # functions it has
    calls: dict[str, int] = field(default_factory=dict)  # tasks run, by function
    idle_since: float = field(default_factory=time.monotonic)
    alive: bool = True

    def send(self, message: Any) -> bool:
        """Send, or return False when the worker is gone (its exit is handled by the reader)."""
        try:
            self.connection.send(message)
        except OSError:
            return False
        return True


def stop_workers(workers: list[WorkerProcess], grace: float = 2.0) -> None:
    """Ask every worker to exit, then kill those still there after ``grace`` seconds."""
    from runenv.core.messages import Exit

    for worker in workers:
        worker.alive = False
        worker.send(Exit())
    deadline = time.monotonic() + grace
    for worker in workers:
        try:
            worker.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
        worker.connection.close()


Spawned = tuple[subprocess.Popen[bytes], Connection]


def spawn(context: Context, bootstrap: Path) -> Spawned:
    """Start a worker process in ``context``; the driver's end of its socket."""
    ours, theirs = socket.socketpair()
    isolated = context.python_executable != sys.executable  # a venv or conda env of its own
    front = str(bootstrap / "front") if isolated else ""
    command = [context.python_executable, "-c", BOOTSTRAP, front, str(bootstrap / "back")]
    try:
        process = start_process(
            context,
            [*command, str(theirs.fileno()), str(os.getpid())],
            pass_fds=(theirs.fileno(),),
            arms_itself=True,  # BOOTSTRAP arms the death signal, with our pid to check
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, Connection(ours)


def kill_spawned(spawned: Spawned) -> None:
    process, connection = spawned
    process.kill()
    process.wait()
    connection.close()


def start_worker(
    worker_id: str,
    context: Context,
    bootstrap: Path,
    on_message: MessageHandler,
    on_exit: ExitHandler,
    spawned: Spawned | None = None,
) -> WorkerProcess:
    """A worker in ``context`` (the process ``spawned`` already, if given); ``on_message`` and
    ``on_exit`` run on its reader thread."""
    process, connection = spawned or spawn(context, bootstrap)
    worker = WorkerProcess(worker_id, context.env_key, process, connection)
    reader = threading.Thread(
        target=_read, args=(worker, on_message, on_exit), name=f"runenv-{worker_id}", daemon=True
    )
    reader.start()
    return worker


def _read(worker: WorkerProcess, on_message: MessageHandler, on_exit: ExitHandler) -> None:
    try:
        while True:
            on_message(worker, worker.connection.receive())
    except (EOFError, OSError):
        pass
    worker.alive = False
    worker.process.wait()
    on_exit(worker)


def bootstrap_directory(cache: ResourceCache) -> tuple[Path, Lease]:
    """The directory workers import runenv's worker side (and cloudpickle) from."""
    package = Path(runenv.__file__).parent
    sources = [package / name for name in _WORKER_MODULES]
    contents = {name: file_digest(str(package / name)) for name in _WORKER_MODULES}
    key = key_of({"runenv": runenv.__version__, "sources": contents})[:32]

    def build(staging: Path) -> dict[str, str]:
        for source, name in zip(sources, _WORKER_MODULES, strict=True):
            target = staging / "front" / "runenv" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        (staging / "front" / "runenv" / "__init__.py").write_text(_WORKER_INIT)
        shutil.copytree(Path(cloudpickle.__file__).parent, staging / "back" / "cloudpickle")
        return {"runenv": runenv.__version__}

    entry = cache.acquire("bootstrap", key, build, Deadline(None))
    return entry.path, entry.lease
