"""`runenv job submit`'s command line: unknown options are errors; the entrypoint's own options
go after `--`; the fast path parses the same way."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from runenv.cli import fast, job_commands  # noqa: F401 - registers the commands
from runenv.cli.app import app
from runenv.errors import UsageError


def submit_command() -> Any:
    return typer.main.get_command(app).commands["job"].commands["submit"]  # type: ignore[attr-defined]


def parse(*args: str) -> dict[str, Any]:
    context = submit_command().make_context("submit", list(args))
    return dict(context.params)


def test_options_after_the_separator_belong_to_the_entrypoint() -> None:
    params = parse("--no-wait", "--", "python", "main.py", "--some-flag", "--no-wait", "-c")
    assert params["entrypoint"] == ["python", "main.py", "--some-flag", "--no-wait", "-c"]
    assert params["no_wait"] is True


@pytest.mark.parametrize(
    ("args", "named", "hinted"),
    [
        (["--no-wiat", "--", "python", "main.py"], "--no-wiat", "did you mean --no-wait?"),
        (["--submision-id", "x", "--", "a"], "--submision-id", "--submission-id"),
        (["--env-var", "X=1", "--", "python", "main.py"], "--env-var", "--runtime-env-json"),
        (["python", "-c", "print(1)"], "-c", "go after --"),
    ],
)
def test_an_unknown_option_before_the_entrypoint_is_an_error(
    args: list[str], named: str, hinted: str
) -> None:
    with pytest.raises(UsageError) as raised:
        parse(*args)
    assert raised.value.message == f"runenv job submit has no option {named}"
    assert hinted in (raised.value.hint or "")


def test_the_cli_says_error_and_hint(capsys: pytest.CaptureFixture[str]) -> None:
    from runenv.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["job", "submit", "--env-var", "X=1", "--", "python", "main.py"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "error: runenv job submit has no option --env-var" in err
    assert "hint: a job's env_vars go in --runtime-env" in err


def test_the_fast_path_knows_only_options_the_command_knows() -> None:
    known = {name for param in submit_command().params for name in param.opts}
    assert {*fast.SUBMIT_VALUE_OPTIONS, *fast.SUBMIT_FLAGS} <= known
    unknown = ["job", "submit", "--no-wait", "--env-var", "X=1", "--", "python", "main.py"]
    assert fast.parse_submit(unknown) is None  # left to the slow path, which refuses it
    plain = fast.parse_submit(["job", "submit", "--no-wait", "--", "python", "m.py", "--flag"])
    assert plain is not None and plain.command == ["python", "m.py", "--flag"]


def test_serve_has_the_loud_opt_out_and_tls_options() -> None:
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    names = {name for param in serve.params for name in param.opts}
    assert {"--token-file", "--unsafe-no-token", "--tls-cert", "--tls-key"} <= names
