"""Jobs on a Ray cluster: runenv's job SDK and CLI over Ray's own job API.

``runenv job submit --address ray+http://HEAD:8265`` (or ``ray+https://``) goes through Ray's
``JobSubmissionClient`` at the http(s) address; a plain ``http://`` address stays a
``runenv serve`` server. The env is prepared here — local code packaged into the env's
``upload_path`` or, without one, into the cluster's own package store (``gcs://_ray_pkg_…``,
the job API's package endpoint), Python packages locked — then translated by
:mod:`runenv.ray.translate` in plugin or stock mode.

A job must never run silently in the cluster's base Python: in plugin mode the entrypoint is
prefixed with a shell guard that fails at once (exit :data:`GUARD_EXIT_CODE`) unless runenv's
plugin prepared it on the node that runs it. Status, logs and lists show the user's entrypoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from runenv import settings
from runenv.errors import PackagingError, RunenvError, UsageError
from runenv.jobs.models import JobInfo, JobStatus, Submission, check_submission_id
from runenv.ray import translate
from runenv.ray.envs import MODE_VARIABLE, MODES
from runenv.store_layout import PREFIX

if TYPE_CHECKING:
    from runenv.envs.setup import StageCallback

SCHEMES = ("ray+http://", "ray+https://")
GUARD_EXIT_CODE = 97
INSTALL_HINT = "pip install 'runenv[ray]'"
# The env the auto-mode probe job runs in: the smallest env the plugin acts on (as the engine's).
PROBE_FIELD: dict[str, Any] = {"env_vars": {"RUNENV_PROBE": "1"}}
PROBE_TIMEOUT_S = 60.0

ModeSetting = Literal["plugin", "stock", "auto"]
_ARCHIVE_NAME = re.compile(rf"^{PREFIX}/([0-9a-f]{{64}})\.zip$")
_GUARD = re.compile(r'^\[ "\$\{' + translate.ACTIVE_VARIABLE + r'-\}" = (\S+) \] \|\| ')


def is_ray_address(address: str) -> bool:
    return address.startswith(SCHEMES)


def mode_setting(given: str | None = None) -> ModeSetting:
    """``--ray-mode``, else ``RUNENV_RAY_MODE``, else ``auto``."""
    value = (given or os.environ.get(MODE_VARIABLE) or "auto").strip().lower()
    if value not in MODES:
        raise UsageError(
            f"unknown Ray mode {value!r}",
            hint=f"--ray-mode / {MODE_VARIABLE}: one of plugin, stock, auto",
        )
    return value  # type: ignore[return-value]


# --- the entrypoint guard --------------------------------------------------------------------


def guarded(entrypoint: str, key: str) -> str:
    """``entrypoint``, run only where the plugin prepared the env whose key is ``key``."""
    return guard_prefix(key) + entrypoint


def guard_prefix(key: str) -> str:
    message = (
        "has no runenv plugin: it ignored the job's env, so the entrypoint would run in the "
        "cluster's base Python. Start the node with `runenv ray start`, or set "
        "RAY_RUNTIME_ENV_PLUGINS before `ray start` (docs/ray.md); or submit with --ray-mode stock."
    )
    report = f'echo "runenv: error: Ray node $(hostname)" {shlex.quote(message)} >&2'
    variable = translate.ACTIVE_VARIABLE
    return f'[ "${{{variable}-}}" = {key} ] || {{ {report}; exit {GUARD_EXIT_CODE}; }}; '


def split_guard(entrypoint: str) -> tuple[str, str]:
    """The user's entrypoint and the env key of a guarded one ("" when not guarded)."""
    match = _GUARD.match(entrypoint)
    if match is None:
        return entrypoint, ""
    key = match.group(1)
    prefix = guard_prefix(key)
    if not entrypoint.startswith(prefix):
        return entrypoint, ""
    return entrypoint[len(prefix) :], key


# --- the backend -----------------------------------------------------------------------------


