"""What a job is: its status, its record, and the Anyscale-style job config file."""

from __future__ import annotations

import enum
import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any


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


def new_submission_id() -> str:
    return f"runenv-job-{secrets.token_hex(6)}"


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
    stop_requested: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobInfo:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known["status"] = JobStatus(known.get("status", "PENDING"))
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
