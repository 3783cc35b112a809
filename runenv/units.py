"""Sizes in bytes, as people read and write them."""

from __future__ import annotations

from runenv.errors import RunenvError


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def parse_size(text: str) -> int:
    """``10G``, ``500M``, ``2048K`` or a number of bytes."""
    units = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (cleaned[:-1], cleaned[-1]) if cleaned[-1:].isalpha() else (cleaned, "")
    try:
        value = float(number)
    except ValueError:
        value = -1
    total = value * units[unit] if unit in units else -1.0
    if not 0 <= total < float("inf"):  # NaN fails both
        raise RunenvError(f"not a size: {text!r}", hint="write e.g. 10G, 500M or 0")
    return int(total)
