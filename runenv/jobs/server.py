"""``runenv serve``: the job API over HTTP (JSON), on the same manager and supervisors.

It speaks Ray's job REST API (as of :data:`RAY_API_VERSION`), so that Ray's own
``ray job ...`` CLI and ``JobSubmissionClient`` work against it unchanged: the version check,
package uploads, submissions in Ray's form, job details in Ray's shape (:mod:`runenv.jobs.wire`),
and the log tail over a websocket. runenv's own client uses the same API.

Every request carries the server's token (see :class:`_TokenCheck`): one it was given
(``--token-file``) or one it made under ``RUNENV_HOME`` (:mod:`runenv.jobs.auth`); only
``--unsafe-no-token``, on loopback, goes without.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import errno
import hmac
import ipaddress
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from runenv import __version__, settings, store_layout
from runenv.errors import RunenvError
from runenv.jobs import auth, isolation, logs, supervisor, wire
from runenv.jobs.auth import is_loopback, read_token
from runenv.jobs.manager import JobManager
from runenv.jobs.models import JobStatus, Submission
from runenv.jobs.requests import InvalidRequest, SubmitRequest, parse_submit
from runenv.jobs.store import DuplicateJobError, JobNotFoundError
from runenv.packaging.archive import verify_foreign_zip, verify_package
from runenv.ray import translate
from runenv.redact import redact_text
from runenv.spec import RuntimeEnv
from runenv.storage import Store

# The Ray release whose job REST API this server speaks: Ray's clients check ``ray_version``
# before using newer fields (2.2 for entrypoint_num_cpus, 2.8 for entrypoint_memory).
RAY_API_VERSION = "2.60.0"
# Ray's job API version (its dashboard's CURRENT_VERSION): Ray's CLI tails logs when it is > 0.
RAY_JOB_API_VERSION = "4"
# Keys Ray's client stamps on every runtime_env: informational, not part of the env.
_RAY_STAMPS = ("_ray_commit",)
_RAY_PACKAGES = f"/api/packages/{store_layout.RAY_PROTOCOL}"


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
        WebSocketRoute("/api/jobs/{id}/logs/tail", api.tail_websocket),
        Route("/api/jobs/{id}/stop", api.stop, methods=["POST"]),
        # Ray's client: GET to ask, PUT to add (before runenv's paths: a digest is never "gcs").
        Route(f"{_RAY_PACKAGES}/{{package}}", api.ray_package_exists, methods=["GET"]),
        Route(f"{_RAY_PACKAGES}/{{package}}", api.ray_upload, methods=["PUT"]),
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
        self.session_name = f"runenv_{time.strftime('%Y-%m-%d_%H-%M-%S')}_{os.getpid()}"

    async def version(self, request: Request) -> Response:
        return JSONResponse(
            {
                "version": RAY_JOB_API_VERSION,
                "ray_version": RAY_API_VERSION,
                "ray_commit": f"runenv-{__version__}",  # no Ray build: say what answers
                "session_name": self.session_name,
                "runenv_version": __version__,
                "store_uri": redact_text(self.store.base_uri),
            }
        )

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
        body = parse_submit(await request.body())
        runtime_env = await asyncio.to_thread(self.runtime_env_of, body)
        submission = Submission(
            entrypoint=body.entrypoint,
            runtime_env=runtime_env,
            submission_id=body.submission_id or body.job_id,
            metadata=dict(body.metadata or {}),
            max_retries=body.max_retries,
            timeout_s=body.timeout_s,
            entrypoint_request=body.entrypoint_request(),
        )
        submission_id = await asyncio.to_thread(self.jobs.submit, submission)
        # Exactly Ray's JobSubmitResponse (its client builds a dataclass from it).
        return JSONResponse({"job_id": submission_id, "submission_id": submission_id})

    def runtime_env_of(self, body: SubmitRequest) -> RuntimeEnv:
        """The env of a submission, from runenv's form or Ray's (its ``gcs://`` packages being
        the ones its client uploaded here)."""
        data = {
            name: value
            for name, value in (body.runtime_env or {}).items()
            if name not in _RAY_STAMPS
        }
        if isinstance(data.get("working_dir"), str):
            data["working_dir"] = self.ray_package_uri(data["working_dir"], "working_dir")
        if isinstance(data.get("py_modules"), list):
            data["py_modules"] = [
                self.ray_package_uri(module, f"py_modules.{index}")
                for index, module in enumerate(data["py_modules"])
            ]
        try:
            return translate.from_ray(data) or RuntimeEnv.from_dict(data)
        except (RunenvError, ValueError, TypeError, KeyError, AttributeError) as error:
            message = error.message if isinstance(error, RunenvError) else str(error)
            hint = error.hint if isinstance(error, RunenvError) else None
            path = message.split(":", 1)[0]
            field = path if path.startswith("runtime_env.") else "runtime_env"
            raise InvalidRequest(message, field, hint=hint) from None

    def ray_package_uri(self, uri: Any, field: str) -> Any:
        """A ``gcs://_ray_pkg_….zip`` URI as the URI of that package in this server's store."""
        if not isinstance(uri, str) or not translate.is_ray_package(uri):
            return uri
        try:
            name = store_layout.ray_package_name(*uri.split("://", 1))
        except RunenvError as error:
            raise InvalidRequest(error.message, f"runtime_env.{field}", error.hint) from None
        if not self.store.exists(name):
            raise InvalidRequest(
                f"{uri} was not uploaded to this server",
                f"runtime_env.{field}",
                hint=f"upload it first: PUT {_RAY_PACKAGES}/{name.split('/', 1)[1]}",
            )
        return self.store.uri(name)

    async def list_jobs(self, request: Request) -> Response:
        wanted = request.query_params.get("status")
        found = await asyncio.to_thread(self.jobs.list, JobStatus(wanted) if wanted else None)
        shown = _shows_secrets(request)
        return JSONResponse([wire.to_wire(info, shown) for info in found])

    async def info(self, request: Request) -> Response:
        found = await asyncio.to_thread(self.jobs.info, request.path_params["id"])
        return JSONResponse(wire.to_wire(found, _shows_secrets(request)))

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

    async def tail_websocket(self, websocket: WebSocket) -> None:
        """Ray's ``tail_job_logs``: the log as text frames, then a normal close at the end."""
        submission_id = websocket.path_params["id"]
        try:
            await asyncio.to_thread(self.jobs.info, submission_id)
        except JobNotFoundError as error:
            await websocket.send_denial_response(
                JSONResponse({"error": error.message, "hint": error.hint}, status_code=404)
            )
            return
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            async for chunk in _stream(self.jobs, submission_id):
                await websocket.send_text(chunk.decode("utf-8", errors="replace"))
            await websocket.close()

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
        with self.received(name) as received:
            await _receive(request, received, name)
            await asyncio.to_thread(verify_package, received, name)
            uri = await asyncio.to_thread(self.store.put_file, received, name, move=True)
        return JSONResponse({"uri": uri})

    async def ray_package_exists(self, request: Request) -> Response:
        name = _ray_package_name(request)
        found = await asyncio.to_thread(self.store.exists, name)
        return Response(status_code=200 if found else 404)

    async def ray_upload(self, request: Request) -> Response:
        """A package from Ray's client: its name is Ray's hash, which runenv cannot check, so it
        is kept apart (``ray-pkgs/``), once checked to be a zip that unpacks safely."""
        name = _ray_package_name(request)
        with self.received(name) as received:
            await _receive(request, received, name)
            await asyncio.to_thread(verify_foreign_zip, received, name)
            await asyncio.to_thread(self.store.put_file, received, name, move=True)
        return Response(status_code=200)

    @contextlib.contextmanager
    def received(self, name: str) -> Iterator[Path]:
        """A scratch file for an upload, beside the store when it is local (then kept by a
        rename)."""
        with tempfile.TemporaryDirectory(dir=self.store.staging_directory()) as scratch:
            yield Path(scratch) / "upload"


