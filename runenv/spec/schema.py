"""The accepted shape of a runtime_env dict, as pydantic models.

These models check types and field names (and give ``runenv env schema`` its JSON Schema); what
the values mean (paths, URIs, requirements files) is checked in :mod:`runenv.spec.normalize`.
Unions are tagged by the Python type of the value so an error names one expected shape, not three.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

# Tags are stripped from error locations; the marker keeps them apart from field names.
TAG_MARK = "§"


def _kind_of(value: Any) -> str | None:
    if isinstance(value, str):
        return TAG_MARK + "str"
    if isinstance(value, list):
        return TAG_MARK + "list"
    if isinstance(value, dict):
        return TAG_MARK + "dict"
    return None


def _tagged(kind: str, annotation: Any) -> Any:
    return Annotated[annotation, Tag(TAG_MARK + kind)]


def _one_of(expected: str, *choices: Any) -> Any:
    """A union chosen by the value's type; anything else is reported as ``expected ...``."""
    return Annotated[
        Union[tuple(choices)],  # noqa: UP007 - built at runtime
        Discriminator(_kind_of, custom_error_type="wrong_kind", custom_error_message=expected),
    ]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# Paths and names: an empty string would silently mean the current directory.
NonEmpty = Annotated[str, Field(min_length=1)]
RequirementList = list[NonEmpty]
if TYPE_CHECKING:  # what the values are, for the type checker
    RequirementsInput = list[str] | str
else:
    RequirementsInput = _one_of(
        "a list of requirement strings or the path of a requirements.txt file",
        _tagged("list", RequirementList),
        _tagged("str", NonEmpty),
    )


class LockInput(_Strict):
    """Pinned versions, resolved once on the submitting machine so every node installs them."""

    python: str = Field(description="The Python version the lock was resolved for, e.g. 3.11.7.")
    requirements: list[str] = Field(description="Pinned requirements, e.g. six==1.17.0.")
    pylock: dict[str, Any] | None = Field(
        None, description="A PEP 751 lock (pylock.toml as data): every file by URL and sha256."
    )
    platforms: list[str] | None = Field(
        None, description="The platforms the pylock was resolved for."
    )


class PipInput(_Strict):
    """``pip`` as a mapping (Ray's long form)."""

    packages: RequirementsInput
    pip_check: bool = False
    pip_version: str | None = None
    pip_install_options: list[str] = []
    lock: LockInput | None = None


class UvInput(_Strict):
    """``uv`` as a mapping (Ray's long form)."""

    packages: RequirementsInput
    uv_check: bool = False
    uv_version: str | None = None
    uv_pip_install_options: list[str] = []
    lock: LockInput | None = None


class ConfigInput(_Strict):
    """``config``: how the environment is set up, not what is in it (not part of the key)."""

    setup_timeout_seconds: int = Field(
        600,
        description="Seconds allowed for setting up the environment, at most 604800 (7 days); "
        "-1 for no limit.",
    )
    eager_install: bool = Field(
        True, description="Install the job-level environment when the job starts."
    )
    platforms: list[NonEmpty] | None = Field(
        None,
        description="Platforms pip/uv packages are locked for, as uv names them (e.g. "
        "x86_64-unknown-linux-gnu, aarch64-apple-darwin); default: this machine's and Linux "
        "x86_64 and aarch64. Ray ignores this key.",
    )
    share_env: bool = Field(
        False,
        description="Pack the built venv to upload_path so other nodes of the same platform "
        "unpack it instead of installing. Ray ignores this key.",
    )


def _python_deps(mapping_model: type[BaseModel]) -> Any:
    return _one_of(
        "a list of requirement strings, the path of a requirements.txt file, or a mapping",
        _tagged("list", RequirementList),
        _tagged("str", NonEmpty),
        _tagged("dict", mapping_model),
    )


if TYPE_CHECKING:
    PipField = list[str] | str | PipInput
    UvField = list[str] | str | UvInput
    CondaField = str | dict[str, Any]
else:
    PipField = _python_deps(PipInput)
    UvField = _python_deps(UvInput)
    CondaField = _one_of(
        "the path of an environment.yml, an inline mapping, or the name or prefix of an env",
        _tagged("str", NonEmpty),
        _tagged("dict", dict[str, Any]),
    )


class RuntimeEnvInput(_Strict):
    """A runtime_env dict, as users write it (same fields and forms as Ray's runtime_env)."""

    model_config = ConfigDict(title="runtime_env")

    working_dir: NonEmpty | None = Field(
        None,
        description="Local directory or .zip, or a remote archive URI "
        "(s3://, gs://, https://, file://; .zip, .tar.gz, .tgz).",
    )
    py_modules: list[NonEmpty] | None = Field(
        None,
        description="Local package directories, .py files, .whl files or remote archive URIs.",
    )
    excludes: list[str] | None = Field(
        None, description="Gitignore-style patterns left out of local directories."
    )
    pip: PipField | None = None
    uv: UvField | None = None
    conda: CondaField | None = None
    env_vars: dict[str, str] | None = Field(
        None,
        description="Environment variables; values may reference ${VAR} of the node. Each "
        "NAME=VALUE at most 128 KiB, all of them together at most 1 MiB; no NUL characters.",
    )
    config: ConfigInput | None = None
    upload_path: NonEmpty | None = Field(
        None, description="Where local directories are uploaded: a path, file://, s3:// or gs://."
    )


def json_schema() -> dict[str, Any]:
    """JSON Schema of the runtime_env dict, for editors and other tools."""
    schema = RuntimeEnvInput.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
