"""``runenv serve``: the job API over HTTP (JSON), on the same manager and supervisors.

Paths follow Ray's job submission API (``/api/jobs/...``). It binds 127.0.0.1 unless given a
token; with a token every request must carry ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import codecs
import hmac
import ipaddress
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from runenv import __version__, settings, store_layout
from runenv.errors import RunenvError
from runenv.jobs import logs, supervisor
from runenv.jobs.manager import JobManager
from runenv.jobs.models import JobStatus, Submission
from runenv.jobs.store import DuplicateJobError, JobNotFoundError
from runenv.packaging.archive import verify_package
from runenv.spec import RuntimeEnv
from runenv.storage import Store


def create_app(
    token: str | None = None, manager: JobManager | None = None, host: str = "127.0.0.1"
) -> Starlette:
    api = _JobApi(manager or JobManager(), Store(settings.default_store_uri()))
    routes = [
        Route("/api/version", api.version, methods=["GET"]),
        Route("/api/jobs/", api.submit, methods=["POST"]),
        Route("/api/jobs/", api.list_jobs, methods=["GET"]),
        Route("/api/jobs/{id}", api.info, methods=["GET"]),
        Route("/api/jobs/{id}", api.delete, methods=["DELETE"]),
        Route("/api/jobs/{id}/logs", api.logs, methods=["GET"]),
        Route("/api/jobs/{id}/logs/tail", api.tail, methods=["GET"]),
        Route("/api/jobs/{id}/stop", api.stop, methods=["POST"]),
        Route("/api/packages/{name:path}", api.package_exists, methods=["HEAD"]),
        Route("/api/packages/{name:path}", api.upload, methods=["PUT"]),
    ]
    app = Starlette(routes=routes, exception_handlers={Exception: _error_response})
    app.add_middleware(_BodyLimit, limit=settings.max_request_bytes())  # after the token
    app.add_middleware(_TokenCheck, token=token)
    app.add_middleware(_BrowserGuard, hosts=_allowed_hosts(host))  # first: before the token
    return app


class _JobApi:
    """The endpoints: each runs the manager's (blocking) call on a thread."""

    def __init__(self, jobs: JobManager, store: Store) -> None:
        self.jobs = jobs
        self.store = store

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": __version__, "store_uri": self.store.base_uri})

    async def submit(self, request: Request) -> Response:
        # A browser can send text/plain cross-site without asking first; JSON it cannot.
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return JSONResponse(
                {
                    "error": "a job is submitted as application/json, "
                    f"not {content_type or 'a body without a type'}",
                    "hint": "send the body with Content-Type: application/json",
                },
                status_code=415,
            )
        body = await request.json()
        submission = Submission(
            entrypoint=str(body.get("entrypoint", "")),
            runtime_env=RuntimeEnv.from_dict(body.get("runtime_env") or {}),
            submission_id=body.get("submission_id"),
            metadata=dict(body.get("metadata") or {}),
            max_retries=int(body.get("max_retries") or 0),
            timeout_s=body.get("timeout_s"),
        )
        submission_id = await asyncio.to_thread(self.jobs.submit, submission)
        return JSONResponse({"submission_id": submission_id})

    async def list_jobs(self, request: Request) -> Response:
        wanted = request.query_params.get("status")
        found = await asyncio.to_thread(self.jobs.list, JobStatus(wanted) if wanted else None)
        return JSONResponse([info.to_dict() for info in found])

    async def info(self, request: Request) -> Response:
        found = await asyncio.to_thread(self.jobs.info, request.path_params["id"])
        return JSONResponse(found.to_dict())

    async def logs(self, request: Request) -> Response:
        """Ray's ``{"logs": "<text>"}``, streamed; with ``?offset=N`` (``&limit=M``) a window
        of the log by byte offset, and where the next one starts (see :func:`logs.text_window`)."""
        submission_id = request.path_params["id"]
        await asyncio.to_thread(self.jobs.info, submission_id)  # a 404 before streaming
        path = supervisor.log_path(submission_id)
        query = request.query_params
        if "offset" not in query and "limit" not in query:
            return StreamingResponse(_logs_json(path), media_type="application/json")
        offset = _integer_parameter(query, "offset", 0)
        limit = _integer_parameter(query, "limit", logs.WINDOW_LIMIT_DEFAULT_BYTES)
        text, start, next_offset = await asyncio.to_thread(logs.text_window, path, offset, limit)
        return JSONResponse(
            {"logs": text, "offset": start, "next_offset": next_offset, "size": logs.size(path)}
        )

    async def tail(self, request: Request) -> Response:
        """The log as it grows, from ``?offset=N`` on (default 0; negative: from the end)."""
        submission_id = request.path_params["id"]
        await asyncio.to_thread(self.jobs.info, submission_id)  # a 404 before streaming
        path = supervisor.log_path(submission_id)
        offset = _integer_parameter(request.query_params, "offset", 0)
        start = await asyncio.to_thread(logs.resolved_offset, path, offset)
        return StreamingResponse(_stream(self.jobs, submission_id, start), media_type="text/plain")

    async def stop(self, request: Request) -> Response:
        stopped = await asyncio.to_thread(self.jobs.stop, request.path_params["id"])
        return JSONResponse({"stopped": stopped})

    async def delete(self, request: Request) -> Response:
        await asyncio.to_thread(self.jobs.delete, request.path_params["id"])
        return JSONResponse({"deleted": True})

    async def package_exists(self, request: Request) -> Response:
        name = store_layout.name_from_served_path(request.path_params["name"])
        found = await asyncio.to_thread(self.store.exists, name)
        return Response(status_code=200 if found else 404)

    async def upload(self, request: Request) -> Response:
        """A package, refused over the size limit and kept only if it matches its digest."""
        name = store_layout.name_from_served_path(request.path_params["name"])
        limit = settings.max_package_bytes() * 2  # compressed or not, never beyond this
        with tempfile.TemporaryDirectory(dir=self.store.staging_directory()) as scratch:
            received = Path(scratch) / "upload"
            size = 0
            with open(received, "wb") as sink:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise RunenvError(
                            f"upload of {name} is over {limit} bytes",
                            hint="runenv refuses packages over the size limit",
                        )
                    sink.write(chunk)
            await asyncio.to_thread(verify_package, received, name)
            uri = await asyncio.to_thread(self.store.put_file, received, name, move=True)
        return JSONResponse({"uri": uri})


