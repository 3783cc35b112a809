"""Materializing each kind of runtime_env field: one module per kind, applied in order.

Each step has the same shape, ``step(env, setup, context) -> context``: it asks the cache for the
entries it needs (building them when missing) and returns the context with its changes. Locking,
build-once and publishing live in :mod:`runenv.cache`, not in the steps.
"""

from __future__ import annotations

from runenv.envs import conda, env_vars, py_modules, python_env, working_dir
from runenv.envs.setup import Setup, Step

# The order matters: env_vars come last so they see (and may override) everything else.
STEPS: tuple[Step, ...] = (
    working_dir.apply,
    py_modules.apply,
    python_env.apply,
    conda.apply,
    env_vars.apply,
)

__all__ = ["STEPS", "Setup", "Step"]
