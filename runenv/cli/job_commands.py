"""``runenv job ...`` (modelled on ``ray job``) and ``runenv serve``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer._click.exceptions import NoSuchOption  # Typer's own Click: it raises these
from typer.core import TyperCommand

from runenv.cli import fast
from runenv.cli.app import app
from runenv.cli.options import env_dict_from_flags
from runenv.cli.progress import stage_reporter
from runenv.errors import RunenvError, UsageError
from runenv.jobs.config import JobConfig, read_job_config
from runenv.jobs.models import JobInfo, JobStatus
from runenv.spec import RuntimeEnv

if TYPE_CHECKING:
    from runenv import inputs
    from runenv.jobs.client import JobClient

job_app = typer.Typer(help="Submit, follow and stop jobs.", no_args_is_help=True)
app.add_typer(job_app, name="job")

EXIT_FOR = {JobStatus.SUCCEEDED: 0, JobStatus.FAILED: 1, JobStatus.STOPPED: 130}
ADDRESS = typer.Option(
    None,
    "--address",
    help="Where jobs run (default: RUNENV_ADDRESS, else this machine): http(s)://HOST:PORT for "
    "`runenv serve`, ray+http(s)://HEAD:8265 for a Ray cluster's job API.",
)
SHOW_SECRETS = typer.Option(
    False,
    "--show-secrets",
    help="Show env_vars values and URI credentials in clear (masked by default).",
)


_RUN_OPTIONS = {"--env-var": "env_vars", "--pip": "pip"}


class _SubmitCommand(TyperCommand):
    """An option before the entrypoint that ``submit`` does not know is an error, as in Ray's
    ``ray job submit`` (else it would silently become part of the entrypoint): the entrypoint's
    own options go after ``--``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except NoSuchOption as error:
            names = [name for param in self.params for name in param.opts if name.startswith("-")]
            raise UsageError(
                f"runenv job submit has no option {error.option_name}",
                hint=unknown_option_hint(error.option_name, names),
            ) from None


def unknown_option_hint(option: str, known: list[str]) -> str:
    """The close option names, and where the entrypoint's own options go."""
    import difflib

    field = _RUN_OPTIONS.get(option.split("=", 1)[0])
    close = difflib.get_close_matches(option, known, n=3, cutoff=0.6)
    if field:  # an option of `runenv run`: for a job, a field of its runtime_env
        guess = f"a job's {field} go in --runtime-env or --runtime-env-json '{{\"{field}\": …}}'; "
    else:
        guess = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"{guess}the entrypoint and its own options go after --: "
        f"runenv job submit [OPTIONS] -- python main.py {option}"
    )