def _ray_package_name(request: Request) -> str:
    return store_layout.ray_package_name(store_layout.RAY_PROTOCOL, request.path_params["package"])


async def _receive(request: Request, received: Path, name: str) -> None:
    """The request's body into ``received``, refused once it is over the size limit."""
    limit = settings.max_package_bytes() * 2  # compressed or not, never beyond this
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


def _shows_secrets(request: Request) -> bool:
    """``?show_secrets=1``: the owner (any token holder) asks for env_vars in clear."""
    return request.query_params.get("show_secrets", "").lower() in ("1", "true", "yes")


async def _error_response(request: Request, error: Exception) -> Response:
    if isinstance(error, InvalidRequest):
        return JSONResponse(
            {"error": error.message, "hint": error.hint, "field": error.field}, status_code=422
        )
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
        await _refuse(
            (scope, receive, send),
            413,
            f"the request body is over the limit of {megabytes:g} MiB",
            f"send less, or start the server with {JSON_BODY_LIMIT_VARIABLE} set to more megabytes",
            headers={"Connection": "close"},
        )


def _replay(messages: list[dict[str, Any]], receive: Any) -> Any:
    """A ``receive`` that gives the held messages first, then the connection's own."""
    pending = list(messages)

    async def replayed() -> dict[str, Any]:
        return pending.pop(0) if pending else await receive()

    return replayed


class _TokenCheck:
    """Every request carries the token (when the server has one): 401 otherwise — websockets
    (a log tail) too, refused before they are accepted.

    In the forms Ray's job clients send it (Ray 2.60, ``RAY_AUTH_MODE=token`` with
    ``RAY_AUTH_TOKEN`` or a token file): ``Authorization: Bearer <token>`` on every request,
    the websocket's opening one included, or ``X-Ray-Authorization: Bearer <token>`` (what
    proxies in front of Ray, e.g. KubeRay's, forward). Not Ray's dashboard cookie: a browser
    sends a cookie by itself, a header only when a script adds it.
    """

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and self.expected is not None:
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization") or headers.get(b"x-ray-authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await _refuse(
                    (scope, receive, send),
                    401,
                    "missing or wrong token",
                    "pass the server's token: RUNENV_TOKEN (clients on its machine read "
                    "RUNENV_HOME/auth/token by themselves)",
                )
                return
        await self.app(scope, receive, send)


