"""The wait between a failed job's attempts, and the record fields the supervisor checks."""

from __future__ import annotations

import pytest

from runenv.errors import RunenvError
from runenv.jobs import supervisor
from runenv.jobs.models import MAX_RETRIES_LIMIT, RETRY_BACKOFF_CAP_SECONDS, JobInfo


def test_the_wait_doubles_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNENV_JOB_RETRY_BACKOFF_S", "2")
    for retry, base in [(1, 2.0), (2, 4.0), (3, 8.0), (50, RETRY_BACKOFF_CAP_SECONDS)]:
        waits = [supervisor.retry_backoff_seconds(retry) for _ in range(200)]
        assert base * 0.75 <= min(waits) and max(waits) <= base
        assert max(waits) - min(waits) > base * 0.1  # jittered


def test_an_invalid_backoff_setting_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNENV_JOB_RETRY_BACKOFF_S", "0")
    with pytest.raises(RunenvError, match="RUNENV_JOB_RETRY_BACKOFF_S"):
        supervisor.retry_backoff_seconds(1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_retries", -3),
        ("max_retries", MAX_RETRIES_LIMIT + 1),
        ("max_retries", "2"),
        ("max_retries", True),
        ("timeout_s", "abc"),
        ("timeout_s", 0),
        ("timeout_s", float("nan")),
    ],
)
def test_a_bad_record_field_is_named(field: str, value: object) -> None:
    info = JobInfo(submission_id="bad", entrypoint="true")
    setattr(info, field, value)
    assert field in (supervisor._record_problem(info) or "")


def test_a_good_record_has_no_problem() -> None:
    info = JobInfo(submission_id="good", entrypoint="true", max_retries=3, timeout_s=2)
    assert supervisor._record_problem(info) is None
