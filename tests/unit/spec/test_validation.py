"""RuntimeEnv: every accepted form, and every rejection with its field path."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from runenv import RuntimeEnv, SpecError


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "project").mkdir()
    return tmp_path


def error_of(**fields: object) -> str:
    with pytest.raises(SpecError) as caught:
        RuntimeEnv(**fields)
    return caught.value.message


# --- accepted forms -------------------------------------------------------------------------


def test_empty_env_is_valid() -> None:
    env = RuntimeEnv()
    assert env.to_dict() == {}
    assert env.is_empty()


def test_working_dir_relative_path_becomes_absolute(in_tmp: Path) -> None:
    assert RuntimeEnv(working_dir="project").working_dir == str(in_tmp / "project")


def test_working_dir_local_zip(in_tmp: Path) -> None:
    (in_tmp / "code.zip").write_bytes(b"PK")
    assert RuntimeEnv(working_dir="code.zip").working_dir == str(in_tmp / "code.zip")


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/code.zip",
        "gs://bucket/dir/code.tar.gz",
        "https://example.com/code.tgz?sig=abc",
        "file:///srv/code.zip",
    ],
)
def test_working_dir_remote_uris_kept_as_is(uri: str) -> None:
    assert RuntimeEnv(working_dir=uri).working_dir == uri


def test_py_modules_forms(in_tmp: Path) -> None:
    (in_tmp / "pkg").mkdir()
    (in_tmp / "single.py").write_text("x = 1\n")
    (in_tmp / "dist-1.0-py3-none-any.whl").write_bytes(b"PK")
    env = RuntimeEnv(
        py_modules=["pkg", "single.py", "dist-1.0-py3-none-any.whl", "s3://b/m.whl", "pkg"]
    )
    assert env.py_modules == (
        str(in_tmp / "pkg"),
        str(in_tmp / "single.py"),
        str(in_tmp / "dist-1.0-py3-none-any.whl"),
        "s3://b/m.whl",
    )


def test_py_modules_accepts_module_objects(in_tmp: Path) -> None:
    package = in_tmp / "mypkg"
    package.mkdir()
    module = types.ModuleType("mypkg")
    module.__path__ = [str(package)]
    assert RuntimeEnv(py_modules=[module]).py_modules == (str(package),)


def test_pip_list_is_deduplicated_in_order() -> None:
    pip = RuntimeEnv(pip=["requests", " six ", "requests", "torch>=2"]).pip
    assert pip is not None
    assert pip.packages == ("requests", "six", "torch>=2")
    assert pip.tool == "pip"


def test_pip_mapping_form() -> None:
    env = RuntimeEnv(
        pip={
            "packages": ["six"],
            "pip_check": True,
            "pip_version": "==24.0",
            "pip_install_options": ["--no-deps"],
        }
    )
    assert env.to_dict()["pip"] == {
        "packages": ["six"],
        "pip_check": True,
        "pip_version": "==24.0",
        "pip_install_options": ["--no-deps"],
    }


def test_uv_mapping_form() -> None:
    uv = RuntimeEnv(uv={"packages": ["six"], "uv_check": True, "uv_version": "==0.5"}).uv
    assert uv is not None
    assert (uv.tool, uv.packages, uv.check, uv.version) == ("uv", ("six",), True, "==0.5")


def test_tuples_and_paths_accepted(in_tmp: Path) -> None:
    env = RuntimeEnv(working_dir=in_tmp / "project", pip=("six",), excludes=("*.log",))
    assert env.working_dir == str(in_tmp / "project")
    assert env.excludes == ("*.log",)


def test_conda_forms(in_tmp: Path) -> None:
    (in_tmp / "environment.yml").write_text("name: x\ndependencies:\n  - python=3.11\n")
    from_file = RuntimeEnv(conda="environment.yml").conda
    assert from_file == {"name": "x", "dependencies": ["python=3.11"]}
    assert RuntimeEnv(conda={"dependencies": ["numpy"]}).conda == {"dependencies": ["numpy"]}
    assert RuntimeEnv(conda="my-env").conda == "my-env"
    assert RuntimeEnv(conda="/opt/conda/envs/x").conda == "/opt/conda/envs/x"


def test_config_defaults_and_values() -> None:
    assert RuntimeEnv().config.setup_timeout_seconds == 600
    assert RuntimeEnv().config.eager_install is True
    config = RuntimeEnv(config={"setup_timeout_seconds": -1, "eager_install": False}).config
    assert config.setup_timeout is None
    assert config.eager_install is False


def test_upload_path_local_becomes_absolute(in_tmp: Path) -> None:
    assert RuntimeEnv(upload_path="store").upload_path == str(in_tmp / "store")
    assert RuntimeEnv(upload_path="s3://bucket/jobs/").upload_path == "s3://bucket/jobs"


def test_none_fields_are_unset() -> None:
    assert RuntimeEnv(pip=None, env_vars=None).to_dict() == {}


def test_canonical_dict_round_trips(in_tmp: Path) -> None:
    (in_tmp / "requirements.txt").write_text("six\n--index-url https://mirror/simple\n")
    env = RuntimeEnv(working_dir="project", pip="requirements.txt", env_vars={"A": "1"})
    assert RuntimeEnv.from_dict(env.to_dict()) == env
    assert RuntimeEnv.from_dict(env.to_dict()).to_dict() == env.to_dict()


# --- rejections -----------------------------------------------------------------------------


def test_wrong_type_inside_pip_packages_names_the_path() -> None:
    message = error_of(pip={"packages": ["a", "b", 3]})
    assert message == "runtime_env.pip.packages[2]: expected a string, got int"


def test_unknown_field_suggests_nearest() -> None:
    assert error_of(env_var={"A": "1"}) == (
        "runtime_env.env_var: unknown field 'env_var'; did you mean 'env_vars'?"
    )


def test_unknown_nested_field_suggests_nearest() -> None:
    message = error_of(uv={"packages": ["x"], "pip_check": True})
    assert (
        message == "runtime_env.uv.pip_check: unknown field 'pip_check'; did you mean 'uv_check'?"
    )
    message = error_of(config={"setup_timeout": 5})
    assert "did you mean 'setup_timeout_seconds'?" in message


def test_ray_only_field_says_not_supported() -> None:
    assert "not supported by runenv" in error_of(image_uri="rayproject/ray")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"pip": ["a"], "conda": "x"}, "pip and conda are both set"),
        ({"pip": ["a"], "uv": ["b"]}, "pip and uv are both set"),
        ({"uv": ["a"], "conda": {"dependencies": []}}, "uv and conda are both set"),
    ],
)
def test_at_most_one_python_env(fields: dict[str, object], expected: str) -> None:
    assert expected in error_of(**fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"env_vars": {"A": 1}}, "runtime_env.env_vars.A: expected a string, got int"),
        ({"env_vars": {1: "x"}}, "runtime_env.env_vars: key 1 must be a string"),
        ({"env_vars": {"A=B": "x"}}, "runtime_env.env_vars: invalid variable name 'A=B'"),
        ({"env_vars": ["A"]}, "runtime_env.env_vars: expected a mapping, got a list"),
        ({"pip": 5}, "runtime_env.pip: expected a list of requirement strings"),
        ({"pip": ["ok", ""]}, "runtime_env.pip[1]: expected a non-empty string"),
        ({"pip": ["ok", "  "]}, "runtime_env.pip[1]: expected a non-empty requirement string"),
        ({"pip": {"pip_check": True}}, "runtime_env.pip.packages: required field is missing"),
        ({"py_modules": "pkg"}, "runtime_env.py_modules: expected a list, got str"),
        ({"excludes": [1]}, "runtime_env.excludes[0]: expected a string, got int"),
        ({"working_dir": 3}, "runtime_env.working_dir: expected a string, got int"),
        ({"conda": 3}, "runtime_env.conda: expected the path of an environment.yml"),
        (
            {"config": {"setup_timeout_seconds": True}},
            "runtime_env.config.setup_timeout_seconds: expected an integer, got bool",
        ),
        (
            {"config": {"setup_timeout_seconds": 0}},
            "runtime_env.config.setup_timeout_seconds: expected a positive number of seconds",
        ),
        ({"config": {"eager_install": "yes"}}, "config.eager_install: expected a boolean"),
        ({"working_dir": "s3://b/code.txt"}, "does not name an archive"),
        ({"working_dir": "ftp://host/code.zip"}, "unsupported URI scheme 'ftp'"),
        ({"py_modules": ["s3://b/m.tar"]}, "runtime_env.py_modules[0]: s3://b/m.tar does not"),
        ({"upload_path": "https://host/x"}, "runtime_env.upload_path: cannot upload to https://"),
    ],
)
def test_rejections(fields: dict[str, object], expected: str) -> None:
    assert expected in error_of(**fields)


def test_several_problems_reported_together() -> None:
    message = error_of(pip=[1], env_vars={"A": 2})
    assert "2 problems" in message
    assert "runtime_env.pip[0]" in message
    assert "runtime_env.env_vars.A" in message


def test_missing_working_dir_names_resolved_path(in_tmp: Path) -> None:
    assert error_of(working_dir="nope") == (
        f"runtime_env.working_dir: directory not found: {in_tmp / 'nope'}"
    )


def test_working_dir_file_that_is_not_zip(in_tmp: Path) -> None:
    (in_tmp / "main.py").write_text("")
    assert "neither a directory nor a .zip file" in error_of(working_dir="main.py")


def test_missing_py_module(in_tmp: Path) -> None:
    assert (
        error_of(py_modules=["gone"]) == f"runtime_env.py_modules[0]: not found: {in_tmp / 'gone'}"
    )


def test_py_module_of_wrong_kind(in_tmp: Path) -> None:
    (in_tmp / "notes.txt").write_text("")
    assert "not a package directory, a .py file or a .whl file" in error_of(
        py_modules=["notes.txt"]
    )


def test_missing_requirements_file_names_resolved_path(in_tmp: Path) -> None:
    assert error_of(pip="reqs/requirements.txt") == (
        f"runtime_env.pip: requirements file not found: {in_tmp / 'reqs/requirements.txt'}"
    )


def test_missing_environment_yml_names_resolved_path(in_tmp: Path) -> None:
    assert error_of(conda="env.yaml") == (
        f"runtime_env.conda: environment file not found: {in_tmp / 'env.yaml'}"
    )


def test_invalid_environment_yml(in_tmp: Path) -> None:
    (in_tmp / "env.yml").write_text("- just\n- a list\n")
    assert "runtime_env.conda: expected a mapping, got list" in error_of(conda="env.yml")


def test_top_level_must_be_mapping() -> None:
    with pytest.raises(SpecError, match="runtime_env: expected a mapping, got list"):
        RuntimeEnv.from_dict(["pip"])  # type: ignore[arg-type]


def test_errors_carry_a_hint() -> None:
    with pytest.raises(SpecError) as caught:
        RuntimeEnv(pip=3)
    assert caught.value.hint and "runenv env schema" in caught.value.hint


# --- requirement strings ------------------------------------------------------------------


def test_bad_requirements_are_refused_with_their_index() -> None:
    message = error_of(pip=["six", "requests>>2", "!!x"])
    assert "2 problems" in message
    assert "runtime_env.pip[1]: invalid requirement 'requests>>2': Expected" in message
    assert "runtime_env.pip[2]: invalid requirement '!!x': Expected package name" in message
    assert error_of(uv={"packages": ["ok", "bad name"]}).startswith(
        "runtime_env.uv.packages[1]: invalid requirement 'bad name': "
    )


def test_a_bad_requirement_hints_at_the_forms_that_work() -> None:
    with pytest.raises(SpecError) as caught:
        RuntimeEnv(pip=["./wheels/pkg.whl"])
    assert caught.value.hint is not None and "pkg @ file:///path" in caught.value.hint


def test_a_bad_requirement_in_a_file_names_the_file_and_line(in_tmp: Path) -> None:
    (in_tmp / "requirements.txt").write_text("six\n\nrequests>>2\n")
    assert error_of(pip="requirements.txt") == (
        f"runtime_env.pip ({in_tmp / 'requirements.txt'}:3): invalid requirement 'requests>>2': "
        "Expected semicolon (after name with no version specifier) or end"
    )


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("Six", "six"),
        ("my_pkg", "my-pkg"),
        ("My.Pkg>=1,<2", "my-pkg>=1,<2"),
        ("requests[Security,Socks] >= 2", "requests[security,socks] >= 2"),
        ("requests [socks,security]", "requests[security,socks]"),
        (
            "pkg @ https://host/Pkg-1.0-py3-none-any.whl",
            "pkg @ https://host/Pkg-1.0-py3-none-any.whl",
        ),
        ("Attrs; python_version >= '3.8'", "attrs; python_version >= '3.8'"),
        ("six==1.16.0", "six==1.16.0"),
        ("numpy~=1.26", "numpy~=1.26"),
    ],
)
def test_requirement_names_and_extras_are_canonical(written: str, canonical: str) -> None:
    pip = RuntimeEnv(pip=[written]).pip
    assert pip is not None and pip.packages == (canonical,)


def test_spellings_of_one_name_give_one_key() -> None:
    assert RuntimeEnv(pip=["Six"]).key == RuntimeEnv(pip=["six"]).key
    assert RuntimeEnv(uv=["my_pkg"]).key == RuntimeEnv(uv=["my-pkg"]).key
    assert RuntimeEnv(pip=["Six", "six"]).pip == RuntimeEnv(pip=["six"]).pip
