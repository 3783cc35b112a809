"""Sizes as people write and read them."""

from __future__ import annotations

import pytest

from runenv.errors import RunenvError
from runenv.units import human_bytes, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("512", 512),
        ("2K", 2048),
        ("1.5M", 1572864),
        ("10G", 10 * 1024**3),
        ("10GiB", 10 * 1024**3),
        ("3gb", 3 * 1024**3),
        ("1T", 1024**4),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "10Q", ""])
def test_parse_size_refuses_nonsense(text: str) -> None:
    with pytest.raises(RunenvError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536 * 1024, "1.5 MiB"),
        (5 * 1024**4, "5120.0 GiB"),
    ],
)
def test_human_bytes(count: int, expected: str) -> None:
    assert human_bytes(count) == expected
