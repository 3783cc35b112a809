"""Reading requirements.txt files into a runtime_env."""

from __future__ import annotations

from pathlib import Path

import pytest

from runenv import RuntimeEnv, SpecError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_comments_blank_lines_includes_and_options(tmp_path: Path) -> None:
    write(tmp_path / "reqs" / "base.txt", "six==1.16.0  # pinned\nattrs\n")
    requirements = write(
        tmp_path / "reqs" / "requirements.txt",
        "# the project's deps\n"
        "\n"
        "-r base.txt\n"
        "requests>=2 \\\n"
        "    ; python_version >= '3.8'\n"
        "--index-url https://mirror.example/simple\n"
        "--extra-index-url=https://extra.example/simple\n"
        "-f ./wheels\n"
        "--no-index\n"
        "six==1.16.0\n",
    )
    pip = RuntimeEnv.from_dict({"pip": str(requirements)}).pip
    assert pip is not None
    assert pip.packages == ("six==1.16.0", "attrs", "requests>=2 ; python_version >= '3.8'")
    assert pip.install_options == (
        "--index-url=https://mirror.example/simple",
        "--extra-index-url=https://extra.example/simple",
        f"--find-links={tmp_path / 'reqs' / 'wheels'}",
        "--no-index",
    )


def test_relative_requirements_path_uses_base_dir(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "six\n")
    pip = RuntimeEnv.from_dict({"pip": "requirements.txt"}, base_dir=tmp_path).pip
    assert pip is not None and pip.packages == ("six",)


def test_packages_file_in_mapping_form_merges_options(tmp_path: Path) -> None:
    write(tmp_path / "r.txt", "six\n-i https://mirror/simple\n")
    env = RuntimeEnv.from_dict(
        {"uv": {"packages": "r.txt", "uv_pip_install_options": ["--no-deps"]}}, base_dir=tmp_path
    )
    assert env.to_dict()["uv"] == {
        "packages": ["six"],
        "uv_check": False,
        "uv_pip_install_options": ["--index-url=https://mirror/simple", "--no-deps"],
    }


def test_include_cycle_is_read_once(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "-r b.txt\nsix\n")
    write(tmp_path / "b.txt", "-r a.txt\nattrs\n")
    pip = RuntimeEnv.from_dict({"pip": "a.txt"}, base_dir=tmp_path).pip
    assert pip is not None and pip.packages == ("attrs", "six")


def test_missing_include_names_the_line(tmp_path: Path) -> None:
    write(tmp_path / "r.txt", "six\n-r missing.txt\n")
    with pytest.raises(SpecError) as caught:
        RuntimeEnv.from_dict({"pip": "r.txt"}, base_dir=tmp_path)
    assert f"({tmp_path / 'r.txt'}:2)" in caught.value.message
    assert f"not found: {tmp_path / 'missing.txt'}" in caught.value.message


def test_editable_lines_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "r.txt", "-e ./mypkg\n")
    with pytest.raises(SpecError, match="editable requirement"):
        RuntimeEnv.from_dict({"pip": "r.txt"}, base_dir=tmp_path)


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "r.txt", "--trusted-host example.com\n")
    with pytest.raises(SpecError, match="unsupported option line"):
        RuntimeEnv.from_dict({"pip": "r.txt"}, base_dir=tmp_path)


def test_hashes_of_pip_compile_output_are_dropped(tmp_path: Path) -> None:
    write(
        tmp_path / "requirements.txt",
        "six==1.16.0 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n"
        "Attrs==23.1 --hash sha256:cc\n",
    )
    pip = RuntimeEnv.from_dict({"pip": "requirements.txt"}, base_dir=tmp_path).pip
    assert pip is not None and pip.packages == ("six==1.16.0", "attrs==23.1")
