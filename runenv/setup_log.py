"""The setup log: what materializing an env did, for the user to read when it fails."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import IO

from runenv.redact import redact_text

TAIL_LINES = 20


class SetupLog:
    """An append-only log file shared by every step (and process) setting up one env."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path, "a", encoding="utf-8") as handle:
            for line in redact_text(text).splitlines() or [""]:
                handle.write(f"[{stamp}] {line}\n")

    def open_for_output(self) -> IO[bytes]:
        """A binary handle a subprocess can write its stdout and stderr to."""
        return open(self.path, "ab")

    def tail(self, lines: int = TAIL_LINES, since: int = 0) -> str:
        """The last ``lines`` lines written at or after byte offset ``since``."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(since)
                kept = deque(handle, maxlen=lines)
        except FileNotFoundError:
            return ""
        return b"".join(kept).decode("utf-8", errors="replace").rstrip()

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0
