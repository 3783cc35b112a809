"""package_directory: determinism, digest, size limit, hash cache and dedup."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from trees import TreeBuilder, age

from runenv import PackagingError
from runenv.packaging import archive as archive_module
from runenv.packaging import package_directory, package_file, upload_file_as_is
from runenv.storage import Store

SOURCE: dict[str, str | bytes] = {
    "main.py": "print('hello')\n" * 50,
    "pkg/__init__.py": "",
    "pkg/util.py": "def f():\n    return 1\n",
    "bin/run.sh": "#!/bin/sh\necho run\n",
    "blob.bin": os.urandom(300_000),
    "empty/": "",
}


def archive_path(store: Store, uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def test_uri_is_pkgs_digest_zip(make_tree: TreeBuilder, store: Store) -> None:
    package = package_directory(make_tree(SOURCE), store)
    assert package.uri == f"{store.base_uri}/pkgs/{package.digest}.zip"
    assert len(package.digest) == 64
    assert package.uploaded
    assert archive_path(store, package.uri).is_file()


@pytest.mark.parametrize("compress", [False, True])
def test_same_tree_gives_byte_identical_archives(
    make_tree: TreeBuilder, tmp_path: Path, compress: bool
) -> None:
    first, second = make_tree(SOURCE), make_tree(SOURCE)
    (second / "main.py").chmod(0o600)  # permissions other than the exec bit don't matter
    os.utime(second / "pkg" / "util.py", (1, 1))
    one = package_directory(first, Store(str(tmp_path / "s1")), compress=compress)
    two = package_directory(second, Store(str(tmp_path / "s2")), compress=compress)
    assert one.digest == two.digest
    bytes_one = archive_path(Store(str(tmp_path / "s1")), one.uri).read_bytes()
    bytes_two = archive_path(Store(str(tmp_path / "s2")), two.uri).read_bytes()
    assert bytes_one == bytes_two


@pytest.mark.parametrize("compress", [False, True])
def test_archive_layout(make_tree: TreeBuilder, store: Store, compress: bool) -> None:
    root = make_tree(SOURCE)
    (root / "bin" / "run.sh").chmod(0o755)
    package = package_directory(root, store, compress=compress)
    with zipfile.ZipFile(archive_path(store, package.uri)) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        assert names == sorted(names)
        assert set(names) == {
            "bin/run.sh",
            "blob.bin",
            "empty/",
            "main.py",
            "pkg/__init__.py",
            "pkg/util.py",
        }
        by_name = {info.filename: info for info in infos}
        assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert by_name["bin/run.sh"].external_attr >> 16 & 0o777 == 0o755
        assert by_name["main.py"].external_attr >> 16 & 0o777 == 0o644
        text_method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        assert by_name["main.py"].compress_type == text_method
        assert by_name["blob.bin"].compress_type == zipfile.ZIP_STORED  # random: never deflated
        assert archive.read("main.py") == (root / "main.py").read_bytes()
        assert archive.testzip() is None


def test_local_store_gets_stored_entries_remote_ones_deflated(
    make_tree: TreeBuilder, tmp_path: Path
) -> None:
    root = make_tree(SOURCE)
    local = package_directory(root, Store(str(tmp_path / "local")))
    deflated = package_directory(root, Store(str(tmp_path / "other")), compress=True)
    assert local.digest == deflated.digest  # the digest is about content, not encoding
    assert deflated.archive_bytes is not None and local.archive_bytes is not None
    assert deflated.archive_bytes < local.archive_bytes


def test_digest_changes_with_content_name_mode_and_empty_dirs(
    make_tree: TreeBuilder, store: Store
) -> None:
    base = package_directory(make_tree(SOURCE), store).digest
    variants = [
        {**SOURCE, "pkg/util.py": "def f():\n    return 2\n"},
        {**{k: v for k, v in SOURCE.items() if k != "main.py"}, "main2.py": SOURCE["main.py"]},
        {**SOURCE, "another-empty/": ""},
        {k: v for k, v in SOURCE.items() if k != "empty/"},
    ]
    digests = {package_directory(make_tree(files), store).digest for files in variants}
    root = make_tree(SOURCE)
    (root / "main.py").chmod(0o755)
    digests.add(package_directory(root, store).digest)
    assert base not in digests
    assert len(digests) == len(variants) + 1


def test_duplicate_files_do_not_cancel_out(make_tree: TreeBuilder, store: Store) -> None:
    """A XOR of per-file hashes (Ray's) makes two equal files vanish; a manifest does not."""
    plain = package_directory(make_tree({"a.py": "a"}), store).digest
    with_pair = package_directory(make_tree({"a.py": "a", "x": "same", "y": "same"}), store)
    other_pair = package_directory(make_tree({"a.py": "a", "x": "diff", "y": "diff"}), store)
    assert len({plain, with_pair.digest, other_pair.digest}) == 3


def test_all_excluded_tree_is_the_empty_package(make_tree: TreeBuilder, store: Store) -> None:
    everything_out = package_directory(
        make_tree({"a.log": "a", "b.log": "b"}), store, excludes=["*.log"]
    )
    empty = package_directory(make_tree({}), store)
    something = package_directory(make_tree({"a.py": ""}), store)
    assert everything_out.digest == empty.digest
    assert everything_out.files == []
    assert something.digest != empty.digest


def test_excluded_file_does_not_change_the_package(make_tree: TreeBuilder, store: Store) -> None:
    one = package_directory(make_tree({**SOURCE, "x.log": "one"}), store, excludes=["*.log"])
    two = package_directory(make_tree({**SOURCE, "x.log": "two"}), store, excludes=["*.log"])
    three = package_directory(make_tree(SOURCE), store, excludes=["*.log"])
    assert one.digest == two.digest == three.digest
    assert not two.uploaded


def test_size_limit_error_lists_largest_and_writes_nothing(
    make_tree: TreeBuilder, store: Store
) -> None:
    files: dict[str, str | bytes] = {f"data/part{i:02}.bin": b"x" * (1000 + i) for i in range(12)}
    files["models/big.ckpt"] = b"m" * 50_000
    files["main.py"] = "print(1)\n"
    with pytest.raises(PackagingError) as caught:
        package_directory(make_tree(files), store, max_bytes=20_000)
    message = caught.value.message
    assert "is 60.6 KiB after excludes, over the limit of 19.5 KiB" in message
    largest = message.split("largest files:\n")[1].split("largest directories:")[0]
    assert largest.splitlines()[0].endswith("models/big.ckpt")
    assert len(largest.splitlines()) == 10
    assert "data/part00.bin" not in largest  # the 10 largest only
    assert "models/" in message.split("largest directories:")[1]
    assert "excludes" in (caught.value.hint or "")
    assert "remote URI" in (caught.value.hint or "")
    assert not Path(store.base_uri.removeprefix("file://")).exists()


def test_size_limit_from_environment(
    make_tree: TreeBuilder, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNENV_MAX_PACKAGE_MB", "0.001")
    with pytest.raises(PackagingError, match=r"over the limit of 1\.0 KiB"):
        package_directory(make_tree({"a.bin": b"a" * 2000}), store)


def test_size_limit_counts_only_included_content(make_tree: TreeBuilder, store: Store) -> None:
    root = make_tree({"a.py": "a", "data/huge.bin": b"h" * 50_000})
    package = package_directory(root, store, max_bytes=10_000, excludes=["data/"])
    assert package.total_bytes == 1


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every file the archive writer opens for reading."""
    opened: list[str] = []
    real_open = open

    def spy(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "r" in mode and "b" in mode:
            opened.append(str(path))
        return real_open(path, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(archive_module, "open", spy, raising=False)
    return opened


def test_unchanged_tree_is_not_read_again(
    make_tree: TreeBuilder, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(SOURCE)
    first = package_directory(root, store)
    assert first.files_read == 5
    opened = count_reads(monkeypatch)
    again = package_directory(root, store)
    assert (again.digest, again.uploaded, again.files_read) == (first.digest, False, 0)
    assert opened == []


def test_touched_file_keeps_digest_changed_file_changes_it(
    make_tree: TreeBuilder, store: Store
) -> None:
    root = make_tree(SOURCE)
    first = package_directory(root, store)
    (root / "main.py").write_text(SOURCE["main.py"])  # type: ignore[arg-type]
    age(root)
    touched = package_directory(root, store)
    assert touched.digest == first.digest
    assert touched.files_read == 5  # the stat changed, so the tree is read once more
    (root / "main.py").write_text("print('changed')\n")
    age(root)
    changed = package_directory(root, store)
    assert changed.digest != first.digest
    assert changed.uploaded


def test_recently_modified_file_is_hashed_again(make_tree: TreeBuilder, store: Store) -> None:
    """A file changed within the timestamp granularity could keep its mtime: never trusted."""
    root = make_tree({"a.py": "a"})
    (root / "fresh.py").write_text("fresh")  # just written: racily clean
    package_directory(root, store)
    assert package_directory(root, store).files_read == 2


def test_corrupt_hash_cache_is_ignored(
    make_tree: TreeBuilder, store: Store, runenv_home: Path
) -> None:
    root = make_tree(SOURCE)
    first = package_directory(root, store)
    database = runenv_home / "cache" / "file-hashes-v1.sqlite"
    for path in database.parent.iterdir():
        path.write_bytes(b"not a database")
    assert package_directory(root, store).digest == first.digest


def test_store_that_already_has_the_archive_gets_no_upload(
    make_tree: TreeBuilder, tmp_path: Path
) -> None:
    root = make_tree(SOURCE)
    store = Store(str(tmp_path / "shared"))
    first = package_directory(root, store)
    target = archive_path(store, first.uri)
    before = target.stat()
    second = package_directory(make_tree(SOURCE), store)  # another tree, same content
    assert (second.uploaded, second.uri) == (False, first.uri)
    assert target.stat().st_mtime_ns == before.st_mtime_ns


def test_py_module_directory_keeps_its_name(make_tree: TreeBuilder, store: Store) -> None:
    root = make_tree({"__init__.py": "", "core.py": "x = 1\n"})
    named = root.parent / "mylib"
    root.rename(named)
    package = package_directory(named, store, top_level_directory=True)
    assert package.files == ["mylib/__init__.py", "mylib/core.py"]


def test_single_py_file(make_tree: TreeBuilder, store: Store) -> None:
    root = make_tree({"helpers.py": "x = 1\n"})
    package = package_file(root / "helpers.py", store)
    with zipfile.ZipFile(archive_path(store, package.uri)) as archive:
        assert archive.namelist() == ["helpers.py"]


def test_wheel_is_uploaded_as_is_under_its_name(make_tree: TreeBuilder, store: Store) -> None:
    root = make_tree({"demo-1.0-py3-none-any.whl": b"PK wheel bytes"})
    package = upload_file_as_is(root / "demo-1.0-py3-none-any.whl", store)
    assert package.uri == f"{store.base_uri}/pkgs/{package.digest}/demo-1.0-py3-none-any.whl"
    assert archive_path(store, package.uri).read_bytes() == b"PK wheel bytes"


def test_not_a_directory(tmp_path: Path, store: Store) -> None:
    with pytest.raises(PackagingError, match="not a directory"):
        package_directory(tmp_path / "missing", store)
