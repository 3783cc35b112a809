"""runenv: runtime environments for distributed Python."""

from __future__ import annotations

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
from runenv.spec import RuntimeEnv, RuntimeEnvConfig, merge

__version__ = "0.1.0"

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
