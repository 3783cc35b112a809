"""The quick-start job: reads a file from its working dir and prints an env var."""

from __future__ import annotations

import os
from pathlib import Path

greeting = Path("greeting.txt").read_text().strip()
print(f"{greeting} (LOG_LEVEL={os.environ.get('LOG_LEVEL', 'unset')})")
