"""The job supervisor: a detached process that sets up a job's env, runs it, and records how it
ended. ``python -m runenv.jobs.supervisor <submission id>``.

The entrypoint runs as a shell command in the materialized env, in its own process group, its
output appended to the job's log. A stop is a SIGTERM to the supervisor: it passes SIGTERM to the
job's group, then SIGKILL after a grace period. The supervisor writes the final status itself, so
nothing else (the CLI, a server) needs to be alive when the job ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

from runenv import process, settings
from runenv.errors import RunenvError
from runenv.jobs.models import (
    MAX_RETRIES_LIMIT,
    RETRY_BACKOFF_CAP_SECONDS,
    RETRY_BACKOFF_FIRST_SECONDS,
    JobInfo,
    JobStatus,
    check_submission_id,
)
from runenv.jobs.store import JobStore, jobs_home, open_private, private_directory
from runenv.redact import redact_text

STOP_GRACE_SECONDS = 3.0
POLL_SECONDS = 0.05
# How a job's driver learns its job id and env (runenv.init() makes that env the parent).

# What only the supervisor's own process uses loads there: `spawn` is imported by submitters.
if TYPE_CHECKING:
    from runenv.context import Context


def job_directory(submission_id: str) -> Path:
    return jobs_home() / check_submission_id(submission_id)


def log_path(submission_id: str) -> Path:
    return job_directory(submission_id) / "job.log"


def spawn(submission_id: str) -> None:
    """Start a detached supervisor for the job: nobody's child (no zombie in a long-running
    server), in a session of its own (the CLI's Ctrl-C doesn't reach it).

    This does not wait for its Python to start. Until the supervisor records itself, its pid
    file says it is starting (see :func:`spawned_alive`): on a busy machine a burst of
    submissions must not be taken for supervisors lost before they started.
    """
    import psutil

    directory = job_directory(submission_id)
    private_directory(directory)
    command = [sys.executable, "-c", _DETACHED, submission_id]
    with open_private(directory / "supervisor.log") as errors:
        pid = process.spawn_detached(command, output=errors)
    with contextlib.suppress(psutil.Error):  # else it has ended already: nothing to say
        started = psutil.Process(pid).create_time()
        with open_private(directory / "supervisor.pid", append=False) as pid_file:
            pid_file.write(f"{pid} {started!r}".encode())


def spawned_alive(submission_id: str) -> bool:
    """Whether the supervisor :func:`spawn` started for the job still runs (the same process,
    not a reuse of its pid)."""
    import psutil

    try:
        pid, started = (job_directory(submission_id) / "supervisor.pid").read_text().split()
        supervisor = psutil.Process(int(pid))
        same = abs(supervisor.create_time() - float(started)) < 0.5
        return same and bool(supervisor.status() != psutil.STATUS_ZOMBIE)
    except (OSError, ValueError, psutil.Error):
        return False


class _StopDuringSetup(BaseException):
    """Raised by the stop signal while the env is being set up, to cut the setup short."""


class Supervisor:
    def __init__(self, submission_id: str, store: JobStore, log: IO[bytes]) -> None:
        self.id = submission_id
        self.store = store
        self.log = log
        self.stop_requested = False
        self.setting_up = False
        self.process: subprocess.Popen[bytes] | None = None
        self.isolation_reported = False

    def run(self) -> None:
        import psutil

        signal.signal(signal.SIGTERM, self._on_stop)
        me = psutil.Process()
        self.store.update(self.id, supervisor_pid=me.pid, supervisor_started=me.create_time())
        info = self.store.get(self.id)
        if info.stop_requested:
            self._finish(JobStatus.STOPPED, "stopped before it started")
            return
        self.setting_up = True
        try:
            context = self._set_up(info)
        except _StopDuringSetup:
            context = None
            self._finish(JobStatus.STOPPED, "stopped while its env was being set up")
        self.setting_up = False
        if context is None:
            return
        if self.store.get(self.id).stop_requested:  # asked between the setup and now
            self._finish(JobStatus.STOPPED, "stopped before it started")
            return
        if not self.store.update(
            self.id, {JobStatus.PENDING}, status=JobStatus.RUNNING, start_time=time.time()
        ):
            return  # stopped while its env was being set up
        self._run_attempts(info, context)

    def say(self, text: str) -> None:
        self.log.write(f"[runenv] {redact_text(text)}\n".encode())

    def _set_up(self, info: JobInfo) -> Context | None:
        self.say(f"setting up the runtime env of {self.id}")
        from runenv.materialize import materialize  # here: submitting a job needn't load it
        from runenv.spec import RuntimeEnv

        try:
            context = materialize(
                RuntimeEnv.from_dict(info.runtime_env),
                on_stage=lambda stage, detail: self.say(f"{stage} {detail}"),
            )
        except RunenvError as error:
            self.say(f"runtime env setup failed: {error.message}")
            self._finish(JobStatus.FAILED, f"runtime env setup failed: {error.message}")
            return None
        if self.stop_requested:
            self._finish(JobStatus.STOPPED, "stopped before it started")
            return None
        return context

    def _run_attempts(self, info: JobInfo, context: Context) -> None:
        problem = _record_problem(info)
        if problem is not None:  # a record not written through the API: fail it, don't crash
            self.say(f"cannot run the job: {problem}")
            self._finish(JobStatus.FAILED, f"invalid job record: {problem}")
            return
        deadline = None if info.timeout_s is None else time.monotonic() + info.timeout_s
        code: int | None = None
        waited_out = False  # the timeout came during a backoff
        for attempt in range(1, info.max_retries + 2):
            if attempt > 1 and not self._back_off(attempt - 1, deadline):
                waited_out = not self.stop_requested
                break
            self.store.update(self.id, attempts=attempt)
            if attempt > 1:
                self.say(f"--- attempt {attempt} of {info.max_retries + 1} ---")
            try:
                code, timed_out = self._run_once(info, context, deadline)
            except RunenvError as error:  # e.g. env_vars over the system's limit (E2BIG)
                self.say(f"cannot start the entrypoint: {error}")
                self._finish(JobStatus.FAILED, f"cannot start the entrypoint: {error.message}")
                return
            self.process = None  # ended: a stop during the backoff signals no stale group
            if self.stop_requested:
                self._finish(JobStatus.STOPPED, "stopped by request", code)
                return
            if timed_out:
                self._finish(JobStatus.FAILED, f"timed out after {info.timeout_s:g} s", code)
                return
            if code == 0:
                self._finish(JobStatus.SUCCEEDED, "finished", code)
                return
            self.say(f"the entrypoint exited with code {code}")
        if self.stop_requested:
            self._finish(JobStatus.STOPPED, "stopped by request", code)
        elif waited_out:
            self._finish(JobStatus.FAILED, f"timed out after {info.timeout_s:g} s", code)
        else:
            self._finish(JobStatus.FAILED, _failure_message(code, info.max_retries), code)

    def _back_off(self, retry: int, deadline: float | None) -> bool:
        """Wait before retry number ``retry`` (exponential, with jitter); False when a stop
        or the job's timeout came first. The wait is cut short by a stop within a poll."""
        try:
            wait = retry_backoff_seconds(retry)
        except RunenvError as error:  # a bad setting: the job still backs off, by default
            self.say(f"{error.message}: using {RETRY_BACKOFF_FIRST_SECONDS:g} s")
            wait = RETRY_BACKOFF_FIRST_SECONDS * 2.0 ** min(retry - 1, 32)
            wait = min(wait, RETRY_BACKOFF_CAP_SECONDS)
        self.say(f"retrying in {wait:.1f} s")
        until = time.monotonic() + wait
        if deadline is not None and deadline < until:
            until = deadline
        while not self.stop_requested and time.monotonic() < until:
            time.sleep(min(POLL_SECONDS, max(0.0, until - time.monotonic())))
        return not self.stop_requested and (deadline is None or time.monotonic() < deadline)

    def _run_once(
        self, info: JobInfo, context: Context, deadline: float | None
    ) -> tuple[int, bool]:
        import psutil

        from runenv.context import start_process
        from runenv.jobs import isolation

        job_env = {
            settings.JOB_ID_VARIABLE: self.id,
            settings.JOB_ENV_VARIABLE: json.dumps(info.runtime_env),
        }
        self.process = start_process(  # in its own process group: a stop reaches all of it
            context.with_changes(env_vars={**context.env_vars, **job_env}),
            ["/bin/sh", "-c", info.entrypoint],
            base_env=isolation.job_environment(os.environ),  # none of the server's settings
            wrapper=isolation.wrapper(report=not self.isolation_reported),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.isolation_reported = True  # a job without namespaces is told once, not per attempt
        try:
            started: float | None = psutil.Process(self.process.pid).create_time()
        except psutil.Error:
            started = None  # already gone
        self.store.update(self.id, job_pgid=self.process.pid, job_started=started)
        timed_out = False
        stop_sent: float | None = None
        while (code := self.process.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline and not timed_out:
                timed_out = True
                self.say(f"timeout of {info.timeout_s:g} s reached: stopping the job")
                self._signal_group(signal.SIGTERM)
                stop_sent = time.monotonic()
            if self.stop_requested and stop_sent is None:
                stop_sent = time.monotonic()
            if stop_sent is not None and time.monotonic() - stop_sent > STOP_GRACE_SECONDS:
                self._signal_group(signal.SIGKILL)
            time.sleep(POLL_SECONDS)
        self._signal_group(signal.SIGKILL)  # whatever the entrypoint left behind in its group
        return code, timed_out

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        self.say("stop requested: sending SIGTERM to the job")
        if self.setting_up:
            raise _StopDuringSetup  # a running install is killed as on a timeout
        self._signal_group(signal.SIGTERM)

    def _signal_group(self, signum: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signum)

    def _finish(self, status: JobStatus, message: str, code: int | None = None) -> None:
        self.say(f"job {status.value.lower()}: {message}")
        self.store.update(
            self.id, status=status, message=message, exit_code=code, end_time=time.time()
        )


def retry_backoff_seconds(retry: int) -> float:
    """The wait before retry number ``retry`` (1, 2, …): the first wait (a setting) doubling
    up to the cap, less up to a quarter at random (jobs that failed together spread out)."""
    import random

    base = settings.job_retry_backoff_seconds() * 2.0 ** min(retry - 1, 32)
    return min(RETRY_BACKOFF_CAP_SECONDS, base) * random.uniform(0.75, 1.0)


def _record_problem(info: JobInfo) -> str | None:
    """What is wrong with the record's retry and timeout fields, if anything."""
    retries = info.max_retries
    if type(retries) is not int or not 0 <= retries <= MAX_RETRIES_LIMIT:
        return f"max_retries must be an integer from 0 to {MAX_RETRIES_LIMIT}, not {retries!r}"
    timeout = info.timeout_s
    if timeout is not None and (
        type(timeout) not in (int, float) or not 0 < timeout < float("inf")
    ):
        return f"timeout_s must be a positive number of seconds, not {timeout!r}"
    return None


def _failure_message(code: int | None, retries: int) -> str:
    tries = f" (after {retries + 1} attempts)" if retries else ""
    if code is not None and code < 0:
        return f"the entrypoint was killed by signal {-code}{tries}"
    return f"the entrypoint exited with code {code}{tries}"


def main(submission_id: str) -> None:
    from runenv.jobs.isolation import make_undumpable

    make_undumpable()  # jobs of the same user cannot read this process's fds or memory
    store = JobStore()
    path = log_path(submission_id)
    private_directory(path.parent)
    with open_private(path) as log:
        supervisor = Supervisor(submission_id, store, log)
        try:
            supervisor.run()
        except Exception as error:  # a bug: the record must still end
            supervisor.say(f"internal error in the supervisor: {error!r}")
            supervisor._finish(JobStatus.FAILED, f"internal error in the supervisor: {error!r}")
            raise


# Started in the background of a shell (runenv.process.spawn_detached), which ignores SIGINT and
# SIGQUIT for it: put them back first, else the job's entrypoint would inherit them ignored.
_DETACHED = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "signal.signal(signal.SIGQUIT, signal.SIG_DFL)\n"
    "from runenv.jobs.supervisor import main\n"
    "main(sys.argv[1])\n"
)


if __name__ == "__main__":
    main(sys.argv[1])
