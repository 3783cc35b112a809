"""Packaging into remote stores end to end: the CLI into S3 (moto), make_portable into GCS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runenv import RuntimeEnv
from runenv.packaging import unpack
from runenv.storage import download
from runenv.upload import make_portable

if TYPE_CHECKING:
    from conftest import MotoS3


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "main.py").write_text("from pkg import value\nprint(value)\n" * 20)
    (root / "pkg" / "__init__.py").write_text("value = 42\n")
    (root / "big.log").write_text("noise\n" * 1000)
    for path in root.rglob("*"):  # older than the hash cache's 2 s racy window
        os.utime(path, (1_700_000_000, 1_700_000_000))
    return root


def package_json(project: Path, upload_path: str) -> dict[str, object]:
    command = [sys.executable, "-m", "runenv", "package", str(project), "--json"]
    command += ["--upload-path", upload_path, "--exclude", "*.log"]
    result = subprocess.run(
        command, capture_output=True, text=True, env=dict(os.environ), timeout=120
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_package_to_s3_then_no_second_put(
    project: Path, s3_bucket: str, moto_s3: MotoS3, tmp_path: Path
) -> None:
    first = package_json(project, f"s3://{s3_bucket}/jobs")
    key = f"jobs/pkgs/{first['digest']}.zip"
    assert first["uri"] == f"s3://{s3_bucket}/{key}"
    assert first["uploaded"] is True
    second = package_json(project, f"s3://{s3_bucket}/jobs")
    assert (second["uploaded"], second["uri"]) == (False, first["uri"])
    assert second["files_read"] == 0
    assert moto_s3.count_requests("PUT", f"/{s3_bucket}/{key}") == 1

    download(str(first["uri"]), tmp_path / "fetched.zip")
    with zipfile.ZipFile(tmp_path / "fetched.zip") as archive:
        assert archive.getinfo("main.py").compress_type == zipfile.ZIP_DEFLATED
    out = unpack(tmp_path / "fetched.zip", tmp_path / "unpacked")
    assert (out / "pkg" / "__init__.py").read_text() == "value = 42\n"
    assert not (out / "big.log").exists()


def test_make_portable_into_gcs(project: Path, gcs_bucket: str, tmp_path: Path) -> None:
    env = RuntimeEnv(
        working_dir=str(project),
        py_modules=[str(project / "pkg")],
        excludes=["*.log"],
        upload_path=f"gs://{gcs_bucket}/runenv",
    )
    portable = make_portable(env)
    assert portable.working_dir is not None
    assert portable.working_dir.startswith(f"gs://{gcs_bucket}/runenv/pkgs/")
    download(portable.py_modules[0], tmp_path / "module.zip")
    out = unpack(tmp_path / "module.zip", tmp_path / "module")
    assert (out / "pkg" / "__init__.py").read_text() == "value = 42\n"
    assert make_portable(env) == portable
