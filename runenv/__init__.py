"""runenv: runtime environments for distributed Python."""

from __future__ import annotations

from runenv.errors import (
    PackagingError,
    RunenvError,
    SpecError,
    StorageError,
    UnsafeArchiveError,
)
from runenv.spec import RuntimeEnv, RuntimeEnvConfig, merge

__version__ = "0.1.0"

__all__ = [
    "PackagingError",
    "RunenvError",
    "RuntimeEnv",
    "RuntimeEnvConfig",
    "SpecError",
    "StorageError",
    "UnsafeArchiveError",
    "__version__",
    "merge",
]