async def _refuse(
    asgi: tuple[Any, Any, Any],
    status: int,
    error: str,
    hint: str,
    headers: dict[str, str] | None = None,
) -> None:
    """A middleware's answer instead of the app's (before a websocket is accepted too)."""
    response = JSONResponse({"error": error, "hint": hint}, status_code=status, headers=headers)
    await response(*asgi)


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
                await _refuse(
                    (scope, receive, send),
                    403,
                    f"refused: {problem}",
                    "call the API from a client, not from a web page, at the address the "
                    "server listens on",
                )
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


def check_bind(host: str, token: str | None, tls: bool) -> str | None:
    """Refuse to listen beyond this machine without a token; a warning (or None) when it would
    listen beyond it without TLS."""
    if is_loopback(host):
        return None
    if not token:
        raise RunenvError(
            f"refusing to listen on {host} without a token: anyone who can reach it could run "
            "commands on this machine",
            hint="drop --unsafe-no-token (a token is made for you), or listen on 127.0.0.1",
        )
    if tls:
        return None
    # Warned, not refused: behind a TLS proxy, an SSH tunnel or a private network it is right.
    return (
        f"WARNING: listening on {host} over plain HTTP: the token and every job's env_vars "
        "cross the network in clear. Use --tls-cert/--tls-key, a TLS proxy or an SSH tunnel."
    )


def serve(
    host: str,
    port: int,
    token_file: Path | None = None,
    *,
    no_token: bool = False,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> None:
    """Listen (the socket bound before anything is announced), then serve until stopped."""
    import uvicorn

    token, notes = _server_token(host, token_file, no_token)
    warning = check_bind(host, token, tls_cert is not None)
    _check_tls(tls_cert, tls_key)
    listener = _bind(host, port)
    isolation.make_undumpable()  # same-user jobs cannot read our memory, fds or mounts
    scheme = "https" if tls_cert else "http"
    bound_port = listener.getsockname()[1]
    announcement = [f"runenv job server on {scheme}://{_url_host(host)}:{bound_port}", notes]
    print("\n".join(line for line in (*announcement, warning) if line), file=sys.stderr)
    config = uvicorn.Config(
        create_app(token, host=host),
        log_level="warning",
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
    )
    uvicorn.Server(config).run(sockets=[listener])


def _server_token(host: str, token_file: Path | None, no_token: bool) -> tuple[str | None, str]:
    """The token (None with the opt-out, on loopback only) and a note saying where it is —
    never what it is."""
    if no_token:
        if token_file is not None:
            raise RunenvError(
                "--unsafe-no-token and --token-file contradict each other",
                hint="drop one of them",
            )
        if not is_loopback(host):
            raise RunenvError(
                f"--unsafe-no-token is only allowed on loopback, not on {host}",
                hint="drop --unsafe-no-token: a token is made for you under RUNENV_HOME",
            )
        return None, (
            "WARNING: no token (--unsafe-no-token): every process on this machine, "
            "of every user, can run commands as you through this server"
        )
    if token_file is not None:
        token, path = read_token(token_file), token_file.resolve()
        note = f"token: from {path}"
    else:
        token, path = auth.default_token()
        note = f"token: in {path} (clients on this machine pick it up; elsewhere pass it as "
        note += "RUNENV_TOKEN)"
    os.environ[auth.TOKEN_FILE_VARIABLE] = str(path)  # our supervisors hide it from jobs
    return token, note


def _check_tls(cert: Path | None, key: Path | None) -> None:
    if (cert is None) != (key is None):
        raise RunenvError("--tls-cert and --tls-key go together", hint="pass both, or neither")
    if cert is None or key is None:
        return
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise RunenvError(
            f"cannot use the TLS certificate {cert} with the key {key}: {error}",
            hint="a PEM certificate (chain) and its PEM private key",
        ) from None


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or an error naming who holds the port."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
    except socket.gaierror as error:
        raise RunenvError(f"cannot listen on {host}: {error.strerror}") from None
    listener = socket.socket(family, kind, protocol)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(2048)
    except OSError as error:
        listener.close()
        if error.errno != errno.EADDRINUSE:
            raise RunenvError(f"cannot listen on {host}:{port}: {error.strerror}") from None
        raise RunenvError(
            f"port {port} on {host} is already in use{_holder(port)}",
            hint="stop that process, or choose another port with --port",
        ) from None
    return listener


def _holder(port: int) -> str:
    """`` by PID (NAME)`` when this user may see which process listens on ``port``."""
    import psutil

    with contextlib.suppress(psutil.Error, OSError):
        for connection in psutil.net_connections(kind="tcp"):
            listening = connection.status == psutil.CONN_LISTEN and connection.pid
            if listening and connection.laddr and connection.laddr.port == port:
                return f" by process {connection.pid} ({psutil.Process(connection.pid).name()})"
    return ""


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
