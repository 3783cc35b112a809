"""What comes from a store is checked before the cache keeps it: digests, bombs, links."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import fsspec
import pytest

from runenv import RuntimeEnv
from runenv.errors import EnvSetupError
from runenv.materialize import materialize, prepare
from runenv.storage import Store


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def published(home: Path, kind: str) -> list[str]:
    bucket = home / "runtime_resources" / f"{kind}-v1"
    if not bucket.is_dir():
        return []
    return [p.name for p in bucket.iterdir() if p.is_dir() and not p.name.startswith(".")]


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "main.py").write_text("print('the original')\n")
    return root


@pytest.mark.parametrize("where", ["s3", "file"])
def test_a_replaced_archive_is_refused_by_its_digest(
    where: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_path = (
        f"s3://{request.getfixturevalue('s3_bucket')}/jobs"
        if where == "s3"
        else (tmp_path / "store").as_uri()
    )
    env = prepare(RuntimeEnv(working_dir=str(project(tmp_path)), upload_path=upload_path))
    uri = str(env.working_dir)
    name = uri.removeprefix(upload_path + "/")
    assert name.startswith("pkgs/") and name.endswith(".zip")
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as archive:
        archive.writestr("main.py", "print('replaced')\n")
    with fsspec.open(uri, "wb") as sink:  # someone with write access to the bucket
        sink.write(forged.read_bytes())
    node = tmp_path / "another-node"  # whose cache has never seen this code
    monkeypatch.setenv("RUNENV_HOME", str(node))
    with pytest.raises(EnvSetupError, match="does not match the digest in its name"):
        materialize(env)
    assert published(node, "working_dir") == []


def test_a_bomb_from_a_bucket_never_reaches_the_cache(
    s3_bucket: str, tmp_path: Path, home: Path
) -> None:
    bomb = tmp_path / "bomb.zip"
    with (
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("zeros.bin", "w") as sink,
    ):
        for _ in range(64):
            sink.write(bytes(1 << 20))
    Store(f"s3://{s3_bucket}").put_file(bomb, "code/bomb.zip")
    with pytest.raises(EnvSetupError, match="times its own size") as refused:
        materialize(RuntimeEnv(working_dir=f"s3://{s3_bucket}/code/bomb.zip"))
    assert "RUNENV_MAX_COMPRESSION_RATIO" in str(refused.value.hint)
    assert published(home, "working_dir") == []


@pytest.mark.parametrize("field", ["working_dir", "py_modules"])
def test_link_order_cannot_leave_a_link_to_the_host(field: str, tmp_path: Path, home: Path) -> None:
    archive = tmp_path / "links.zip"
    escape = "/".join(["q"] * 20 + [".."] * 20 + [*tmp_path.parts[1:], "secret"])
    with zipfile.ZipFile(archive, "w") as out:
        for name, target in (("pkg/esc", escape), ("pkg/q", ".")):
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            out.writestr(info, target)
        out.writestr("pkg/__init__.py", "")
    (tmp_path / "secret").write_text("host file")
    env = RuntimeEnv.from_dict(
        {field: archive.as_uri() if field == "working_dir" else [archive.as_uri()]}
    )
    with pytest.raises(EnvSetupError, match="'pkg/esc' is a link to"):
        materialize(env)
    assert published(home, field) == []
