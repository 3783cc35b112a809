"""runenv.store_layout: package names in a store, the digests they claim, URIs of archives."""

from __future__ import annotations

import pytest

from runenv import store_layout
from runenv.errors import StorageError

DIGEST = "ab" * 32


def test_names_and_the_digests_they_claim() -> None:
    assert store_layout.archive_name(DIGEST) == f"pkgs/{DIGEST}.zip"
    assert store_layout.as_is_name(DIGEST, "code.zip") == f"pkgs/{DIGEST}.zip"
    wheel = store_layout.as_is_name(DIGEST, "demo-1.0-py3-none-any.whl")
    assert wheel == f"pkgs/{DIGEST}/demo-1.0-py3-none-any.whl"
    for name in (store_layout.archive_name(DIGEST), wheel):
        assert store_layout.claimed_digest(name) == DIGEST
        served = store_layout.served_path(name)
        assert not served.startswith("pkgs/")
        assert store_layout.name_from_served_path(served) == name


@pytest.mark.parametrize(
    "name",
    [
        "pkgs/abc.zip",
        f"pkgs/{DIGEST}.tar",
        f"other/{DIGEST}.zip",
        f"pkgs/{DIGEST}/../../x.whl",
        f"pkgs/{DIGEST}/code.zip",
        f"pkgs/{DIGEST.upper()}.zip",
    ],
)
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(StorageError, match="not a package name"):
        store_layout.claimed_digest(name)


def test_digest_of_a_runenv_archive_uri() -> None:
    assert store_layout.runenv_archive_digest(f"s3://b/jobs/pkgs/{DIGEST}.zip") == DIGEST
    assert store_layout.runenv_archive_digest(f"https://h/pkgs/{DIGEST}.zip?v=1") == DIGEST
    assert store_layout.runenv_archive_digest("https://h/pkgs/code.zip") is None
    assert store_layout.runenv_archive_digest(f"gs://b/{DIGEST}.zip") is None