def _stream(jobs: JobManager, submission_id: str, offset: int = 0) -> AsyncIterator[bytes]:
    """The job's log as it grows, until the job has ended (:func:`logs.follow`)."""

    async def has_ended() -> bool:
        return (await asyncio.to_thread(jobs.status, submission_id)).is_terminal()

    return logs.follow(supervisor.log_path(submission_id), has_ended, offset)


async def _logs_json(path: Path) -> AsyncIterator[bytes]:
    """``{"logs": "..."}`` with the log as it is now, a chunk at a time, each escaped whole
    (an incremental decoder keeps a character split between chunks in one piece)."""
    yield b'{"logs": "'
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    end, offset = logs.size(path), 0
    while offset < end:
        limit = min(logs.CHUNK_BYTES, end - offset)
        chunk = await asyncio.to_thread(logs.read_window, path, offset, limit)
        if not chunk:
            break
        offset += len(chunk)
        yield json.dumps(decoder.decode(chunk))[1:-1].encode()
    yield json.dumps(decoder.decode(b"", final=True))[1:-1].encode() + b'"}'


def _integer_parameter(query: Any, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise RunenvError(
            f"the query parameter {name}={raw!r} is not an integer",
            hint="offset is a byte offset (negative: from the end), limit a byte count",
        ) from None


async def _error_response(request: Request, error: Exception) -> Response:
    if isinstance(error, JobNotFoundError):
        status = 404
    elif isinstance(error, DuplicateJobError):
        status = 409
    elif isinstance(error, (RunenvError, ValueError)):
        status = 400
    else:
        status = 500
    message = error.message if isinstance(error, RunenvError) else str(error)
    hint = error.hint if isinstance(error, RunenvError) else None
    return JSONResponse({"error": message, "hint": hint}, status_code=status)


class _BodyLimit:
    """A request body over the limit is refused (413) as it streams in: by its Content-Length
    at once, else (chunked) when the bytes received pass the limit. What is under the limit is
    held and handed on; package uploads stream to disk under a limit of their own."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/api/packages/"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        too_big = not declared.isdigit() or int(declared) > self.limit
        body = [] if too_big else await self._received(receive)
        if body is None or too_big:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _received(self, receive: Any) -> list[dict[str, Any]] | None:
        """The body's messages, or None once they pass the limit."""
        messages: list[dict[str, Any]] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client went away: the app sees it
            size += len(message.get("body", b""))
            if size > self.limit:
                return None
            if not message.get("more_body", False):
                return messages

    async def _refuse(self, scope: Any, receive: Any, send: Any) -> None:
        from runenv.jobs.models import JSON_BODY_LIMIT_VARIABLE

        megabytes = self.limit / (1024 * 1024)
        response = JSONResponse(
            {
                "error": f"the request body is over the limit of {megabytes:g} MiB",
                "hint": f"send less, or start the server with {JSON_BODY_LIMIT_VARIABLE} "
                "set to more megabytes",
            },
            status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _replay(messages: list[dict[str, Any]], receive: Any) -> Any:
    """A ``receive`` that gives the held messages first, then the connection's own."""
    pending = list(messages)

    async def replayed() -> dict[str, Any]:
        return pending.pop(0) if pending else await receive()

    return replayed


class _TokenCheck:
    """Every request carries the token (when the server has one): 401 otherwise."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.expected is not None:
            headers = dict(scope.get("headers") or [])
            if not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
                response = JSONResponse(
                    {"error": "missing or wrong token", "hint": "pass the server's token"},
                    status_code=401,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _BrowserGuard:
    """What stops a web page in the user's browser: a request whose ``Origin`` is not this
    server's own, or whose ``Host`` is not an address it listens on (DNS rebinding), is refused
    before anything runs. Clients that are not browsers send no Origin."""

    def __init__(self, app: Any, hosts: frozenset[str] | None) -> None:
        self.app = app
        self.hosts = hosts  # None: listening on every address

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            origin = headers.get(b"origin")
            problem = None
            if self.hosts is not None and _hostname(host) not in self.hosts:
                problem = f"Host {host!r} is not an address this server listens on"
            elif origin is not None and origin.decode("latin-1") not in _own_origins(host):
                problem = f"Origin {origin.decode('latin-1')!r} is not this server's"
            if problem is not None:
                response = JSONResponse(
                    {
                        "error": f"refused: {problem}",
                        "hint": "call the API from a client, "
                        "not from a web page, at the address the server listens on",
                    },
                    status_code=403,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _allowed_hosts(listen_host: str) -> frozenset[str] | None:
    try:
        address = ipaddress.ip_address(listen_host)
    except ValueError:
        return frozenset({listen_host.lower(), "localhost", "127.0.0.1", "::1"})
    if address.is_unspecified:
        return None
    loopback = {"localhost", "127.0.0.1", "::1"} if address.is_loopback else set()
    return frozenset({str(address), *loopback})


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:8265
        return host_header[1:].split("]", 1)[0].lower()
    return host_header.rsplit(":", 1)[0].lower() if ":" in host_header else host_header.lower()


def _own_origins(host_header: str) -> tuple[str, str]:
    return (f"http://{host_header}", f"https://{host_header}")


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if token:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise RunenvError(
            f"refusing to listen on {host} without a token: anyone who can reach it could run "
            "commands on this machine",
            hint="pass --token-file FILE (a secret the clients send), or listen on 127.0.0.1",
        )


def read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text().strip()
    except OSError as error:
        raise RunenvError(f"cannot read the token file {path}: {error.strerror}") from None
    if not token:
        raise RunenvError(f"the token file {path} is empty", hint="write a long random secret")
    return token


def serve(host: str, port: int, token: str | None) -> None:
    import uvicorn

    check_bind(host, token)
    uvicorn.run(create_app(token, host=host), host=host, port=port, log_level="warning")
