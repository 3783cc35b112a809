"""``env_vars``: set last; ``${VAR}`` is expanded from the node's environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from runenv.context import Context
from runenv.envs.setup import Setup
from runenv.spec import RuntimeEnv

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def apply(env: RuntimeEnv, setup: Setup, context: Context) -> Context:
    if not env.env_vars:
        return context
    node = os.environ
    expanded = {name: expand(value, node) for name, value in env.env_vars.items()}
    return context.with_changes(env_vars={**context.env_vars, **expanded})


def expand(value: str, environment: Mapping[str, str]) -> str:
    """``${VAR}`` replaced by its value in ``environment``; a missing one by ""."""
    return _REFERENCE.sub(lambda match: environment.get(match.group(1), ""), value)