class RayJobBackend:
    """Jobs on a Ray cluster, through Ray's ``JobSubmissionClient`` (a ``JobBackend``)."""

    def __init__(self, address: str, token: str | None, mode: str | None = None) -> None:
        if not is_ray_address(address):
            raise UsageError(f"not a Ray job API address: {address}", hint="ray+http://HEAD:8265")
        self.address = address
        self.url = address.removeprefix("ray+")
        self.token = token
        self.mode = mode_setting(mode)

    @cached_property
    def client(self) -> Any:
        try:
            from ray.job_submission import JobSubmissionClient
        except ImportError:
            raise RunenvError(
                f"submitting to {self.address} needs Ray's job SDK (ray[default])",
                hint=INSTALL_HINT,
            ) from None
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        with self.errors():
            return JobSubmissionClient(self.url, headers=headers)

    def submit_job(self, submission: Submission, on_stage: StageCallback | None) -> str:
        from runenv.materialize import prepare

        _check_supported(submission)
        env = submission.runtime_env
        store = None if env.upload_path else RayPackageStore(self)
        prepared = prepare(env, on_stage=on_stage, store=store)
        mode = "stock" if prepared.is_empty() else self.resolved_mode()
        runtime_env = translate.to_ray(prepared, mode)
        entrypoint = submission.entrypoint
        key = translate.expected_key(runtime_env)
        if key is not None:  # plugin mode: never in the base env (see guarded)
            entrypoint = guarded(entrypoint, key)
        submission_id = check_submission_id(submission.submission_id or _new_submission_id())
        with self.errors():
            return str(
                self.client.submit_job(
                    entrypoint=entrypoint,
                    runtime_env=runtime_env or None,
                    metadata=dict(submission.metadata) or None,
                    submission_id=submission_id,
                    entrypoint_num_cpus=submission.entrypoint_num_cpus,
                )
            )

    def get_job_info(self, submission_id: str) -> JobInfo:
        with self.errors():
            return job_info(self.client.get_job_info(submission_id))

    def get_job_logs(self, submission_id: str) -> str:
        with self.errors():
            return str(self.client.get_job_logs(submission_id))

    def tail_job_logs(self, submission_id: str) -> Iterator[str]:
        """Ray's log websocket, read synchronously; returns once the job has ended."""
        self.get_job_info(submission_id)  # an unknown id fails here, clearly
        logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)  # "closed"
        loop = asyncio.new_event_loop()
        chunks = self.client.tail_job_logs(submission_id)
        try:
            while True:
                with self.errors():
                    try:
                        chunk = loop.run_until_complete(chunks.__anext__())
                    except StopAsyncIteration:
                        break
                yield str(chunk)
            self.wait_until_ended(submission_id, timeout=30)
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(chunks.aclose())
            loop.close()

    def stop_job(self, submission_id: str) -> bool:
        with self.errors():
            return bool(self.client.stop_job(submission_id))

    def delete_job(self, submission_id: str) -> bool:
        with self.errors():
            return bool(self.client.delete_job(submission_id))

    def list_jobs(self, status: JobStatus | None) -> list[JobInfo]:
        """Submitted jobs, oldest first (drivers started by hand have no submission id)."""
        with self.errors():
            found = [
                job_info(details) for details in self.client.list_jobs() if _submitted(details)
            ]
        found.sort(key=lambda info: info.created_time)
        return [info for info in found if status is None or info.status == status]

    def wait_until_ended(self, submission_id: str, timeout: float) -> JobInfo:
        deadline = time.monotonic() + timeout
        while not (info := self.get_job_info(submission_id)).status.is_terminal():
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return info

    # --- plugin or stock ---------------------------------------------------------------------

    def resolved_mode(self) -> translate.Mode:
        """The setting; ``auto``: plugin mode unless the head is known to lack the plugin."""
        if self.mode != "auto":
            return self.mode
        if self.head_has_plugin() is False:
            print(
                f"runenv: the Ray head at {self.url} has no runenv plugin: the job's env uses "
                f"Ray's own pip/uv/working_dir fields (stock mode). Set {MODE_VARIABLE} or "
                "--ray-mode to choose.",
                file=sys.stderr,
            )
            return "stock"
        return "plugin"

    def head_has_plugin(self) -> bool | None:
        """Whether the plugin acts where entrypoints run, asked once per Ray session."""
        with self.errors():
            version = self.client._do_request("GET", "/api/version").json()
        answer_file = _probe_answer_file(self.url, str(version.get("session_name", "")))
        if answer_file.exists():
            return answer_file.read_text().strip() == "plugin"
        answer = self.probe_plugin()
        if answer is not None:
            answer_file.parent.mkdir(parents=True, exist_ok=True)
            answer_file.write_text("plugin" if answer else "stock")
        return answer

    def probe_plugin(self) -> bool | None:
        """A tiny job in the probe env: does its entrypoint see the plugin's variable?

        None when the probe does not end in time (then plugin mode, guarded, is the safe way).
        """
        expected = translate.plugin_key(PROBE_FIELD)
        submission_id = f"runenv-probe-{_new_submission_id()}"
        with self.errors():
            self.client.submit_job(
                entrypoint=f'echo "runenv-probe:${{{translate.ACTIVE_VARIABLE}-}}:"',
                runtime_env={translate.PLUGIN_FIELD: PROBE_FIELD},
                submission_id=submission_id,
                metadata={"runenv": "plugin probe"},
            )
        info = self.wait_until_ended(submission_id, timeout=PROBE_TIMEOUT_S)
        if not info.status.is_terminal():
            with contextlib.suppress(RunenvError):
                self.stop_job(submission_id)
            return None
        logs = self.get_job_logs(submission_id)
        with contextlib.suppress(RunenvError):
            self.delete_job(submission_id)
        # A failed probe means the plugin acted (and failed): plugin mode shows that error.
        return f"runenv-probe:{expected}:" in logs or info.status == JobStatus.FAILED

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Ray's client errors as RunenvErrors naming the cluster."""
        try:
            yield
        except RunenvError:
            raise
        except ConnectionError as error:
            raise RunenvError(
                f"cannot reach the Ray job API at {self.url}: {error}",
                hint="check --address / RUNENV_ADDRESS (ray+http://HEAD:8265, the head's "
                "dashboard port) and that the head runs the dashboard",
            ) from None
        except (RuntimeError, ValueError, TypeError) as error:
            raise RunenvError(f"Ray job API at {self.url}: {error}") from None
        except Exception as error:  # requests' errors, Ray's AuthenticationError
            raise RunenvError(
                f"Ray job API at {self.url}: {type(error).__name__}: {error}"
            ) from None


