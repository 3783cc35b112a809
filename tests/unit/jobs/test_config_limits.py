"""The job config file applies the job server's ranges to max_retries and timeout_s."""

from __future__ import annotations

from pathlib import Path

import pytest

from runenv.errors import SpecError
from runenv.jobs.config import read_job_config
from runenv.jobs.models import MAX_RETRIES_LIMIT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text("entrypoint: python main.py\n" + text)
    return path


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("max_retries: -3\n", "max_retries"),
        (f"max_retries: {MAX_RETRIES_LIMIT + 1}\n", "max_retries"),
        ("max_retries: '3'\n", "max_retries"),
        ("timeout_s: 0\n", "timeout_s"),
        ("timeout_s: abc\n", "timeout_s"),
    ],
)
def test_out_of_range_values_are_refused(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(SpecError, match=field):
        read_job_config(write(tmp_path, text))


def test_the_limits_themselves_are_accepted(tmp_path: Path) -> None:
    config = read_job_config(write(tmp_path, f"max_retries: {MAX_RETRIES_LIMIT}\ntimeout_s: 0.5\n"))
    assert (config.max_retries, config.timeout_s) == (MAX_RETRIES_LIMIT, 0.5)
