"""The environment of a process started in a runtime env: one rule, used by ``Context`` and by
the CLI's fast path (which loads nothing heavy: this module needs only ``os``)."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing and collections cost milliseconds on the fast path
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence


def compose(
    base: Mapping[str, str],
    unset: Iterable[str],
    pythonpath: Sequence[str],
    path: Sequence[str],
    env_vars: Mapping[str, str],
) -> dict[str, str]:
    """``base`` without ``unset``, with ``pythonpath`` and ``path`` first on PYTHONPATH and PATH,
    and ``env_vars`` set over all of it."""
    env = dict(base)
    for name in unset:
        env.pop(name, None)
    for name, prefix in (("PYTHONPATH", pythonpath), ("PATH", path)):
        if prefix:
            env[name] = os.pathsep.join([*prefix, *([env[name]] if env.get(name) else [])])
    env.update(env_vars)
    return env
