"""Malformed job submissions: a 422 naming the field, nothing recorded, nothing run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jobserver import JobServer, running_job_server

from runenv.jobs.models import MAX_RETRIES_LIMIT


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobServer]:
    with running_job_server(tmp_path_factory.mktemp("validation")) as server:
        yield server


def post(server: JobServer, body: bytes) -> httpx.Response:
    headers = {**server.auth, "Content-Type": "application/json"}
    return httpx.post(f"{server.address}/api/jobs/", content=body, headers=headers, timeout=30)


def job_count(server: JobServer) -> int:
    listing = httpx.get(f"{server.address}/api/jobs/", headers=server.auth, timeout=30)
    return len(listing.json())


def with_entrypoint(marker: Path, **fields: Any) -> bytes:
    return json.dumps({"entrypoint": f"touch {marker}", **fields}).encode()


FIELD_CASES: list[tuple[str, dict[str, Any]]] = [
    ("submission_id", {"submission_id": 5}),
    ("submission_id", {"submission_id": "../precious"}),
    ("job_id", {"submission_id": "a", "job_id": "b"}),
    ("metadata", {"metadata": [1]}),
    ("metadata", {"metadata": {"a": 1}}),
    ("max_retries", {"max_retries": -3}),
    ("max_retries", {"max_retries": MAX_RETRIES_LIMIT + 1}),
    ("max_retries", {"max_retries": "3"}),
    ("max_retries", {"max_retries": True}),
    ("timeout_s", {"timeout_s": "abc"}),
    ("timeout_s", {"timeout_s": 0}),
    ("timeout_s", {"timeout_s": -1.5}),
    ("entrypoint_num_cpus", {"entrypoint_num_cpus": -1}),
    ("entrypoint_resources", {"entrypoint_resources": {"GPU": "many"}}),
    ("max_retry", {"max_retry": 3}),  # unknown: refused, not silently ignored
    ("runtime_env", {"runtime_env": [1]}),
    ("runtime_env.pip", {"runtime_env": {"pip": 5}}),
    ("runtime_env.image_uri", {"runtime_env": {"image_uri": "x"}}),
    ("runtime_env.working_dir", {"runtime_env": {"working_dir": "gcs://_ray_pkg_0a1b.zip"}}),
    ("runtime_env.working_dir", {"runtime_env": {"working_dir": "gcs://_ray_pkg_../x.zip"}}),
]


@pytest.mark.parametrize(("field", "fields"), FIELD_CASES)
def test_a_malformed_field_is_a_422_naming_it(
    server: JobServer, tmp_path: Path, field: str, fields: dict[str, Any]
) -> None:
    marker = tmp_path / "ran"
    before = job_count(server)
    response = post(server, with_entrypoint(marker, **fields))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field and body["error"]
    assert job_count(server) == before and not marker.exists()


@pytest.mark.parametrize(
    "body", [b"[1,2]", b"not json", b"", b'"a string"', b"{", b'{"entrypoint": 5}', b"{}"]
)
def test_a_malformed_body_is_a_422(server: JobServer, body: bytes) -> None:
    before = job_count(server)
    response = post(server, body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] in ("body", "entrypoint")
    assert job_count(server) == before


def test_the_unknown_field_error_lists_the_known_ones(server: JobServer, tmp_path: Path) -> None:
    response = post(server, with_entrypoint(tmp_path / "ran", max_retry=3))
    assert "max_retries" in response.json()["hint"]


def test_other_errors_keep_their_codes(server: JobServer, tmp_path: Path) -> None:
    missing = httpx.get(f"{server.address}/api/jobs/no-such-job", headers=server.auth)
    assert missing.status_code == 404
    first = post(server, with_entrypoint(tmp_path / "ran", submission_id="twice"))
    assert first.status_code == 200
    assert first.json() == {"job_id": "twice", "submission_id": "twice"}
    again = post(server, with_entrypoint(tmp_path / "ran", submission_id="twice"))
    assert again.status_code == 409
    bad_status = httpx.get(f"{server.address}/api/jobs/?status=DONE", headers=server.auth)
    assert bad_status.status_code == 400
