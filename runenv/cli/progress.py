"""Showing setup stages: a live status line on a terminal, plain lines otherwise (stderr)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from runenv.redact import redact_text

if TYPE_CHECKING:
    from runenv.envs.setup import StageCallback

_VERBS = {
    "package": "packaging",
    "download": "downloading",
    "unpack": "unpacking",
    "solve": "solving",
    "resolve": "resolving",
    "install": "installing",
    "upload": "uploading",
    "build": "building a wheel from",
    "cached": "cached",
    "rebuilt": "rebuilt",
}


@contextmanager
def stage_reporter(quiet: bool = False) -> Iterator[StageCallback]:
    """A callback for materialize's stages, shown while the block runs."""
    if quiet:
        yield lambda stage, detail: None
        return
    if not sys.stderr.isatty():

        def plain(stage: str, detail: str) -> None:
            line = f"runenv: {_VERBS.get(stage, stage)} {redact_text(detail)}"
            print(line, file=sys.stderr, flush=True)

        yield plain
        return
    from rich.console import Console  # on use: only a terminal shows a live line
    from rich.markup import escape

    console = Console(stderr=True, highlight=False)
    started = time.monotonic()
    with console.status("setting up the runtime env") as status:

        def live(stage: str, detail: str) -> None:
            elapsed = time.monotonic() - started
            shown = escape(redact_text(detail))
            status.update(f"{_VERBS.get(stage, stage)} {shown} [dim]({elapsed:.1f}s)[/dim]")

        yield live
