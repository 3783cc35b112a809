"""runenv: runtime environments for distributed Python."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    WorkerCrashedError,
)

__version__ = "0.1.0"

# The spec (pydantic) loads on first use: a worker starting in the host's interpreter only
# needs the API above, and starts twice as fast without it.
_LAZY = {"RuntimeEnv", "RuntimeEnvConfig", "merge"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from runenv import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'runenv' has no attribute {name!r}")


if TYPE_CHECKING:
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
