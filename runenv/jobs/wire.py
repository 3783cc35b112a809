"""A job's record on the wire: Ray's JobDetails, plus runenv's own fields; and back.

Ray's ``JobSubmissionClient`` builds a ``JobDetails`` from each answer of ``GET /api/jobs/{id}``
and from each item of ``GET /api/jobs/`` (a JSON array): ``type``, ``status`` and ``entrypoint``
are required, the times are milliseconds, and keys it does not know are ignored. runenv's own
client (:class:`runenv.jobs.client.HttpBackend`) reads the same answer back into a
:class:`JobInfo`, whose times are seconds.
"""

from __future__ import annotations

import functools
import socket
from typing import Any

from runenv.jobs.models import JobInfo, JobStatus

JOB_TYPE = "SUBMISSION"  # Ray's JobType for a job submitted through the job API
# Ray's JobErrorType values for the failures runenv can tell apart.
ENTRYPOINT_ERROR = "JOB_ENTRYPOINT_COMMAND_ERROR"  # the entrypoint exited non-zero
SUPERVISOR_ERROR = "JOB_SUPERVISOR_ACTOR_DIED"  # it never ran, timed out, or was lost

# Ray's field names for what runenv records under other names or units.
_RAY_FIELDS = ("type", "job_id", "driver_info", "error_type", "driver_exit_code")
_MS_FIELDS = ("start_time", "end_time")
# The supervisor's bookkeeping: of no use to a client (driver_info gives the entrypoint's pid).
_PRIVATE_FIELDS = ("supervisor_pid", "supervisor_started", "job_started", "job_pgid")


def to_wire(info: JobInfo, show_secrets: bool = False) -> dict[str, Any]:
    """What ``GET /api/jobs/{id}`` answers for ``info``: env_vars masked and credentials inside
    URIs redacted (:meth:`JobInfo.public_dict`) unless ``show_secrets``."""
    data = info.to_dict() if show_secrets else info.public_dict()
    for name in _PRIVATE_FIELDS:
        data.pop(name, None)
    request = data.pop("entrypoint_request", None) or {}
    return {
        **data,
        **request,
        "type": JOB_TYPE,
        "job_id": None,  # no Ray job: runenv runs the entrypoint itself
        "submission_id": info.submission_id,
        "driver_info": _driver_info(info),
        "status": info.status.value,
        "message": data["message"] or None,
        "error_type": _error_type(info),
        "start_time": _milliseconds(info.start_time),
        "end_time": _milliseconds(info.end_time),
        "driver_exit_code": info.exit_code,
    }


def from_wire(data: dict[str, Any]) -> JobInfo:
    """The :class:`JobInfo` a ``to_wire`` answer stands for (times back in seconds)."""
    known = {name: value for name, value in data.items() if name not in _RAY_FIELDS}
    for name in _MS_FIELDS:
        value = known.get(name)
        known[name] = None if value is None else value / 1000
    known["message"] = known.get("message") or ""
    known["entrypoint_request"] = {
        name: value
        for name, value in data.items()
        if name.startswith("entrypoint_") and value is not None
    }
    return JobInfo.from_dict(known)


def _milliseconds(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _error_type(info: JobInfo) -> str | None:
    if info.status != JobStatus.FAILED:
        return None
    return ENTRYPOINT_ERROR if info.exit_code not in (None, 0) else SUPERVISOR_ERROR


def _driver_info(info: JobInfo) -> dict[str, str] | None:
    """Ray's driver: here the entrypoint's process (its group leader), once it has started."""
    if info.job_pgid is None:
        return None
    return {"id": info.submission_id, "node_ip_address": _node_address(), "pid": str(info.job_pgid)}


@functools.cache
def _node_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
