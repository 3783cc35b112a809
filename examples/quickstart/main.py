"""The quick-start job: a package the host doesn't have, a file from the working dir, an env var."""

from __future__ import annotations

import os
from pathlib import Path

import cowsay  # installed by the runtime env, not on the host

greeting = Path("greeting.txt").read_text().strip()
cowsay.cow(f"{greeting} (LOG_LEVEL={os.environ.get('LOG_LEVEL', 'unset')})")
