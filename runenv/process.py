"""Starting processes: the one launcher every part of runenv uses.

A process started with :func:`start`

- runs in its own process group (a new session) unless asked not to, so a deadline or a cancel
  kills everything it started (:func:`kill_group`);
- dies with this process, even when this process is SIGKILLed (Linux ``PR_SET_PDEATHSIG``);
- is started without ``preexec_fn``, which Python documents as unsafe once threads exist (the
  engine and the jobs server have many). The death signal is armed after ``exec`` instead: by
  ``setpriv --pdeathsig KILL`` and a ``/bin/sh`` line that checks its parent is still the pid
  that started it (else the parent died before the signal was armed, and the child exits), or by
  a small Python helper doing the same where ``setpriv`` is missing. A Python child of runenv's
  own (a worker) arms the signal itself (``runenv.core.lifetime``) and skips the helper;
- is forked from one long-lived thread: Linux sends the death signal when the *thread* that
  forked the child exits, not the process, and runenv starts processes from short-lived threads
  (setup pools, request threads). The main thread, which lives as long as the process, starts
  its own.

:func:`run` adds a deadline and the wait; :func:`spawn_detached` starts what must outlive us.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import IO, Any, TypeVar

Stream = int | IO[Any] | None
T = TypeVar("T")

# Runs after setpriv armed the death signal. sh's $PPID is getppid() at its start: if it is not
# the launcher's pid ($0), the launcher died before the signal was armed, so nothing would ever
# kill this child: it exits instead of running the command.
_CHECK_PARENT = '[ "$PPID" = "$0" ] || exit 137; exec "$@"'
# The same for a node without a setpriv that knows --pdeathsig (util-linux < 2.33); ~30 ms.
_PYTHON_HELPER = (
    "import ctypes, os, sys; ctypes.CDLL(None).prctl(1, 9); "
    "os.getppid() == int(sys.argv[1]) or os._exit(137); os.execv(sys.argv[2], sys.argv[2:])"
)
_SETPRIV_PLACES = ("/usr/bin/setpriv", "/bin/setpriv")


def start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: Stream = None,
    stdout: Stream = None,
    stderr: Stream = None,
    pass_fds: Sequence[int] = (),
    own_group: bool = True,
    arms_itself: bool = False,
    wrapper: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start ``argv``: its own process group (unless ``own_group`` is False), dying with us.

    ``arms_itself``: the command is a Python of runenv's that calls
    ``runenv.core.lifetime.die_with_parent`` with this process's pid, so no helper is needed.
    ``wrapper``: a command that prepares the process and execs the rest of its arguments (a
    job's namespaces: :mod:`runenv.jobs.isolation`), run after the death signal is armed.
    A missing or non-executable program raises FileNotFoundError / PermissionError here, as
    ``subprocess.Popen`` does.
    """
    command = list(argv)
    if not command:
        raise ValueError("no command to run")
    environment = dict(os.environ if env is None else env)
    if not arms_itself:
        program = _resolve_program(command[0], environment.get("PATH"), cwd)
        command = [*_death_signal_helper(os.getpid()), *wrapper, program, *command[1:]]
    else:
        command = [*wrapper, *command]

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            env=environment,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            pass_fds=tuple(pass_fds),
            start_new_session=own_group,
        )

    try:
        return _LAUNCHER.call(popen)
    except OSError as error:
        if error.errno != errno.E2BIG:
            raise
        from runenv.errors import TOO_BIG_HINT, RunenvError

        raise RunenvError(f"cannot start {argv[0]}: {error.strerror}", hint=TOO_BIG_HINT) from None


