"""``python -m runenv``: the same as the ``runenv`` command."""

from __future__ import annotations

from runenv.cli import main

main()
