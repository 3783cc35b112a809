"""Ray's exceptions as the runenv errors the embedded engine raises for the same failures."""

from __future__ import annotations

import copy
import re
from typing import Any

from runenv.core.serialization import as_instance_of
from runenv.errors import (
    ActorDiedError,
    GetTimeoutError,
    RunenvError,
    RuntimeEnvSetupError,
    TaskError,
    WorkerCrashedError,
)

_RAY_FRAME = re.compile(r"ray::([\w.:<>-]+)\(")
_SETUP_HINT = "the node's runtime_env_setup-*.log (under Ray's temp dir) has the whole output"


def from_ray(error: BaseException) -> BaseException:
    """What runenv raises for an exception out of ``ray.get``/``ray.wait``/actor calls."""
    import ray.exceptions as rx

    if isinstance(error, rx.RayTaskError):
        return _task_error(error)
    if isinstance(error, rx.RuntimeEnvSetupError):
        return RuntimeEnvSetupError(
            f"runtime env setup failed on the Ray cluster: {_text(error)}", hint=_SETUP_HINT
        )
    if isinstance(error, rx.GetTimeoutError):
        return GetTimeoutError(str(error), hint="raise the timeout, or wait() for what is ready")
    if isinstance(error, (rx.RayActorError, rx.ActorUnavailableError)):
        return _actor_error(error)
    if isinstance(error, (rx.WorkerCrashedError, rx.NodeDiedError, rx.LocalRayletDiedError)):
        return WorkerCrashedError(
            f"the worker running it died: {_text(error)}",
            hint="set max_retries to retry it; look for os._exit, signals, native crashes",
        )
    if isinstance(error, rx.OutOfMemoryError):
        return WorkerCrashedError(str(error), hint="give the task more memory or fewer peers")
    if isinstance(error, rx.RayError):
        return RunenvError(f"Ray: {_text(error)}", hint="see the Ray logs of the cluster")
    return error


def _actor_error(error: Any) -> BaseException:
    text = _text(error)
    if getattr(error, "actor_init_failed", False):
        # Ray keeps only the text of what the creation task raised.
        setup_failure = _SETUP_FAILURE_MARK in text
        if setup_failure:
            message = text.split(_SETUP_FAILURE_MARK, 1)[1].strip()
            return RuntimeEnvSetupError(message.split("\nhint: ")[0], hint=_PLUGIN_HINT)
        return ActorDiedError(
            f"the actor died: its __init__ raised: {text}",
            hint="fix the error in __init__ (the remote traceback is above)",
        )
    return ActorDiedError(
        f"the actor died: {text}",
        hint="look for os._exit, signals or a kill; its log is on its node",
    )


_SETUP_FAILURE_MARK = f"{RuntimeEnvSetupError.__module__}.{RuntimeEnvSetupError.__name__}:"
_PLUGIN_HINT = "start the node with `runenv ray start …` (see docs/ray.md)"


def _task_error(error: Any) -> BaseException:
    cause = error.cause
    if isinstance(cause, RuntimeEnvSetupError):  # raised by runenv's own check in the worker
        return copy.copy(cause)
    if isinstance(cause, TaskError):
        return cause
    # What Ray raises is an instance of the cause's type too, whose text is Ray's remote
    # traceback, headed by `ray::<function>() (pid=…, ip=…)`.
    traceback_text = _text(error)
    named = _RAY_FRAME.match(traceback_text)
    where = f"task {named.group(1)}" if named else "task"
    if not isinstance(cause, Exception):
        return TaskError(f"{where} failed: {traceback_text}", hint="the remote traceback is above")
    type_name = type(cause).__qualname__
    header = "Traceback (most recent call last), in the Ray worker"
    message = f"{where} raised {type_name}: {cause}\n\n{header} {traceback_text}"
    combined = as_instance_of(cause, message) or TaskError(
        message, hint="the remote traceback is above"
    )
    combined.cause_type_name = type_name
    combined.remote_traceback = traceback_text
    return combined


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _text(error: BaseException) -> str:
    return _ANSI.sub("", str(error)).strip()
