"""``JobClient``: the job SDK, with the method names of Ray's JobSubmissionClient.

Without an address (nor ``RUNENV_ADDRESS``) it runs jobs on this machine directly; with an
``http(s)://`` one it talks to a ``runenv serve`` server; with ``ray+http(s)://HEAD:8265`` to a
Ray cluster's job API (:mod:`runenv.ray.jobs`). Either way the env is *prepared* on the
submitting machine — local code packaged (for a server: into the server's store, or into
``upload_path`` when the env has one) and Python packages locked — so what is submitted is
exactly what runs.

Each way is a :class:`JobBackend` implementation; ``JobClient`` picks one and delegates.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from runenv import store_layout
from runenv.errors import RunenvError, UsageError
from runenv.jobs import wire
from runenv.jobs.models import JobInfo, JobStatus, Submission
from runenv.spec import RuntimeEnv

if TYPE_CHECKING:
    import httpx

    from runenv.envs.setup import StageCallback
    from runenv.jobs.manager import JobManager

ADDRESS_VARIABLE = "RUNENV_ADDRESS"
TOKEN_VARIABLE = "RUNENV_TOKEN"
CA_FILE_VARIABLE = "RUNENV_CA_FILE"


class JobBackend(Protocol):
    """Where jobs run: on this machine, or on a job server."""

    def submit_job(self, submission: Submission, on_stage: StageCallback | None) -> str: ...

    def get_job_info(self, submission_id: str) -> JobInfo: ...

    def get_job_logs(self, submission_id: str) -> str: ...

    def tail_job_logs(self, submission_id: str) -> Iterator[str]: ...

    def stop_job(self, submission_id: str) -> bool: ...

    def delete_job(self, submission_id: str) -> bool: ...

    def list_jobs(self, status: JobStatus | None) -> list[JobInfo]: ...


class JobClient:
    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        ray_mode: str | None = None,
        show_secrets: bool = False,
    ) -> None:
        """``ray_mode`` (plugin, stock, auto; default ``RUNENV_RAY_MODE``) for Ray clusters.
        A job server masks env_vars and URI credentials in the records it answers with, unless
        ``show_secrets`` (for the jobs' owner: any holder of the token)."""
        self.address = _checked_address(
            (address or os.environ.get(ADDRESS_VARIABLE) or "").rstrip("/") or None
        )
        token = token or os.environ.get(TOKEN_VARIABLE)
        if not token and self.address is not None and _is_runenv_server(self.address):
            from runenv.jobs.auth import local_token

            token = local_token(self.address)  # this machine's server: its default token
        self.backend = _backend(self.address, token, ray_mode, show_secrets)

    def submit_job(
        self,
        entrypoint: str,
        runtime_env: RuntimeEnv | dict[str, Any] | None = None,
        submission_id: str | None = None,
        metadata: dict[str, str] | None = None,
        max_retries: int = 0,
        timeout_s: float | None = None,
        on_stage: StageCallback | None = None,
        entrypoint_num_cpus: float | None = None,
    ) -> str:
        if entrypoint_num_cpus is not None and not _is_ray(self.backend):
            raise UsageError(
                "entrypoint_num_cpus is only for jobs on a Ray cluster",
                hint="submit with --address ray+http://HEAD:8265, or drop it",
            )
        env = (
            runtime_env
            if isinstance(runtime_env, RuntimeEnv)
            else RuntimeEnv.from_dict(runtime_env or {})
        )
        submission = Submission(
            entrypoint,
            env,
            submission_id,
            dict(metadata or {}),
            max_retries,
            timeout_s,
            entrypoint_num_cpus,
        )
        return self.backend.submit_job(submission, on_stage)

    def get_job_info(self, submission_id: str) -> JobInfo:
        return self.backend.get_job_info(submission_id)

    def get_job_status(self, submission_id: str) -> JobStatus:
        return self.get_job_info(submission_id).status

    def get_job_logs(self, submission_id: str) -> str:
        return self.backend.get_job_logs(submission_id)

    def tail_job_logs(self, submission_id: str) -> Iterator[str]:
        """The log as it is written, until the job ends."""
        return self.backend.tail_job_logs(submission_id)

    def stop_job(self, submission_id: str) -> bool:
        return self.backend.stop_job(submission_id)

    def delete_job(self, submission_id: str) -> bool:
        return self.backend.delete_job(submission_id)

    def list_jobs(self, status: JobStatus | None = None) -> list[JobInfo]:
        return self.backend.list_jobs(status)


def _checked_address(address: str | None) -> str | None:
    """The address as given, once it parses as a URL with a host (a UsageError otherwise)."""
    if address is None:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(address)
        valid = bool(parts.scheme and parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number
        valid = False
    if not valid:
        raise UsageError(
            f"{address!r} is not a job server address",
            hint="--address / RUNENV_ADDRESS: http(s)://HOST:PORT for `runenv serve`, "
            "ray+http(s)://HEAD:8265 for a Ray cluster",
        )
    return address


def _backend(
    address: str | None, token: str | None, ray_mode: str | None, show_secrets: bool
) -> JobBackend:
    from runenv.ray.jobs import RayJobBackend, is_ray_address  # no Ray import until used

    if address is None:
        return LocalBackend()
    if is_ray_address(address):
        return RayJobBackend(address, token, ray_mode)
    if address.startswith("ray://"):
        raise UsageError(
            f"{address} is a Ray client address; jobs go through the head's job API",
            hint="--address ray+http://HEAD:8265 (the dashboard's port)",
        )
    return HttpBackend(address, token, show_secrets)


def _is_runenv_server(address: str) -> bool:
    return address.startswith(("http://", "https://"))


def _is_ray(backend: JobBackend) -> bool:
    from runenv.ray.jobs import RayJobBackend

    return isinstance(backend, RayJobBackend)


class LocalBackend:
    """Jobs on this machine, through its :class:`JobManager` (which prepares the env)."""

    def __init__(self, manager: JobManager | None = None) -> None:
        from runenv.jobs.manager import JobManager

        self.manager = manager or JobManager()

    def submit_job(self, submission: Submission, on_stage: StageCallback | None) -> str:
        return self.manager.submit(submission, on_stage)

    def get_job_info(self, submission_id: str) -> JobInfo:
        return self.manager.info(submission_id)

    def get_job_logs(self, submission_id: str) -> str:
        return self.manager.logs(submission_id)

    def tail_job_logs(self, submission_id: str) -> Iterator[str]:
        return self.manager.tail(submission_id)

    def stop_job(self, submission_id: str) -> bool:
        return self.manager.stop(submission_id)

    def delete_job(self, submission_id: str) -> bool:
        self.manager.delete(submission_id)
        return True

    def list_jobs(self, status: JobStatus | None) -> list[JobInfo]:
        return self.manager.list(status)


class HttpBackend:
    """Jobs on a ``runenv serve`` server, over its HTTP JSON API."""

    def __init__(self, address: str, token: str | None, show_secrets: bool = False) -> None:
        import httpx

        self.address = address
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(
            base_url=address, headers=headers, timeout=httpx.Timeout(60), verify=_trusted()
        )
        self._secrets_param = {"show_secrets": "1"} if show_secrets else {}

    def submit_job(self, submission: Submission, on_stage: StageCallback | None) -> str:
        from runenv.materialize import prepare

        env = submission.runtime_env
        # Packaged and locked here; the server runs the prepared env as it is.
        store = None if env.upload_path else _ServerStore(self)
        prepared = prepare(env, on_stage=on_stage, store=store)
        body = {
            "entrypoint": submission.entrypoint,
            "runtime_env": prepared.to_dict(),
            "submission_id": submission.submission_id,
            "metadata": submission.metadata,
            "max_retries": submission.max_retries,
            "timeout_s": submission.timeout_s,
        }
        return str(self.call("POST", "/api/jobs/", json=body)["submission_id"])

    def get_job_info(self, submission_id: str) -> JobInfo:
        path = f"/api/jobs/{submission_id}"
        return wire.from_wire(self.call("GET", path, params=self._secrets_param))

    def get_job_logs(self, submission_id: str) -> str:
        return str(self.call("GET", f"/api/jobs/{submission_id}/logs")["logs"])

    def tail_job_logs(self, submission_id: str) -> Iterator[str]:
        import httpx

        path = f"/api/jobs/{submission_id}/logs/tail"
        try:
            with self.client.stream("GET", path, timeout=httpx.Timeout(60, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    _checked(response)
                yield from response.iter_text()
        except httpx.HTTPError as error:
            raise RunenvError(f"lost the job server at {self.address}: {error}") from None

    def stop_job(self, submission_id: str) -> bool:
        return bool(self.call("POST", f"/api/jobs/{submission_id}/stop")["stopped"])

    def delete_job(self, submission_id: str) -> bool:
        return bool(self.call("DELETE", f"/api/jobs/{submission_id}")["deleted"])

    def list_jobs(self, status: JobStatus | None) -> list[JobInfo]:
        params = {"status": status.value} if status else {}
        answer = self.call("GET", "/api/jobs/", params={**params, **self._secrets_param})
        return [wire.from_wire(item) for item in answer]

    def call(self, method: str, path: str, **options: Any) -> Any:
        return _checked(self.request(method, path, **options))

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        import httpx

        try:
            return self.client.request(method, path, **options)
        except httpx.HTTPError as error:
            raise RunenvError(
                f"cannot reach the job server at {self.address}: {error}",
                hint="start it with `runenv serve`, or check --address / RUNENV_ADDRESS",
            ) from None


def _trusted() -> Any:
    """What an https:// server's certificate is checked against: only the certificates in
    ``RUNENV_CA_FILE`` (PEM, e.g. a self-signed server's own) when set, else httpx's default
    (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set, else certifi's bundle)."""
    import ssl

    ca_file = os.environ.get(CA_FILE_VARIABLE)
    if not ca_file:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as error:
        raise RunenvError(
            f"cannot use {CA_FILE_VARIABLE}={ca_file}: {error}",
            hint="a PEM file of the certificates to trust (a self-signed server's certificate)",
        ) from None


class _ServerStore:
    """The server's package store, as packaging sees a store: HEAD to check, PUT to add."""

    is_local = False

    def __init__(self, server: HttpBackend) -> None:
        self.server = server

    @cached_property
    def base_uri(self) -> str:
        """Asked of the server when first needed: an env without local code never needs it."""
        return str(self.server.call("GET", "/api/version")["store_uri"])

    def uri(self, name: str) -> str:
        return f"{self.base_uri}/{name}"

    def staging_directory(self) -> Path | None:
        return None

    def exists(self, name: str) -> bool:
        response = self.server.request("HEAD", self._path(name))
        if response.status_code in (200, 404):
            return response.status_code == 200
        return bool(_checked(response))

    def put_file(self, local_path: Path, name: str, *, move: bool = False) -> str:
        with open(local_path, "rb") as body:
            self.server.call("PUT", self._path(name), content=body)
        return self.uri(name)

    def _path(self, name: str) -> str:
        return f"/api/packages/{store_layout.served_path(name)}"


def _checked(response: httpx.Response) -> Any:
    if response.status_code < 400:
        return response.json() if response.content else None
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text}
    raise RunenvError(str(body.get("error") or response.reason_phrase), hint=body.get("hint"))
