"""unpack(): round trips, the single-directory lift, and refusing archives that escape."""

from __future__ import annotations

import io
import re
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from trees import TreeBuilder

from runenv import PackagingError, UnsafeArchiveError
from runenv.packaging import package_directory, unpack
from runenv.storage import Store


def make_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def make_tar(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def leftovers(parent: Path) -> list[str]:
    return sorted(path.name for path in parent.iterdir())


def test_round_trip_of_a_package(make_tree: TreeBuilder, store: Store, tmp_path: Path) -> None:
    root = make_tree({"main.py": "print(1)\n", "bin/tool": "#!/bin/sh\n", "empty/": ""})
    (root / "bin" / "tool").chmod(0o755)
    package = package_directory(root, store)
    out = unpack(Path(package.uri.removeprefix("file://")), tmp_path / "out")
    assert (out / "main.py").read_text() == "print(1)\n"
    assert (out / "bin" / "tool").stat().st_mode & 0o777 == 0o755
    assert (out / "main.py").stat().st_mode & 0o777 == 0o644
    assert (out / "empty").is_dir()


def test_tar_gz_round_trip(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "code.tar.gz", {"pkg/a.py": b"a", "b.py": b"b"})
    out = unpack(archive, tmp_path / "out")
    assert (out / "pkg" / "a.py").read_bytes() == b"a"


def test_single_top_level_directory_is_lifted(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "repo.zip", {"repo-main/main.py": b"m", "repo-main/x/y": b"y"})
    out = unpack(archive, tmp_path / "lifted", lift_single_directory=True)
    assert sorted(p.name for p in out.iterdir()) == ["main.py", "x"]
    kept = unpack(archive, tmp_path / "kept")
    assert [p.name for p in kept.iterdir()] == ["repo-main"]


def test_no_lift_when_there_are_several_top_level_entries(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"top/a.py": b"a", "README": b"r"})
    out = unpack(archive, tmp_path / "out", lift_single_directory=True)
    assert sorted(p.name for p in out.iterdir()) == ["README", "top"]


@pytest.mark.parametrize(
    ("entries", "bad"),
    [
        ({"../evil.py": b"x"}, "../evil.py"),
        ({"ok.py": b"ok", "sub/../../evil.py": b"x"}, "sub/../../evil.py"),
        ({"/tmp/evil.py": b"x"}, "/tmp/evil.py"),
        ({"..\\evil.py": b"x"}, "..\\evil.py"),
    ],
)
def test_zip_slip_is_refused(tmp_path: Path, entries: dict[str, bytes], bad: str) -> None:
    archive = make_zip(tmp_path / "evil.zip", entries)
    target = tmp_path / "dest" / "out"
    with pytest.raises(UnsafeArchiveError) as caught:
        unpack(archive, target)
    assert repr(bad) in caught.value.message
    assert not target.exists()
    assert leftovers(target.parent) == []
    assert not (tmp_path / "evil.py").exists()


def test_zip_symlink_escaping_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "evil.zip", {}, links={"link": "../../etc"})
    with pytest.raises(UnsafeArchiveError, match=re.escape("'link' is a link to '../../etc'")):
        unpack(archive, tmp_path / "out")


def test_tar_symlink_escape_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = make_tar(
        tmp_path / "evil.tar.gz", {"escape/planted.txt": b"pwned"}, links={"escape": str(outside)}
    )
    with pytest.raises(UnsafeArchiveError, match="'escape' is a link to"):
        unpack(archive, tmp_path / "out")
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "out").exists()


def test_tar_relative_symlink_escape_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "evil.tgz", {}, links={"a/up": "../../.."})
    with pytest.raises(UnsafeArchiveError, match=re.escape("'a/up' is a link to '../../..'")):
        unpack(archive, tmp_path / "out")


def test_tar_absolute_path_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "evil.tar.gz", {"/etc/evil": b"x"})
    with pytest.raises(UnsafeArchiveError, match="'/etc/evil' points outside"):
        unpack(archive, tmp_path / "out")


def test_links_inside_the_archive_are_kept(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "ok.tar.gz", {"real/a.py": b"a"}, links={"alias": "real"})
    out = unpack(archive, tmp_path / "out")
    assert (out / "alias" / "a.py").read_bytes() == b"a"


def test_corrupt_archive(tmp_path: Path) -> None:
    good = make_zip(tmp_path / "good.zip", {"a.py": b"a" * 10_000})
    corrupt = tmp_path / "corrupt.zip"
    data = bytearray(good.read_bytes())
    data[40:60] = b"\0" * 20  # damage the compressed data, keep the directory
    corrupt.write_bytes(bytes(data))
    with pytest.raises(PackagingError, match=r"cannot unpack .*corrupt\.zip"):
        unpack(corrupt, tmp_path / "out")
    assert leftovers(tmp_path) == ["corrupt.zip", "good.zip"]


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_text("hello")
    with pytest.raises(PackagingError, match="is not a zip or tar archive"):
        unpack(tmp_path / "x.zip", tmp_path / "out")


def test_destination_must_not_exist(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"a.py": b"a"})
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        unpack(archive, tmp_path / "out")


@pytest.mark.filterwarnings("ignore:Duplicate name")  # the crafted zip repeats a name on purpose
def test_chain_of_links_cannot_lead_outside(tmp_path: Path) -> None:
    archive = tmp_path / "chain.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for name, target in (("d", "."), ("t", "d/d/d/d/../../../../escaped")):
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            out.writestr(info, target)
        out.writestr("t", "written through the link")
    with pytest.raises(UnsafeArchiveError, match="'t' is a link to"):
        unpack(archive, tmp_path / "dest" / "out")
    assert not list(tmp_path.rglob("escaped"))


def test_entry_through_an_unpacked_link_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "via.zip", {}, links={"up": "d/..", "up/L": "x"})
    with pytest.raises(UnsafeArchiveError, match="'up/L' points outside"):
        unpack(archive, tmp_path / "out")


def test_tar_hardlink_through_a_symlink_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    archive = tmp_path / "hard.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        link = tarfile.TarInfo("up")
        link.type, link.linkname = tarfile.SYMTYPE, "."
        out.addfile(link)
        hard = tarfile.TarInfo("h")
        hard.type, hard.linkname = tarfile.LNKTYPE, "up/victim"
        out.addfile(hard)
        data = b"overwritten"
        body = tarfile.TarInfo("h")
        body.size = len(data)
        out.addfile(body, io.BytesIO(data))
    with pytest.raises(UnsafeArchiveError):
        unpack(archive, tmp_path / "out")
    assert victim.read_text() == "keep me"


def test_encrypted_or_clashing_archives_are_packaging_errors(tmp_path: Path) -> None:
    clash = make_zip(tmp_path / "clash.zip", {"a": b"file", "a/b": b"file under a file"})
    with pytest.raises(PackagingError, match="cannot unpack"):
        unpack(clash, tmp_path / "out")
    encrypted = tmp_path / "encrypted.zip"
    plain = bytearray(make_zip(tmp_path / "plain.zip", {"a.py": b"x"}).read_bytes())
    plain[6] |= 0x01  # the "encrypted" flag in the local header...
    central = plain.rfind(b"PK\x01\x02")
    plain[central + 8] |= 0x01  # ...and in the central directory
    encrypted.write_bytes(bytes(plain))
    with pytest.raises(PackagingError, match="cannot unpack"):
        unpack(encrypted, tmp_path / "out2")
