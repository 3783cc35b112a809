"""What a job is: its status, its record, and the Anyscale-style job config file."""

from __future__ import annotations

import enum
import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from runenv.errors import RunenvError

if TYPE_CHECKING:
    from runenv.spec import RuntimeEnv


class JobStatus(str, enum.Enum):
    """Ray's job statuses: PENDING → RUNNING → SUCCEEDED | FAILED | STOPPED."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"

    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Submission:
    """What a job is submitted with; the env as given (submitting prepares it)."""

    entrypoint: str
    runtime_env: RuntimeEnv
    submission_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    max_retries: int = 0
    timeout_s: float | None = None
    entrypoint_num_cpus: float | None = None  # CPUs reserved for the entrypoint (Ray only)
    # Ray's entrypoint_* fields as a Ray client sent them to a job server: recorded, not reserved.
    entrypoint_request: dict[str, Any] = field(default_factory=dict)


# A job may ask to be retried at most this often; attempts back off exponentially with jitter,
# from the first delay doubling up to the cap (a failing job never retries in a hot loop).
MAX_RETRIES_LIMIT = 100
RETRY_BACKOFF_FIRST_SECONDS = 1.0
RETRY_BACKOFF_CAP_SECONDS = 300.0
# Bounds of what a JSON request to the job server may carry (uploads have their own limit).
JSON_BODY_LIMIT_VARIABLE = "RUNENV_MAX_REQUEST_MB"
JSON_BODY_LIMIT_DEFAULT_MB = 4

_SUBMISSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def new_submission_id() -> str:
    return f"runenv-job-{secrets.token_hex(6)}"


def check_submission_id(submission_id: str) -> str:
    """A submission id is also a directory name: letters, digits, ``.``, ``_``, ``-`` only."""
    if not _SUBMISSION_ID.match(submission_id):
        raise RunenvError(
            f"invalid submission id {submission_id!r}",
            hint="use letters, digits, '.', '_' and '-' (at most 128), starting with a letter "
            "or digit",
        )
    return submission_id


@dataclass
class JobInfo:
    """The whole record of a job (``runenv job show``)."""

    submission_id: str
    entrypoint: str
    status: JobStatus = JobStatus.PENDING
    message: str = ""
    runtime_env: dict[str, Any] = field(default_factory=dict)
    env_key: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    max_retries: int = 0
    timeout_s: float | None = None
    attempts: int = 0
    exit_code: int | None = None
    created_time: float = 0.0
    start_time: float | None = None
    end_time: float | None = None
    supervisor_pid: int | None = None
    supervisor_started: float | None = None  # the process's start time, against pid reuse
    job_pgid: int | None = None
    job_started: float | None = None  # the entrypoint's start time: its group is the job's
    stop_requested: bool = False
    entrypoint_request: dict[str, Any] = field(default_factory=dict)  # Ray's entrypoint_* fields

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobInfo:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known["status"] = JobStatus(known.get("status", "PENDING"))
        return cls(**known)

    def public_dict(self) -> dict[str, Any]:
        """The record as shown to people and clients: env_vars masked, credentials inside URIs
        redacted (in the env, the entrypoint and the message). The stored record keeps them."""
        from runenv.redact import mask_runtime_env, redact_text

        data = self.to_dict()
        data["runtime_env"] = mask_runtime_env(self.runtime_env)
        data["entrypoint"] = redact_text(self.entrypoint)
        data["message"] = redact_text(self.message)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
