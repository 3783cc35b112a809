"""``JobClient``: the job SDK, with the method names of Ray's JobSubmissionClient.

Without an address (nor ``RUNENV_ADDRESS``) it runs jobs on this machine directly; with one it
talks to a ``runenv serve`` server, uploading local code to the server's package store first
(or to ``upload_path`` when the env has one).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from runenv.envs.setup import StageCallback
from runenv.errors import RunenvError
from runenv.jobs.manager import JobManager
from runenv.jobs.models import JobInfo, JobStatus
from runenv.spec import RuntimeEnv
from runenv.upload import make_portable

ADDRESS_VARIABLE = "RUNENV_ADDRESS"
TOKEN_VARIABLE = "RUNENV_TOKEN"


class JobClient:
    def __init__(self, address: str | None = None, token: str | None = None) -> None:
        self.address = (address or os.environ.get(ADDRESS_VARIABLE) or "").rstrip("/") or None
        token = token or os.environ.get(TOKEN_VARIABLE)
        self._local = JobManager() if self.address is None else None
        self._http = _Http(self.address, token) if self.address is not None else None

    def submit_job(
        self,
        entrypoint: str,
        runtime_env: RuntimeEnv | dict[str, Any] | None = None,
        submission_id: str | None = None,
        metadata: dict[str, str] | None = None,
        max_retries: int = 0,
        timeout_s: float | None = None,
        on_stage: StageCallback | None = None,
    ) -> str:
        env = (
            runtime_env
            if isinstance(runtime_env, RuntimeEnv)
            else RuntimeEnv.from_dict(runtime_env or {})
        )
        if self._local is not None:
            return self._local.submit(
                entrypoint, env, submission_id, metadata, max_retries, timeout_s, on_stage
            )
        assert self._http is not None
        portable = self._http.upload_code(env, on_stage)
        body = {
            "entrypoint": entrypoint,
            "runtime_env": portable.to_dict(),
            "submission_id": submission_id,
            "metadata": metadata or {},
            "max_retries": max_retries,
            "timeout_s": timeout_s,
        }
        return str(self._http.call("POST", "/api/jobs/", json=body)["submission_id"])

    def get_job_info(self, submission_id: str) -> JobInfo:
        if self._local is not None:
            return self._local.info(submission_id)
        assert self._http is not None
        return JobInfo.from_dict(self._http.call("GET", f"/api/jobs/{submission_id}"))

    def get_job_status(self, submission_id: str) -> JobStatus:
        return self.get_job_info(submission_id).status

    def get_job_logs(self, submission_id: str) -> str:
        if self._local is not None:
            return self._local.logs(submission_id)
        assert self._http is not None
        return str(self._http.call("GET", f"/api/jobs/{submission_id}/logs")["logs"])

    def tail_job_logs(self, submission_id: str) -> Iterator[str]:
        """The log as it is written, until the job ends."""
        if self._local is not None:
            yield from self._local.tail(submission_id)
            return
        assert self._http is not None
        yield from self._http.stream(f"/api/jobs/{submission_id}/logs/tail")

    def stop_job(self, submission_id: str) -> bool:
        if self._local is not None:
            return self._local.stop(submission_id)
        assert self._http is not None
        return bool(self._http.call("POST", f"/api/jobs/{submission_id}/stop")["stopped"])

    def delete_job(self, submission_id: str) -> bool:
        if self._local is not None:
            self._local.delete(submission_id)
            return True
        assert self._http is not None
        return bool(self._http.call("DELETE", f"/api/jobs/{submission_id}")["deleted"])

    def list_jobs(self, status: JobStatus | None = None) -> list[JobInfo]:
        if self._local is not None:
            return self._local.list(status)
        assert self._http is not None
        params = {"status": status.value} if status else {}
        return [
            JobInfo.from_dict(item) for item in self._http.call("GET", "/api/jobs/", params=params)
        ]


class _Http:
    def __init__(self, address: str, token: str | None) -> None:
        self.address = address
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=address, headers=headers, timeout=httpx.Timeout(60))

    def call(self, method: str, path: str, **options: Any) -> Any:
        try:
            response = self.client.request(method, path, **options)
        except httpx.HTTPError as error:
            raise RunenvError(
                f"cannot reach the job server at {self.address}: {error}",
                hint="start it with `runenv serve`, or check --address / RUNENV_ADDRESS",
            ) from None
        return _checked(response)

    def stream(self, path: str) -> Iterator[str]:
        try:
            with self.client.stream("GET", path, timeout=httpx.Timeout(60, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    _checked(response)
                yield from response.iter_text()
        except httpx.HTTPError as error:
            raise RunenvError(f"lost the job server at {self.address}: {error}") from None

    def upload_code(self, env: RuntimeEnv, on_stage: StageCallback | None) -> RuntimeEnv:
        """The env with its local code in the server's store (or in its upload_path)."""
        report = on_stage or (lambda stage, detail: None)
        if env.upload_path:
            return make_portable(env, lambda path, package: report("package", path))
        return make_portable(
            env, lambda path, package: report("upload", path), store=_ServerStore(self)
        )


class _ServerStore:
    """The server's package store, as ``make_portable`` sees a store: HEAD to check, PUT to add."""

    is_local = False

    def __init__(self, http: _Http) -> None:
        self.http = http
        self.base_uri = str(http.call("GET", "/api/version")["store_uri"])

    def uri(self, name: str) -> str:
        return f"{self.base_uri}/{name}"

    def staging_directory(self) -> Path | None:
        return None

    def exists(self, name: str) -> bool:
        response = self.http.client.head(f"/api/packages/{name.removeprefix('pkgs/')}")
        if response.status_code in (200, 404):
            return response.status_code == 200
        return bool(_checked(response))

    def put_file(self, local_path: Path, name: str, *, move: bool = False) -> str:
        with open(local_path, "rb") as body:
            self.http.call("PUT", f"/api/packages/{name.removeprefix('pkgs/')}", content=body)
        return self.uri(name)


def _checked(response: httpx.Response) -> Any:
    if response.status_code < 400:
        return response.json() if response.content else None
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text}
    raise RunenvError(str(body.get("error") or response.reason_phrase), hint=body.get("hint"))
