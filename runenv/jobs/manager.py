"""Jobs on this machine: submit (prepare the env, record, start a supervisor), read, stop, delete.

Used directly by the CLI without ``--address``, and by the HTTP server. A job whose supervisor
has died is marked FAILED ("supervisor lost") when it is next read, and what is left of its
process group is killed: no record stays RUNNING for ever.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runenv.errors import RunenvError
from runenv.jobs import logs as job_logs
from runenv.jobs import supervisor
from runenv.jobs.models import JobInfo, JobStatus, Submission, new_submission_id
from runenv.jobs.store import JobStore

# The env's setup loads on use: `runenv job submit --no-wait` of a recorded env needs none of it.
if TYPE_CHECKING:
    from runenv.envs.setup import StageCallback

# A record whose supervisor has not reported its pid yet is only "lost" after this long.
SPAWN_GRACE_SECONDS = 30.0


class JobManager:
    def __init__(self, store: JobStore | None = None) -> None:
        self.store = store or JobStore()

    def submit(self, submission: Submission, on_stage: StageCallback | None = None) -> str:
        """Record the job and start its supervisor; returns the submission id at once."""
        from runenv.materialize import prepare

        _check_entrypoint(submission.entrypoint)
        # Local code packaged, packages locked: what the job will run, wherever it runs. An env
        # prepared by a remote client already is kept as it is (its lock is not resolved again).
        prepared = prepare(submission.runtime_env, on_stage=on_stage)
        return self.submit_prepared(
            submission.entrypoint,
            prepared.to_dict(),
            prepared.key,
            submission.submission_id,
            submission.metadata,
            submission.max_retries,
            submission.timeout_s,
            submission.entrypoint_request,
        )

    def submit_prepared(
        self,
        entrypoint: str,
        runtime_env: dict[str, Any],
        env_key: str,
        submission_id: str | None = None,
        metadata: dict[str, str] | None = None,
        max_retries: int = 0,
        timeout_s: float | None = None,
        entrypoint_request: dict[str, Any] | None = None,
    ) -> str:
        """Submit with an env :func:`runenv.materialize.prepare` made (its dict and key)."""
        _check_entrypoint(entrypoint)
        info = JobInfo(
            submission_id=submission_id or new_submission_id(),
            entrypoint=entrypoint,
            runtime_env=runtime_env,
            env_key=env_key,
            metadata=dict(metadata or {}),
            max_retries=max_retries,
            timeout_s=timeout_s,
            entrypoint_request=dict(entrypoint_request or {}),
        )
        self.store.insert(info)
        supervisor.spawn(info.submission_id)
        return info.submission_id

    def info(self, submission_id: str) -> JobInfo:
        return self._checked(self.store.get(submission_id))

    def status(self, submission_id: str) -> JobStatus:
        return self.info(submission_id).status

    def list(self, status: JobStatus | None = None) -> list[JobInfo]:
        checked = [self._checked(info) for info in self.store.list()]
        return [info for info in checked if status is None or info.status == status]

    def logs(self, submission_id: str) -> str:
        """The whole log as text: for logs known to be small (see :meth:`log_text`)."""
        return "".join(self.log_text(submission_id))

    def log_text(self, submission_id: str) -> Iterator[str]:
        """The log as it is now, as text in chunks: never read whole."""
        self.store.get(submission_id)  # a clear error for an unknown id
        path = supervisor.log_path(submission_id)
        return job_logs.decoded(job_logs.iter_chunks(path, end=job_logs.size(path)))

    def read_log(self, submission_id: str, offset: int, limit: int = job_logs.CHUNK_BYTES) -> bytes:
        """At most ``limit`` bytes of the job's log from byte ``offset`` on."""
        return job_logs.read_window(supervisor.log_path(submission_id), offset, limit)

    def tail(self, submission_id: str) -> Iterator[str]:
        """The log as it grows, until the job has ended and everything is read."""
        self.store.get(submission_id)
        chunks = job_logs.follow_blocking(
            supervisor.log_path(submission_id),
            lambda: self.status(submission_id).is_terminal(),
        )
        return job_logs.decoded(chunks)

    def stop(self, submission_id: str) -> bool:
        """Ask the job to stop; False when it had already ended.

        The request is recorded first, so a supervisor that starts (or finishes setting up)
        right now sees it; then the running supervisor is signalled.
        """
        if self.info(submission_id).status.is_terminal():
            return False
        self.store.update(submission_id, stop_requested=True)
        info = self.store.get(submission_id)
        if info.status.is_terminal():
            return False
        if info.supervisor_pid is None and self.store.update(
            submission_id,
            {JobStatus.PENDING},
            status=JobStatus.STOPPED,
            message="stopped before it started",
            end_time=time.time(),
        ):
            return True
        if _alive(info):
            with contextlib.suppress(ProcessLookupError):  # it may have just ended
                os.kill(info.supervisor_pid or 0, signal.SIGTERM)
        return True

    def delete(self, submission_id: str) -> None:
        info = self.info(submission_id)
        if not info.status.is_terminal():
            raise RunenvError(
                f"job {submission_id} is {info.status.value}: only ended jobs can be deleted",
                hint=f"stop it first: runenv job stop {submission_id}",
            )
        self.store.delete(submission_id)
        import shutil

        shutil.rmtree(supervisor.job_directory(submission_id), ignore_errors=True)

    def _checked(self, info: JobInfo) -> JobInfo:
        """The record, marked FAILED if its supervisor is gone without saying how it ended."""
        if info.status.is_terminal() or _alive(info):
            return info
        if info.supervisor_pid is None and (
            supervisor.spawned_alive(info.submission_id)
            or time.time() - info.created_time < SPAWN_GRACE_SECONDS
        ):
            return info  # being submitted, or its supervisor is still starting
        latest = self.store.get(info.submission_id)  # it may have ended since the first read
        if latest.status.is_terminal():
            return latest
        if latest.job_pgid and latest.job_started:
            _kill_job_processes(latest.job_pgid, latest.job_started)
        self.store.update(
            info.submission_id,
            {JobStatus.PENDING, JobStatus.RUNNING},
            status=JobStatus.FAILED,
            message="supervisor lost",
            end_time=time.time(),
        )
        return self.store.get(info.submission_id)


def _check_entrypoint(entrypoint: str) -> None:
    if not entrypoint.strip():
        raise RunenvError("the entrypoint is empty", hint="runenv job submit -- python main.py")


def _alive(info: JobInfo) -> bool:
    """Whether the job's supervisor process is still running (the same process, not a reuse)."""
    if info.supervisor_pid is None:
        return False
    import psutil  # on use: submitting a job needn't load it

    try:
        process = psutil.Process(info.supervisor_pid)
        same = abs(process.create_time() - (info.supervisor_started or 0)) < 0.5
        return same and bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _kill_job_processes(pgid: int, started: float) -> None:
    """Kill what is left of a job's process group — only processes of that group that started
    with or after the job, so a recycled group number never reaches anyone else."""
    import psutil

    for process in psutil.process_iter(["create_time"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["create_time"] >= started - 0.5:
                process.kill()
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
