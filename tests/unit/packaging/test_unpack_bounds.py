"""Bounded unpacking: size, entry count, depth and compression ratio, for unpack and for the
job server's upload check alike; the error names the bound and the setting that raises it."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from runenv import UnsafeArchiveError
from runenv.packaging import unpack
from runenv.packaging.archive import verify_package
from runenv.packaging.unpack import Budget, UnpackLimits

MIB = 1 << 20


def zip_bomb(path: Path, expanded_mib: int) -> Path:
    """One deflated entry of zeros: a few hundred KiB on disk."""
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("zeros.bin", "w", force_zip64=True) as sink,
    ):
        for _ in range(expanded_mib):
            sink.write(bytes(MIB))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.zip", 512)


def test_a_zip_bomb_is_refused_before_it_is_written(bomb: Path, tmp_path: Path) -> None:
    assert bomb.stat().st_size < MIB
    with pytest.raises(UnsafeArchiveError, match="RUNENV_MAX_COMPRESSION_RATIO") as refused:
        unpack(bomb, tmp_path / "out")
    assert "declares over 200 times its own size" in refused.value.message
    assert list(tmp_path.iterdir()) == []  # nothing written, no staging left


def test_the_upload_check_refuses_a_bomb_without_expanding_it(bomb: Path) -> None:
    name = f"pkgs/{'0' * 64}.zip"
    with pytest.raises(UnsafeArchiveError, match="declares over"):
        verify_package(bomb, name)


def test_total_size_is_checked_while_writing(tmp_path: Path) -> None:
    """The stream is counted, whatever the headers say: a budget fed more than declared."""
    budget = Budget(zip_bomb(tmp_path / "small.zip", 1), UnpackLimits(2 * MIB, 10, 10, 1e9))
    with pytest.raises(UnsafeArchiveError, match=r"expands to over 2\.0 MiB"):
        budget.copy(io.BytesIO(bytes(3 * MIB)), None)
    assert budget.produced <= 3 * MIB


def test_the_size_limit_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "big.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        info = tarfile.TarInfo("data.bin")
        info.size = 3 * MIB
        out.addfile(info, io.BytesIO(bytes(3 * MIB)))
    monkeypatch.setenv("RUNENV_MAX_UNPACK_MB", "2")
    monkeypatch.setenv("RUNENV_MAX_COMPRESSION_RATIO", "100000")
    with pytest.raises(UnsafeArchiveError, match="RUNENV_MAX_UNPACK_MB"):
        unpack(archive, tmp_path / "out")
    monkeypatch.setenv("RUNENV_MAX_UNPACK_MB", "4")
    assert (unpack(archive, tmp_path / "out") / "data.bin").stat().st_size == 3 * MIB


def test_entry_count_and_depth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as out:
        for index in range(20):
            out.writestr(f"f{index}.py", "")
    monkeypatch.setenv("RUNENV_MAX_UNPACK_ENTRIES", "10")
    with pytest.raises(UnsafeArchiveError, match="holds 20 entries, over the limit of 10"):
        unpack(many, tmp_path / "out")
    deep = tmp_path / "deep.zip"
    with zipfile.ZipFile(deep, "w") as out:
        out.writestr("/".join(["d"] * 2000) + "/leaf.py", "")
    with pytest.raises(UnsafeArchiveError, match="holds an entry 2001 directories deep") as refused:
        unpack(deep, tmp_path / "out2")
    assert "RUNENV_MAX_UNPACK_DEPTH" in str(refused.value.hint)
