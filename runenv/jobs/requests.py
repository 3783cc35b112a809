"""What a job submission to ``runenv serve`` may carry, checked field by field (pydantic).

One body for both clients: Ray's ``JobSubmissionClient`` (``entrypoint``, ``submission_id``, its
deprecated ``job_id``, ``runtime_env`` in Ray's form, ``metadata``, ``entrypoint_*``) and
runenv's own (a prepared env, plus ``max_retries`` and ``timeout_s``). A malformed body is an
:class:`InvalidRequest` naming the field (the server answers 422), before anything is recorded.

Unknown fields are refused rather than ignored: a misspelt ``max_retry`` silently dropped would
run the job without the limit the user asked for; Ray's own server refuses them too (its request
is a dataclass built with ``**body``). Ray's client leaves out every field it has no value for,
so a newer client does not trip on this with fields it does not use.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runenv.errors import RunenvError
from runenv.jobs.models import MAX_RETRIES_LIMIT, check_submission_id

_NonNegative = Annotated[float, Field(ge=0)]


class InvalidRequest(RunenvError):
    """A request body the server refuses (422); ``field`` names the culprit (``body``: all)."""

    def __init__(self, message: str, field: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.field = field


class SubmitRequest(BaseModel):
    """``POST /api/jobs/``: Ray's JobSubmitRequest, and runenv's retry and timeout fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    entrypoint: Annotated[str, Field(min_length=1)]
    submission_id: str | None = None
    job_id: str | None = None  # Ray's deprecated name for submission_id
    runtime_env: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    # Ray's reservations for the entrypoint: recorded and shown; one machine does not reserve.
    entrypoint_num_cpus: _NonNegative | None = None
    entrypoint_num_gpus: _NonNegative | None = None
    entrypoint_memory: Annotated[int, Field(ge=0)] | None = None
    entrypoint_resources: dict[str, _NonNegative] | None = None
    entrypoint_label_selector: dict[str, str] | None = None
    max_retries: Annotated[int, Field(ge=0, le=MAX_RETRIES_LIMIT)] = 0
    timeout_s: Annotated[float, Field(gt=0)] | None = None

    def entrypoint_request(self) -> dict[str, Any]:
        """The ``entrypoint_*`` fields given, by Ray's names (as a job's details show them)."""
        fields = self.model_dump(include={name for name in self.model_fields_set})
        return {
            name: value
            for name, value in fields.items()
            if name.startswith("entrypoint_") and value is not None
        }


def parse_submit(body: bytes) -> SubmitRequest:
    """The submission in ``body`` (JSON), or an :class:`InvalidRequest` naming the bad field."""
    try:
        request = SubmitRequest.model_validate_json(body)
    except ValidationError as error:
        raise _invalid(error) from None
    if request.job_id is not None and request.submission_id not in (None, request.job_id):
        raise InvalidRequest(
            "job_id and submission_id differ",
            "job_id",
            hint="job_id is Ray's deprecated name for submission_id: give only submission_id",
        )
    for field in ("submission_id", "job_id"):
        value = getattr(request, field)
        if value is None:
            continue
        try:
            check_submission_id(value)  # it names a directory too
        except RunenvError as error:
            raise InvalidRequest(error.message, field, hint=error.hint) from None
    return request


def _invalid(error: ValidationError) -> InvalidRequest:
    problem = error.errors(include_url=False)[0]
    loc = [str(part) for part in problem["loc"]]
    field = ".".join(loc) or "body"
    if problem["type"] == "json_invalid":
        return InvalidRequest(
            f"the body is not JSON: {problem['msg']}",
            "body",
            hint="send the job as a JSON object",
        )
    if not loc and problem["type"] in ("model_type", "model_attributes_type"):
        return InvalidRequest(
            "the body must be a JSON object", "body", hint='send {"entrypoint": "...", ...}'
        )
    if problem["type"] == "extra_forbidden":
        known = ", ".join(sorted(SubmitRequest.model_fields))
        return InvalidRequest(
            f"unknown field {field!r}", loc[0], hint=f"a job submission's fields: {known}"
        )
    return InvalidRequest(f"{field}: {problem['msg']}", loc[0], hint=_hint(loc[0]))


def _hint(field: str) -> str | None:
    return {
        "max_retries": f"an integer from 0 to {MAX_RETRIES_LIMIT}",
        "timeout_s": "a number of seconds above 0, or leave it out for no limit",
        "metadata": "a mapping of strings to strings",
        "entrypoint": "the command to run, as one non-empty string",
        "submission_id": "a string, or leave it out for a generated one",
    }.get(field)
