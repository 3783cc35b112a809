"""Jobs: a command run as a whole in a runtime env, supervised, with records and logs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runenv.jobs.models import JobInfo, JobStatus

__all__ = ["JobClient", "JobInfo", "JobStatus"]


def __getattr__(name: str) -> Any:
    if name == "JobClient":  # loads httpx and the job manager: only when asked for
        from runenv.jobs.client import JobClient

        return JobClient
    raise AttributeError(f"module 'runenv.jobs' has no attribute {name!r}")


if TYPE_CHECKING:
    from runenv.jobs.client import JobClient
