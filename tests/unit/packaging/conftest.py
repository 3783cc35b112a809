"""Fixtures for packaging tests: a tree builder and an isolated store and RUNENV_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest
from trees import TreeBuilder, write_tree

from runenv.storage import Store


@pytest.fixture(autouse=True)
def runenv_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "runenv-home"
    monkeypatch.setenv("RUNENV_HOME", str(home))
    monkeypatch.delenv("RUNENV_MAX_PACKAGE_MB", raising=False)
    monkeypatch.delenv("RUNENV_IGNORE_GITIGNORE", raising=False)
    return home


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "store"))


@pytest.fixture
def make_tree(tmp_path: Path) -> TreeBuilder:
    counter = iter(range(1000))

    def build(files: dict[str, str | bytes]) -> Path:
        return write_tree(tmp_path / f"tree{next(counter)}", files)

    return build
