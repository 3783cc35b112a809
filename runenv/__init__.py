"""runenv: runtime environments for distributed Python."""

from __future__ import annotations

from runenv.errors import (
    ActorDiedError,
    EnvSetupError,
    GetTimeoutError,
    PackagingError,
    RunenvError,
    RuntimeEnvSetupError,
    SpecError,
    StorageError,
    TaskError,
    UnsafeArchiveError,
    UsageError,
    UsageTypeError,
    WorkerCrashedError,
)

__version__ = "0.1.0"

TYPE_CHECKING = False  # not typing's: importing typing would cost `runenv run` milliseconds

# The API (cloudpickle) and the spec (pydantic) load on first use: the CLI and the workers in
# the host's interpreter start much faster without what they don't need.
_LAZY = {
    **dict.fromkeys(
        [
            "ActorClass",
            "ActorHandle",
            "ObjectRef",
            "RemoteFunction",
            "RuntimeContext",
            "get",
            "get_actor",
            "get_runtime_context",
            "init",
            "is_initialized",
            "kill",
            "put",
            "remote",
            "shutdown",
            "wait",
        ],
        "runenv.api",
    ),
    **dict.fromkeys(["RuntimeEnv", "RuntimeEnvConfig", "merge"], "runenv.spec"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runenv' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from typing import Any

    from runenv.api import (
        ActorClass,
        ActorHandle,
        ObjectRef,
        RemoteFunction,
        RuntimeContext,
        get,
        get_actor,
        get_runtime_context,
        init,
        is_initialized,
        kill,
        put,
        remote,
        shutdown,
        wait,
    )
    from runenv.spec import RuntimeEnv, RuntimeEnvConfig, merge

__all__ = [
    "ActorClass",
    "ActorDiedError",
    "ActorHandle",
    "EnvSetupError",
    "GetTimeoutError",
    "ObjectRef",
    "PackagingError",
    "RemoteFunction",
    "RunenvError",
    "RuntimeContext",
    "RuntimeEnv",
    "RuntimeEnvConfig",
    "RuntimeEnvSetupError",
    "SpecError",
    "StorageError",
    "TaskError",
    "UnsafeArchiveError",
    "UsageError",
    "UsageTypeError",
    "WorkerCrashedError",
    "__version__",
    "get",
    "get_actor",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "merge",
    "put",
    "remote",
    "shutdown",
    "wait",
]