@job_app.command("submit", cls=_SubmitCommand)
def submit(
    entrypoint: list[str] = typer.Argument(None, help="The command to run, after --."),
    address: str = ADDRESS,
    working_dir: str = typer.Option(None, "--working-dir", help="Overrides the env's working_dir."),
    runtime_env: Path = typer.Option(None, "--runtime-env", help="A runtime_env YAML/JSON file."),
    runtime_env_json: str = typer.Option(None, "--runtime-env-json", help="A runtime_env as JSON."),
    submission_id: str = typer.Option(None, "--submission-id", help="The job's id."),
    metadata_json: str = typer.Option(None, "--metadata-json", help="Metadata as a JSON object."),
    config: Path = typer.Option(None, "--config", help="An Anyscale-style job config YAML."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once the job is submitted."),
    ray_mode: str = typer.Option(
        None,
        "--ray-mode",
        help="On a Ray cluster: plugin (runenv's node plugin builds the env), stock (Ray's own "
        "pip/uv/working_dir fields) or auto (default: RUNENV_RAY_MODE, else auto).",
    ),
    entrypoint_num_cpus: float = typer.Option(
        None, "--entrypoint-num-cpus", help="On a Ray cluster: CPUs reserved for the entrypoint."
    ),
) -> None:
    """Submit ENTRYPOINT as a job; follow its logs until it ends (unless --no-wait)."""
    from runenv.cli import recipes  # here: the other job commands needn't load setup code

    job = read_job_config(config) if config is not None else JobConfig()
    command = fast.job_entrypoint(entrypoint or []) or job.entrypoint
    if not command:
        raise RunenvError("no entrypoint", hint="runenv job submit [OPTIONS] -- python main.py")
    metadata = {**job.metadata, **fast.job_metadata(metadata_json)}
    if job.name:
        metadata.setdefault("name", job.name)
    client = _client(address, ray_mode)
    missed = fast.missed()
    flags = (runtime_env, runtime_env_json, working_dir)
    with recipes.recording() as recording:
        data = _job_env(job, *flags)
        env = RuntimeEnv.from_dict(data)
        with stage_reporter() as on_stage:
            job_id = client.submit_job(
                command,
                env,
                submission_id,
                metadata,
                job.max_retries,
                job.timeout_s,
                on_stage,
                entrypoint_num_cpus,
            )
    local = config is None and client.address is None
    if local and missed is not None and recipes.agrees(missed[1], entrypoint or [], *flags):
        _record(missed[0], runtime_env, data, env, client.get_job_info(job_id), recording)
    if no_wait:
        fast.announce_submitted(job_id)
        return
    print(f"submitted {job_id}", file=sys.stderr)
    sys.exit(_follow(client, job_id))


def _record(
    request: list[object],
    env_file: Path | None,
    data: dict[str, Any],
    env: RuntimeEnv,
    info: JobInfo,
    recording: inputs.Recording,
) -> None:
    """The recipe of this submission: next time, the same env is submitted without setup."""
    from runenv.cli import recipes

    packages = recipes.stored_packages(env, info.runtime_env)
    if packages is not None:
        result = recipes.prepared_record(info.runtime_env, info.env_key)
        recipes.write(request, env_file, data, env, result, recording, packages)


@job_app.command("status")
def status(submission_id: str, address: str = ADDRESS) -> None:
    """The job's status and message."""
    info = _client(address).get_job_info(submission_id)
    typer.echo(f"{info.status.value}" + (f": {info.message}" if info.message else ""))


@job_app.command("logs")
def logs(
    submission_id: str,
    address: str = ADDRESS,
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the job ends."),
) -> None:
    """The job's output (every attempt's)."""
    from runenv.jobs.client import LocalBackend

    client = _client(address)
    if follow:
        chunks = client.tail_job_logs(submission_id)
    elif isinstance(client.backend, LocalBackend):  # streamed: a log may be gigabytes
        chunks = client.backend.manager.log_text(submission_id)
    else:
        chunks = iter([client.get_job_logs(submission_id)])
    for chunk in chunks:
        sys.stdout.write(chunk)
        sys.stdout.flush()


@job_app.command("stop")
def stop(
    submission_id: str,
    address: str = ADDRESS,
    no_wait: bool = typer.Option(False, "--no-wait", help="Return without waiting for the end."),
) -> None:
    """Stop the job: SIGTERM to all its processes, SIGKILL after a grace period."""
    client = _client(address)
    if not client.stop_job(submission_id):
        typer.echo(f"{submission_id} had already ended: {client.get_job_status(submission_id)}")
        return
    if no_wait:
        typer.echo(f"stopping {submission_id}")
        return
    while not (state := client.get_job_status(submission_id)).is_terminal():
        time.sleep(0.1)
    typer.echo(f"{submission_id}: {state.value}")


@job_app.command("list")
def list_jobs(
    address: str = ADDRESS,
    status_filter: str = typer.Option(None, "--status", help="Only jobs with this status."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    show_secrets: bool = SHOW_SECRETS,
) -> None:
    """Every job, oldest first."""
    wanted = _status(status_filter) if status_filter else None
    jobs = _client(address, show_secrets=show_secrets).list_jobs(wanted)
    if as_json:
        typer.echo(json.dumps([_shown(info, show_secrets) for info in jobs], indent=2))
        return
    from rich.console import Console  # on use: the run path doesn't need rich
    from rich.table import Table

    table = Table("id", "status", "entrypoint", "started", "message", box=None)
    for info in jobs:
        shown = _shown(info, show_secrets)
        table.add_row(
            info.submission_id,
            info.status.value,
            shown["entrypoint"][:40],
            _clock(info.start_time),
            shown["message"][:50],
        )
    Console(highlight=False).print(table)


@job_app.command("show")
def show(submission_id: str, address: str = ADDRESS, show_secrets: bool = SHOW_SECRETS) -> None:
    """The whole record: runtime_env, env key, timings, exit code, message."""
    info = _client(address, show_secrets=show_secrets).get_job_info(submission_id)
    typer.echo(json.dumps(_shown(info, show_secrets), indent=2))


@job_app.command("delete")
def delete(submission_id: str, address: str = ADDRESS) -> None:
    """Delete an ended job's record and logs."""
    _client(address).delete_job(submission_id)
    typer.echo(f"deleted {submission_id}")


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8265, "--port", help="Port to listen on (0: any free one)."),
    token_file: Path = typer.Option(
        None,
        "--token-file",
        help="File holding the API token (0600, 16 bytes or more). Default: one made once "
        "under RUNENV_HOME/auth, which clients on this machine pick up by themselves.",
    ),
    unsafe_no_token: bool = typer.Option(
        False,
        "--unsafe-no-token",
        help="Serve without a token: any local process of any user can run commands as you. "
        "Loopback only.",
    ),
    tls_cert: Path = typer.Option(None, "--tls-cert", help="PEM certificate: serve https."),
    tls_key: Path = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert."),
) -> None:
    """Run the job server (HTTP JSON API) over this machine's jobs."""
    from runenv.jobs.server import serve as run_server

    run_server(
        host,
        port,
        token_file,
        no_token=unsafe_no_token,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )


