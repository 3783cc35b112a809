"""The conda field: its forms, validation naming the field, the lock, channels, Ray's field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runenv import RuntimeEnv
from runenv.conda import channels
from runenv.conda.lock import CondaLock, current_platform
from runenv.conda.spec import CondaEnv
from runenv.errors import EnvSetupError, SpecError
from runenv.ray import translate

SHA = "ab" * 32


def error_of(conda: Any) -> str:
    with pytest.raises(SpecError) as caught:
        RuntimeEnv(conda=conda)
    assert caught.value.hint
    return caught.value.message


def package(name: str, version: str, **changes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "build": "0",
        "build_number": 0,
        "subdir": "noarch",
        "noarch": "generic",
        "depends": [],
        "constrains": [],
        "url": f"file:///chan/noarch/{name}-{version}-0.conda",
        "channel": "file:///chan/",
        "file_name": f"{name}-{version}-0.conda",
        "sha256": SHA,
        "md5": "cd" * 16,
        "size": 10,
        **changes,
    }


def lock_field(pip: list[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "platform": "linux-64",
        "python": "3.11.7",
        "channels": ["file:///chan"],
        "packages": [
            package("python", "3.11.7", subdir="linux-64", noarch=None),
            package("tinyfoo", "2.0"),
        ],
    }
    if pip is not None:
        data["pip"] = {"python": "3.11.7", "requirements": pip}
    return data


def test_inline_dict_and_environment_yml_give_one_canonical_form(tmp_path: Path) -> None:
    definition = {
        "name": "demo",
        "channels": ["conda-forge", "conda-forge"],
        "dependencies": [
            "python=3.11",
            " numpy>=1.26",
            {"pip": ["Requests", "--index-url=https://i.example/simple"]},
        ],
    }
    inline = RuntimeEnv(conda=definition).conda
    (tmp_path / "environment.yml").write_text(
        "name: demo\nprefix: /opt/x\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n"
        "  - numpy>=1.26\n  - pip:\n    - requests\n    - --index-url https://i.example/simple\n"
    )
    from_file = RuntimeEnv(conda=str(tmp_path / "environment.yml")).conda
    expected = {
        "name": "demo",
        "channels": ["conda-forge"],
        "dependencies": [
            "python=3.11",
            "numpy>=1.26",
            {"pip": ["requests", "--index-url https://i.example/simple"]},
        ],
    }
    assert inline == expected
    assert from_file == expected
    env = CondaEnv.from_field(expected)
    assert env.specs == ("python=3.11", "numpy>=1.26")
    assert env.pip == ("requests",)
    assert env.pip_options == ("--index-url", "https://i.example/simple")


@pytest.mark.parametrize(
    ("conda", "expected"),
    [
        (
            {"dependecies": []},
            "conda.dependecies: unknown field 'dependecies'; did you mean 'dependencies'?",
        ),
        (
            {"dependencies": ["numpy>>1"]},
            "runtime_env.conda.dependencies[0]: 'numpy>>1' is not a conda package spec",
        ),
        (
            {"dependencies": "numpy"},
            "runtime_env.conda.dependencies: expected a list of package specs, got str",
        ),
        (
            {"dependencies": [{"pipp": ["x"]}]},
            "runtime_env.conda.dependencies[0]: a mapping in dependencies is {pip: [...]}",
        ),
        (
            {"dependencies": [{"pip": ["--editable ."]}]},
            "runtime_env.conda.dependencies[0].pip[0]: '--editable .' is not a pip option",
        ),
        ({"dependencies": [{"pip": ["not a req!"]}]}, "runtime_env.conda.dependencies[0].pip[0]"),
        ({"channels": "conda-forge"}, "runtime_env.conda.channels: expected a list"),
        ({"channels": [""]}, "runtime_env.conda.channels[0]: expected a channel name or URL"),
        (
            {"variables": {"A": 1}},
            "runtime_env.conda.variables: expected a mapping of variable names to strings",
        ),
        ({"lock": {"platform": "linux-64"}}, "runtime_env.conda.lock: not a conda lock"),
        (
            {"dependencies": [{"pip": ["a"]}, {"pip": ["b"]}]},
            "runtime_env.conda.dependencies[1]: a second pip sub-list",
        ),
    ],
)
def test_validation_names_the_field(conda: dict[str, Any], expected: str) -> None:
    assert expected in error_of(conda)


def test_a_bad_environment_yml_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "env.yml").write_text("dependencies:\n  - numpy>>1\n")
    assert "runtime_env.conda.dependencies[0]: 'numpy>>1'" in error_of(str(tmp_path / "env.yml"))


def test_existing_envs_by_name_or_prefix_are_kept() -> None:
    assert RuntimeEnv(conda="my-env").conda == "my-env"
    assert RuntimeEnv(conda="/opt/conda/envs/x").conda == "/opt/conda/envs/x"


def test_lock_round_trips_and_refuses_a_bad_sha256() -> None:
    lock = CondaLock.from_field(lock_field(pip=["six==1.17.0"]))
    assert CondaLock.from_field(lock.to_field()) == lock
    assert [p.spec for p in lock.packages] == ["python 3.11.7 0", "tinyfoo 2.0 0"]
    env = RuntimeEnv(conda={"dependencies": ["tinyfoo"], "lock": lock.to_field()})
    assert CondaEnv.from_field(env.conda).lock == lock  # type: ignore[arg-type]
    bad = lock_field()
    bad["packages"][1]["sha256"] = "xyz"
    assert "sha256 'xyz' is not 64 hex digits" in error_of({"dependencies": [], "lock": bad})


def test_current_platform_is_rattlers() -> None:
    from rattler import Subdir

    assert current_platform() == str(Subdir.current())


def test_channels_default_to_the_setting_then_conda_forge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNENV_CONDA_CHANNELS", raising=False)
    assert channels.channels_for([]) == ("conda-forge",)
    monkeypatch.setenv("RUNENV_CONDA_CHANNELS", "https://mirror.example/cf, file:///srv/chan")
    assert channels.channels_for([]) == ("https://mirror.example/cf", "file:///srv/chan")
    assert channels.channels_for(["bioconda"]) == ("bioconda",)


def test_credentials_are_expanded_here_and_kept_out_of_locks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKEN", "s3cret")
    channel = "https://repo.example/t/${TOKEN}/main"
    assert channels.expand(channel) == "https://repo.example/t/s3cret/main"
    url = "https://repo.example/t/s3cret/main/noarch/a-1-0.conda"
    assert (
        channels.hidden(url, [channel]) == "https://repo.example/t/${TOKEN}/main/noarch/a-1-0.conda"
    )
    monkeypatch.delenv("TOKEN")
    with pytest.raises(EnvSetupError, match=r"needs \$\{TOKEN\}, which is not set"):
        channels.expand(channel)


def test_stock_ray_gets_the_locked_urls_and_pip_pins() -> None:
    conda = {
        "channels": ["file:///chan"],
        "dependencies": ["tinyfoo", {"pip": ["six", "--no-index", "--find-links /w"]}],
        "variables": {"MODE": "x"},
        "lock": lock_field(pip=["six==1.17.0"]),
    }
    ray = translate.to_ray(RuntimeEnv._from_canonical({"conda": conda}), "stock")
    assert ray["conda"] == {
        "channels": ["file:///chan"],
        "dependencies": [
            f"file:///chan/noarch/python-3.11.7-0.conda#{'cd' * 16}",
            f"file:///chan/noarch/tinyfoo-2.0-0.conda#{'cd' * 16}",
            {"pip": ["--no-index", "--find-links /w", "six==1.17.0"]},
        ],
    }
    assert ray["env_vars"] == {"MODE": "x"}
    named = translate.to_ray(RuntimeEnv._from_canonical({"conda": "my-env"}), "stock")
    assert named["conda"] == "my-env"


def test_pip_option_lines_in_their_forms() -> None:
    lines = [
        "--index-url https://i.example/simple?a=b",
        "--extra-index-url=https://j.example/simple",
        "-f /wheels",
        "-i https://k.example/simple",
        "--no-index",
        "six",
    ]
    conda = RuntimeEnv(conda={"dependencies": [{"pip": lines}]}).conda
    env = CondaEnv.from_field(conda)  # type: ignore[arg-type]
    assert env.pip == ("six",)
    assert env.pip_options == (
        "--index-url",
        "https://i.example/simple?a=b",
        "--extra-index-url",
        "https://j.example/simple",
        "--find-links",
        "/wheels",
        "--index-url",
        "https://k.example/simple",
        "--no-index",
    )
