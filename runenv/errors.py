"""The errors runenv raises to its users.

Every user-facing failure is a :class:`RunenvError`: a one-line message saying what went wrong
and a hint saying what to do about it. The CLI prints them as ``error:`` / ``hint:`` lines.
"""

from __future__ import annotations

# E2BIG from exec: what the user can change about it (the fast path and the launcher say it).
TOO_BIG_HINT = (
    "env_vars (after ${VAR} expansion) and the command line together are over the system's "
    "limit (ARG_MAX; one variable may hold at most 128 KiB on Linux); pass large data in files"
)


class RunenvError(Exception):
    """A failure the user can act on: a message and a hint."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        # Messages quote URIs and commands: credentials inside them never reach the user's screen.
        message = _redacted(message)
        super().__init__(message)
        self.message = message
        self.hint = None if hint is None else _redacted(hint)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


class SpecError(RunenvError, ValueError):
    """A runtime_env dict, file or field that is not valid."""


class PackagingError(RunenvError):
    """A directory or file that cannot be packaged (too large, unreadable, ...)."""


class UnsafeArchiveError(RunenvError):
    """An archive with an entry that would land outside the directory it is unpacked into."""


class StorageError(RunenvError):
    """An upload or download that failed: missing object, credentials, endpoint or backend."""


class EnvSetupError(RunenvError):
    """Setting up a runtime environment failed: a download, an unpack, a resolution, an install.

    ``step`` names what was running and ``log_path`` is the full setup log.
    """

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        step: str | None = None,
        log_path: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.step = step
        self.log_path = log_path


class SetupTimeoutError(EnvSetupError):
    """Setting up a runtime environment took longer than ``config.setup_timeout_seconds``."""


# --- errors of remote work (tasks and actors) -----------------------------------------------


class TaskError(RunenvError):
    """A task or actor method raised. ``get`` raises an instance that is *also* an instance of
    the original exception's type, with the remote traceback in its message (as Ray does)."""

    cause_type_name: str = ""
    remote_traceback: str = ""


class WorkerCrashedError(RunenvError):
    """The worker process running a task died (os._exit, a signal, a segfault)."""


class ActorDiedError(RunenvError):
    """The actor's process is gone (it crashed, was killed, or its __init__ raised)."""


class UsageError(RunenvError, ValueError):
    """An API call with an argument that cannot work (an unknown actor name, a task that asks
    for more CPUs than there are, ...); a ValueError too, as Ray raises."""


class UsageTypeError(RunenvError, TypeError):
    """An API call with an argument of the wrong type; a TypeError too, as Ray raises."""


class GetTimeoutError(RunenvError, TimeoutError):
    """``get`` or ``wait`` ran out of time."""


class RuntimeEnvSetupError(EnvSetupError):
    """The runtime env of a task or actor could not be set up; every waiting call gets this."""


class UnknownFunctionError(RunenvError):
    """A function or class sent by id that the driver no longer keeps; the sender resends it
    with its pickle (internal: it never reaches users)."""


def _redacted(text: str) -> str:
    if "://" not in text:
        return text  # the common case, without loading the redaction rules
    from runenv.redact import redact_text

    return redact_text(text)