def _client(
    address: str | None, ray_mode: str | None = None, show_secrets: bool = False
) -> JobClient:
    from runenv.jobs.client import JobClient  # here: httpx and the job manager load on use

    return JobClient(address, ray_mode=ray_mode, show_secrets=show_secrets)


def _follow(client: JobClient, job_id: str) -> int:
    """Stream the logs until the job ends; the exit code its status means."""
    try:
        for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return _interrupted(client, job_id)
    info = client.get_job_info(job_id)
    print(f"job {job_id} {info.status.value.lower()}: {info.message}", file=sys.stderr)
    return EXIT_FOR.get(info.status, 1)


def _interrupted(client: JobClient, job_id: str) -> int:
    if sys.stdin.isatty() and typer.confirm(f"\nstop job {job_id}?", default=False):
        client.stop_job(job_id)
        print(f"stopping {job_id}", file=sys.stderr)
    else:
        print(f"\n{job_id} goes on; follow it with: runenv job logs {job_id} -f", file=sys.stderr)
    return 130


def _clock(timestamp: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp)) if timestamp else ""


def _job_env(
    job: JobConfig, runtime_env: Path | None, runtime_env_json: str | None, working_dir: str | None
) -> dict[str, Any]:
    flags = env_dict_from_flags(runtime_env, runtime_env_json, None, [], [])
    data: dict[str, Any] = {**job.runtime_env, **flags}
    if working_dir is not None:
        data["working_dir"] = working_dir
    return data


def _status(text: str) -> JobStatus:
    try:
        return JobStatus(text.upper())
    except ValueError:
        names = ", ".join(s.value for s in JobStatus)
        raise RunenvError(f"unknown status {text!r}", hint=f"one of: {names}") from None


def _shown(info: JobInfo, show_secrets: bool) -> dict[str, Any]:
    """The record as printed: secrets masked unless the owner asks to see them."""
    return info.to_dict() if show_secrets else info.public_dict()
