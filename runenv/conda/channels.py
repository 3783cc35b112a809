"""Which channels a conda env is solved against, and credentials kept out of specs and locks.

The spec's channels are used as given (names, ``https://`` or ``file://`` URLs); a spec naming
none gets ``RUNENV_CONDA_CHANNELS`` (defaults and mirrors), else conda-forge. A URL may hold
``${VAR}`` (e.g. ``https://${CONDA_TOKEN}@repo.example/channel`` or ``.../t/${TOKEN}/...``): it
is expanded from the environment of the process that fetches — the submitter when solving, each
node when installing — and the lock keeps the ``${VAR}`` form. rattler's own credentials
(``RATTLER_AUTH_FILE``, ``~/.rattler/credentials.json``) apply as well.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from runenv import settings
from runenv.errors import EnvSetupError

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def channels_for(spec_channels: Sequence[str]) -> tuple[str, ...]:
    return tuple(spec_channels) or settings.conda_default_channels()


def expand(text: str, environ: dict[str, str] | None = None) -> str:
    """``text`` with each ``${VAR}`` replaced by its value here."""
    values = os.environ if environ is None else environ

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise EnvSetupError(
                f"conda channel {text!r} needs ${{{name}}}, which is not set here",
                hint=f"set {name} in the environment of runenv (and of every node)",
                step="conda",
            )
        return values[name]

    return _VARIABLE.sub(value, text)


def hidden(text: str, channels: Sequence[str]) -> str:
    """``text`` (a package or channel URL from a solve) with each expanded channel put back in
    its ``${VAR}`` form, so that no credential is written into a lock."""
    for channel in channels:
        if _VARIABLE.search(channel):
            expanded = expand(channel).rstrip("/")
            if expanded and expanded in text:
                text = text.replace(expanded, channel.rstrip("/"))
    return text
