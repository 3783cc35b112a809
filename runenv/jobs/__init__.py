"""Jobs: a command run as a whole in a runtime env, supervised, with records and logs."""

from __future__ import annotations

from runenv.jobs.client import JobClient
from runenv.jobs.models import JobInfo, JobStatus

__all__ = ["JobClient", "JobInfo", "JobStatus"]