def run(
    argv: Sequence[str],
    *,
    timeout: float | None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    stdout: Stream = subprocess.PIPE,
    stderr: Stream = subprocess.PIPE,
) -> subprocess.CompletedProcess[bytes]:
    """Start ``argv`` in its own group and wait for it. When ``timeout`` passes the whole group
    is killed and ``subprocess.TimeoutExpired`` raised; an interrupted wait kills it too."""
    process = start(
        argv,
        env=env,
        stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
        stdout=stdout,
        stderr=stderr,
    )
    try:
        output, errors = process.communicate(input, timeout=timeout)
    except BaseException:
        kill_group(process)
        raise
    return subprocess.CompletedProcess(list(argv), process.returncode, output, errors)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group ``process`` leads (started with ``own_group``), then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    process.wait()


def spawn_detached(
    argv: Sequence[str], *, output: IO[bytes], env: Mapping[str, str] | None = None
) -> int:
    """Start ``argv`` as nobody's child, in a session of its own, with no death signal; its
    pid. Its stdout and stderr go to ``output``.

    ``/bin/sh`` starts it in the background, prints its pid and exits at once, so it is
    reparented to init (or the nearest subreaper) before this returns: no zombie in a
    long-running parent, and no Python start-up to wait for. A background command of a
    non-interactive shell starts with SIGINT and SIGQUIT ignored; a Python started so should
    restore them first thing.
    """
    started = subprocess.run(
        ["/bin/sh", "-c", '"$@" >&2 & echo $!', "sh", *argv],
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=output,
        start_new_session=True,
        check=True,
    )
    return int(started.stdout)


def _resolve_program(program: str, path: str | None, cwd: str | None) -> str:
    """The file ``program`` names, as execvp would find it with the child's PATH."""
    if os.sep in program:
        found = program if cwd is None else os.path.join(cwd, program)
        if not os.path.exists(found):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        if os.path.isdir(found) or not os.access(found, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
        return program
    which = shutil.which(program, path=os.defpath if path is None else path)
    if which is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    return which


def _death_signal_helper(parent_pid: int) -> list[str]:
    """The command line that arms the death signal, checks the parent and execs the rest."""
    if sys.platform != "linux":
        return []  # no PR_SET_PDEATHSIG: children are stopped by their group or their socket
    setpriv = _setpriv()
    if setpriv is None:
        return [sys.executable, "-I", "-S", "-c", _PYTHON_HELPER, str(parent_pid)]
    return [setpriv, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", _CHECK_PARENT, str(parent_pid)]


@functools.cache
def _setpriv() -> str | None:
    """util-linux's setpriv if it knows --pdeathsig (2.33+). Its option table holds the name,
    which is cheaper to look for than running it on the first launch of every process."""
    for place in (*_SETPRIV_PLACES, shutil.which("setpriv")):
        if place is None:
            continue
        with contextlib.suppress(OSError), open(place, "rb") as binary:
            if b"pdeathsig" in binary.read():
                return place
    return None


class _Launcher:
    """The long-lived thread processes are forked from (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    def reset_after_fork(self) -> None:
        """In a forked child: the thread is not there, and the lock may have been held."""
        self._lock = threading.Lock()
        self._requests = queue.SimpleQueue()
        self._thread = None

    def call(self, function: Callable[[], T]) -> T:
        """``function()`` run on a thread that lives as long as this process."""
        current = threading.current_thread()
        if current is threading.main_thread() or current is self._thread:
            return function()
        future: Future[T] = Future()
        self._ensure_thread()
        self._requests.put((function, future))
        try:
            return future.result()
        except BaseException:
            future.add_done_callback(_reap_abandoned)  # nobody will wait for it otherwise
            raise

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="runenv-launcher", daemon=True
                )
                self._thread.start()

    def _serve(self) -> None:
        while True:
            function, future = self._requests.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function())
            except BaseException as error:  # handed to the caller, who raises it
                future.set_exception(error)


def _reap_abandoned(future: Future[Any]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    process = future.result()
    if isinstance(process, subprocess.Popen):
        with contextlib.suppress(OSError):
            process.kill()  # if it has no group of its own
        kill_group(process)


_LAUNCHER = _Launcher()
os.register_at_fork(after_in_child=_LAUNCHER.reset_after_fork)
