"""Solve (and install) with py-rattler in a process of its own; how it exits is chosen.

    python tests/rattler_solve.py --channel URL [--platform linux-64] [--prefix P --cache C]
        [--exit normal|release|os-exit] SPEC...

Prints one JSON line: ``{"records": [{"name", "version", "url", "sha256"}, ...],
"solve_seconds": S, "install_seconds": I}`` (I is 0 without ``--prefix``); an
unsolvable spec prints the solver's message on stderr and exits 3. ``--exit`` picks the end:

- ``normal``: return from main and let the interpreter finalize (may crash, see below);
- ``release``: ``del`` every py-rattler object and ``gc.collect()`` before finalizing;
- ``os-exit``: flush stdout/stderr, then ``os._exit(code)``: no finalization at all.

py-rattler 0.28 completes each awaited call from a tokio thread that still drops Python
objects (the loop's ``call_soon_threadsafe`` method) after the result has woken the main
thread; if the interpreter finalizes meanwhile that thread segfaults or aborts (exit 139/134).
Only ``os-exit`` (or living on after the call) avoids it; /work/conda-notes.md has the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

UNSOLVABLE_EXIT = 3


async def solve_and_install(arguments: argparse.Namespace, seconds: dict[str, float]) -> list[Any]:
    from rattler import install, solve

    platforms = [arguments.platform, "noarch"]
    start = time.perf_counter()
    records: list[Any] = await solve([arguments.channel], arguments.specs, platforms=platforms)
    seconds["solve_seconds"] = time.perf_counter() - start
    if arguments.prefix:
        start = time.perf_counter()
        await install(
            records,
            Path(arguments.prefix),
            cache_dir=Path(arguments.cache),
            show_progress=False,
        )
        seconds["install_seconds"] = time.perf_counter() - start
    return records


def describe(records: list[Any], seconds: dict[str, float]) -> dict[str, Any]:
    return {
        **seconds,
        "records": [
            {
                "name": record.name.normalized,
                "version": str(record.version),
                "url": str(record.url),
                "sha256": record.sha256.hex() if record.sha256 else "",
            }
            for record in records
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channel", required=True)
    parser.add_argument("--platform", default="")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--cache", default="")
    parser.add_argument("--exit", choices=["normal", "release", "os-exit"], default="os-exit")
    parser.add_argument("specs", nargs="+")
    arguments = parser.parse_args()
    if not arguments.platform:
        from rattler import Subdir

        arguments.platform = str(Subdir.current())
    code = 0
    try:
        seconds = {"solve_seconds": 0.0, "install_seconds": 0.0}
        records = asyncio.run(solve_and_install(arguments, seconds))
        print(json.dumps(describe(records, seconds)))
    except Exception as error:  # the solver's own message is what the tests look at
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        records, code = [], UNSOLVABLE_EXIT
    if arguments.exit == "release":
        del records
        gc.collect()
    elif arguments.exit == "os-exit":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