def _check_supported(submission: Submission) -> None:
    if submission.max_retries:
        raise UsageError(
            "a Ray job runs once: max_retries is not supported on a Ray cluster",
            hint="drop max_retries (or retry in the entrypoint); jobs on this machine or on "
            "`runenv serve` support it",
        )
    if submission.timeout_s is not None:
        raise UsageError(
            "Ray's job API has no timeout: timeout_s is not supported on a Ray cluster",
            hint="drop timeout_s, or bound the entrypoint itself (e.g. `timeout 600 python "
            "main.py`)",
        )


def _new_submission_id() -> str:
    from runenv.jobs.models import new_submission_id

    return new_submission_id()


def _probe_answer_file(url: str, session_name: str) -> Path:
    digest = hashlib.sha256(f"{url}\n{session_name}".encode()).hexdigest()[:24]
    return settings.runenv_home() / "ray" / "head-plugin" / digest


def _submitted(details: Any) -> bool:
    return bool(details.submission_id) and not str(details.submission_id).startswith(
        "runenv-probe-"
    )


def job_info(details: Any) -> JobInfo:
    """Ray's ``JobDetails`` as runenv's ``JobInfo``: the user's entrypoint, runenv's env form."""
    entrypoint, key = split_guard(str(details.entrypoint))
    runtime_env = dict(details.runtime_env or {})
    carried = translate.from_ray(runtime_env)
    started = _seconds(details.start_time)
    status = JobStatus(str(details.status))  # Ray's JobStatus: a str enum of the same names
    return JobInfo(
        submission_id=str(details.submission_id),
        entrypoint=entrypoint,
        status=status,
        message=str(details.message or ""),
        runtime_env=carried.to_dict() if carried is not None else runtime_env,
        env_key=key,
        metadata={str(k): str(v) for k, v in (details.metadata or {}).items()},
        attempts=0 if status == JobStatus.PENDING else 1,
        exit_code=details.driver_exit_code,
        created_time=started or 0.0,
        start_time=started,
        end_time=_seconds(details.end_time),
    )


def _seconds(milliseconds: int | None) -> float | None:
    return milliseconds / 1000 if milliseconds else None


# --- the cluster's package store -------------------------------------------------------------


class RayPackageStore:
    """The Ray cluster's own package store (its GCS), as packaging sees a store.

    Through the job API's package endpoint, as ``JobSubmissionClient`` uploads a working_dir:
    ``GET``/``PUT /api/packages/gcs/_ray_pkg_<digest>.zip``. Named by runenv's content digest,
    so an unchanged directory is not uploaded again while the cluster holds it (Ray drops a
    package once no job uses it; the ``GET`` also pins it for a while, so it outlives the
    submission in between).
    """

    is_local = False

    def __init__(self, backend: RayJobBackend) -> None:
        self.backend = backend

    def uri(self, name: str) -> str:
        return f"gcs://{ray_package_name(name)}"

    def staging_directory(self) -> Path | None:
        return None

    def exists(self, name: str) -> bool:
        response = self._request("GET", name)
        if response.status_code not in (200, 404):
            raise RunenvError(
                f"the Ray cluster at {self.backend.url} could not check package {name}: "
                f"HTTP {response.status_code}: {response.text[:500]}"
            )
        return bool(response.status_code == 200)

    def put_file(self, local_path: Path, name: str, *, move: bool = False) -> str:
        response = self._request("PUT", name, data=Path(local_path).read_bytes())
        if response.status_code != 200:
            raise RunenvError(
                f"the Ray cluster at {self.backend.url} refused package {name}: "
                f"HTTP {response.status_code}: {response.text[:500]}",
                hint="Ray keeps packages in its GCS (at most 512 MiB each); for larger code "
                "set upload_path to a location every node reads (s3://, gs://, a shared path)",
            )
        return self.uri(name)

    def _request(self, method: str, name: str, **options: Any) -> Any:
        path = f"/api/packages/gcs/{ray_package_name(name)}"
        with self.backend.errors():
            return self.backend.client._do_request(method, path, **options)


def ray_package_name(name: str) -> str:
    """Ray's name for a runenv package: ``pkgs/<digest>.zip`` → ``_ray_pkg_<digest>.zip``."""
    match = _ARCHIVE_NAME.match(name)
    if match is None:
        raise PackagingError(
            f"{name} cannot go to the Ray cluster's package store, which holds zip archives "
            "only (a local wheel or non-zip archive in py_modules/working_dir)",
            hint="set upload_path to a location every node reads (s3://, gs://, or a shared "
            "file path), or give a directory",
        )
    return f"{translate.RAY_PACKAGE_PREFIX.removeprefix('gcs://')}{match.group(1)}.zip"
