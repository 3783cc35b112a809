"""Bad input, across every surface users reach: each case ends in one clean error with a hint.

CLI cases run as real ``python -m runenv`` processes (several at once, to keep the suite quick)
and must exit 1 with exactly one ``error:`` and one ``hint:`` line on stderr and no traceback;
Python API cases must raise a RunenvError with a hint. Every row names words the error must
hold, so that a case cannot pass by failing for another reason.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import runenv
from runenv.errors import PackagingError, RunenvError
from runenv.spec import RuntimeEnv

RUNENV = [sys.executable, "-m", "runenv"]
CONCURRENT_PROCESSES = 6
CASE_TIMEOUT_S = 120
DEEP = 2000  # past Python's recursion limit (1000)
DEEP_YAML = 600  # past it too for PyYAML (two frames a level), whose scanner is slow when deep
BIG_VALUE = "x" * (10 * 1024 * 1024)


def _deep_json(depth: int) -> str:
    return '{"env_vars": ' + '{"a": ' * depth + "1" + "}" * depth + "}"


def _deep_yaml(depth: int) -> str:
    return "conda:\n  dependencies: " + "[" * depth + "]" * depth + "\n"


# A YAML "billion laughs": nine levels of nine aliases (387 million strings once expanded).
_LAUGHS = "\n".join(
    ['a0: &a0 ["lol"]']
    + [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    + ["conda: {dependencies: *a8}"]
)

# Files written into each case's directory, by name; bytes are written as they are.
FILES: dict[str, str | bytes] = {
    "not-utf8.yaml": b"env_vars:\n  A: \xff\xfe\n",
    "list.yaml": "- pip\n- six\n",
    "empty.yaml": "",
    "broken.yaml": "pip: [six\nenv_vars: {\n",
    "broken.json": '{"pip": ["six"],}',
    "deep.json": _deep_json(DEEP),
    "deep.yaml": _deep_yaml(DEEP_YAML),
    "laughs.yaml": _LAUGHS,
    "wd-empty.json": json.dumps({"working_dir": ""}),
    "wd-host.json": json.dumps({"working_dir": "file://otherhost/x.zip"}),
    "wd-bad-uri.json": json.dumps({"working_dir": "s3://[bucket/code.zip"}),
    "wd-rar.json": json.dumps({"working_dir": "s3://bucket/code.rar"}),
    "wd-gopher.json": json.dumps({"working_dir": "gopher://host/code.zip"}),
    "wd-int.json": json.dumps({"working_dir": 5}),
    "wd-nul.json": json.dumps({"working_dir": "code\u0000dir"}),
    "wd-file.json": json.dumps({"working_dir": "notes.txt"}),
    "wd-missing.json": json.dumps({"working_dir": "no/such/dir"}),
    "nul-value.json": json.dumps({"env_vars": {"A": "x\u0000y"}}),
    "surrogate.json": '{"env_vars": {"A": "\\ud800"}}',
    "big-value.json": json.dumps({"env_vars": {"A": BIG_VALUE}}),
    "many-values.json": json.dumps({"env_vars": {f"V{i}": "x" * 100_000 for i in range(12)}}),
    "int-value.json": json.dumps({"env_vars": {"A": 1}}),
    "name-equals.json": json.dumps({"env_vars": {"A=B": "1"}}),
    "env-vars-list.json": json.dumps({"env_vars": ["A=1"]}),
    "timeout-huge.json": json.dumps({"config": {"setup_timeout_seconds": 10**30}}),
    "lock-garbage.json": json.dumps(
        {"pip": {"packages": ["six"], "lock": {"python": "3.11", "requirements": ["!!"]}}}
    ),
    "lock-unpinned.json": json.dumps(
        {"pip": {"packages": ["six"], "lock": {"python": "3.11", "requirements": ["six>=1"]}}}
    ),
    "lock-python.json": json.dumps(
        {"uv": {"packages": ["six"], "lock": {"python": "x", "requirements": ["six==1.17.0"]}}}
    ),
    "timeout-zero.json": json.dumps({"config": {"setup_timeout_seconds": 0}}),
    "timeout-text.json": json.dumps({"config": {"setup_timeout_seconds": "10"}}),
    "timeout-float.json": json.dumps({"config": {"setup_timeout_seconds": 1.5}}),
    "typo.json": json.dumps({"pipp": ["six"]}),
    "container.json": json.dumps({"container": {"image": "x"}}),
    "pip-and-conda.json": json.dumps({"pip": ["six"], "conda": {"dependencies": []}}),
    "bad-requirement.json": json.dumps({"pip": ["six=="]}),
    "pip-empty.json": json.dumps({"pip": ""}),
    "missing-reqs.json": json.dumps({"pip": "requirements-missing.txt"}),
    "reqs-not-utf8.json": json.dumps({"pip": "reqs-not-utf8.txt"}),
    "reqs-not-utf8.txt": b"six\n\xff\n",
    "py-modules-empty.json": json.dumps({"py_modules": [""]}),
    "py-modules-str.json": json.dumps({"py_modules": "pkg"}),
    "upload-ftp.json": json.dumps({"upload_path": "ftp://host/store"}),
    "upload-host.json": json.dumps({"upload_path": "file://otherhost/store"}),
    "conda-missing.json": json.dumps({"conda": "missing-env.yml"}),
    "conda-not-utf8.json": json.dumps({"conda": "conda-not-utf8.yml"}),
    "conda-not-utf8.yml": b"dependencies:\n  - \xff\n",
    "conda-deep.json": json.dumps({"conda": "conda-deep.yml"}),
    "conda-deep.yml": "dependencies: " + "[" * DEEP_YAML + "]" * DEEP_YAML + "\n",
    "job-not-utf8.yaml": b"entrypoint: \xff\n",
    "job-list.yaml": "- entrypoint\n",
    "job-typo.yaml": "entrypoint: python x.py\nmax_retrys: 3\n",
    "notes.txt": "not a directory\n",
    "wd-long.json": json.dumps({"working_dir": "a" * 5000}),
    "reqs-long.json": json.dumps({"pip": "r" * 300 + ".txt"}),
    "nan.json": '{"conda": {"dependencies": [NaN]}}',
}


@dataclass(frozen=True)
class CliCase:
    name: str
    args: list[str]
    words: tuple[str, ...]  # each must appear in the error line
    environ: dict[str, str] = field(default_factory=dict)


def _cli(name: str, args: str | list[str], *words: str, **environ: str) -> CliCase:
    return CliCase(name, args.split() if isinstance(args, str) else args, words, environ)


_HUGE_ENV_VAR_FLAGS = [f"--env-var=V{i}={'x' * 100_000}" for i in range(12)]
CLI_CASES = [
    # runtime_env files, through `runenv env validate`
    _cli("not UTF-8", "env validate not-utf8.yaml", "not-utf8.yaml", "UTF-8"),
    _cli("file missing", "env validate nowhere.yaml", "not found"),
    _cli("YAML syntax", "env validate broken.yaml", "YAML", "line"),
    _cli("JSON 2000 deep", "env validate deep.json", "nested"),
    _cli("YAML 600 deep", "env validate deep.yaml", "nested"),
    _cli("YAML alias bomb", "env validate laughs.yaml", "values"),
    _cli("working_dir empty", "env validate wd-empty.json", "working_dir", "non-empty"),
    _cli("file:// with a host", "env validate wd-host.json", "working_dir", "otherhost"),
    _cli("env_vars NUL", "env validate nul-value.json", "env_vars.A", "NUL"),
    _cli("env_vars 10 MB", "env validate big-value.json", "env_vars.A", "131072"),
    _cli("setup timeout 10**30", "env validate timeout-huge.json", "setup_timeout", "604800"),
    _cli("requirements not UTF-8", "env validate reqs-not-utf8.json", "pip", "UTF-8"),
    _cli("conda file 600 deep", "env validate conda-deep.json", "conda", "nested"),
    # `runenv run`: the same checks before anything runs, and its own flags
    _cli("run: env_vars NUL", "run --runtime-env nul-value.json -- true", "env_vars.A", "NUL"),
    _cli("run: env_vars 10 MB", "run --runtime-env big-value.json -- true", "env_vars.A"),
    _cli("run: timeout", "run --runtime-env timeout-huge.json -- true", "setup_timeout"),
    _cli("run: --env-var =", "run --env-var NOVALUE -- true", "--env-var", "NAME=VALUE"),
    _cli("run: --env-var 1.2 MB", ["run", *_HUGE_ENV_VAR_FLAGS, "--", "true"], "env_vars"),
    _cli("run: JSON syntax", ["run", "--runtime-env-json", "{pip", "--", "true"], "JSON"),
    _cli("run: JSON list", ["run", "--runtime-env-json", "[1]", "--", "true"], "object"),
    _cli(
        "run: JSON 2000 deep",
        ["run", "--runtime-env-json", _deep_json(DEEP), "--", "true"],
        "nested",
    ),
    _cli(
        "run: file and JSON", "run --runtime-env a.json --runtime-env-json {} -- true", "together"
    ),
    _cli("run: --working-dir ''", ["run", "--working-dir", "", "--", "true"], "non-empty"),
    _cli("run: working_dir host", "run --working-dir file://h/x.zip -- true", "host"),
    _cli(
        "run: env_vars list and --env-var",
        "run --runtime-env env-vars-list.json --env-var A=1 -- true",
        "env_vars",
        "mapping",
    ),
    _cli("run: no command", "run --working-dir .", "no command"),
    _cli("run: command not found", "run -- no-such-command-4711", "not found"),
    _cli("run: tree 2000 deep", "run --working-dir deep-tree -- true", "deep"),
    _cli("run: not executable", "run -- ./notes.txt", "not executable"),
    _cli("run: zip 2000 deep", "run --working-dir deep.zip -- true", "deep"),
    _cli("run: --env-var not UTF-8", ["run", "--env-var", "A=\udcff", "--", "true"], "UTF-8"),
    _cli("run: --working-dir not UTF-8", ["run", "--working-dir", "\udcff", "--", "true"], "UTF-8"),
    _cli("run: file:// missing", "run --working-dir file:///no/such.zip -- true", "not found"),
    _cli("package: s3:// alone", "package code --upload-path s3://", "upload_path", "bucket"),
    _cli("package: not a directory", "package notes.txt", "notes.txt"),
    _cli(
        "run: env_vars expanded past ARG_MAX",
        ["run", "--runtime-env-json", '{"env_vars": {"A": "${B}${B}"}}', "--", "true"],
        "cannot run",
        B="x" * 100_000,
    ),
    # job server addresses
    _cli("address: unclosed IPv6", "job list --address http://[::1", "not a job server address"),
    _cli("address: port not a number", "job list", "not a job server", RUNENV_ADDRESS="http://h:x"),
    _cli("address without a scheme", "job status j --address localhost:8265", "not a job server"),
    # settings and sizes
    _cli(
        "setting not a number",
        "run --working-dir code -- true",
        "RUNENV_MAX_PACKAGE_MB",
        RUNENV_MAX_PACKAGE_MB="abc",
    ),
    _cli(
        "setting infinite",
        "run --working-dir code -- true",
        "RUNENV_MAX_PACKAGE_MB",
        RUNENV_MAX_PACKAGE_MB="inf",
    ),
    _cli(
        "setting NaN",
        "run --working-dir code -- true",
        "RUNENV_MAX_PACKAGE_MB",
        RUNENV_MAX_PACKAGE_MB="nan",
    ),
    _cli("home under a file", "env list", "RUNENV_HOME", RUNENV_HOME="/dev/null/home"),
    _cli("gc size not a size", "env gc --max-size lots", "lots"),
    _cli("gc size empty", ["env", "gc", "--max-size", ""], "size"),
    _cli("gc size negative", "env gc --max-size -5G", "size"),
    _cli("gc size overflows", "env gc --max-size 1e400K", "size"),
    # job config files (the reading)
    _cli("job config not UTF-8", "job submit --config job-not-utf8.yaml -- true", "UTF-8"),
    _cli("job config a list", "job submit --config job-list.yaml -- true", "mapping"),
    _cli("job config typo", "job submit --config job-typo.yaml -- true", "max_retrys"),
    _cli("job metadata a list", "job submit --metadata-json [1] --no-wait -- true", "metadata"),
]


@pytest.fixture(scope="module")
def corpus_dir() -> Iterator[Path]:
    # Not under pytest's temporary directory: its clean-up (shutil.rmtree) recurses once a level
    # and fails on the deep tree, even in a later session; rm -rf does not.
    root = Path(tempfile.mkdtemp(prefix="runenv-corpus-"))
    try:
        for name, content in FILES.items():
            target = root / name
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
        (root / "code").mkdir()
        (root / "code" / "main.py").write_text("print('hi')\n")
        _make_deep_tree(root / "deep-tree", DEEP)
        with zipfile.ZipFile(root / "deep.zip", "w") as deep_zip:
            deep_zip.writestr("d/" * DEEP + "main.py", "print('hi')\n")
        yield root
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=True)


def _make_deep_tree(top: Path, depth: int) -> None:
    """``top/d/d/…/d`` (``depth`` levels), made level by level: the whole path is too long for
    one system call."""
    top.mkdir()
    descriptor = os.open(top, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=descriptor)
            deeper = os.open("d", os.O_RDONLY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = deeper
    finally:
        os.close(descriptor)


@dataclass
class Outcome:
    returncode: int
    stderr: str


def _run_all(cases: list[CliCase], cwd: Path, home: Path) -> dict[str, Outcome]:
    """Run the cases a few at a time; each gets the same RUNENV_HOME (nothing is cached)."""
    outcomes: dict[str, Outcome] = {}
    base = {**os.environ, "RUNENV_HOME": str(home), "NO_COLOR": "1"}
    for start in range(0, len(cases), CONCURRENT_PROCESSES):
        batch = cases[start : start + CONCURRENT_PROCESSES]
        running = [
            (
                case,
                subprocess.Popen(
                    [*RUNENV, *case.args],
                    cwd=cwd,
                    env={**base, **case.environ},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
            for case in batch
        ]
        for case, process in running:
            try:
                _, stderr = process.communicate(timeout=CASE_TIMEOUT_S)
            except subprocess.TimeoutExpired:  # a hang is a failure of its case, not of all
                process.kill()
                _, stderr = process.communicate()
                stderr += f"\n(killed after {CASE_TIMEOUT_S} s)"
            outcomes[case.name] = Outcome(process.returncode, stderr)
    return outcomes


def _problems_of(case: CliCase, outcome: Outcome) -> list[str]:
    lines = outcome.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    hints = [line for line in lines if line.startswith("hint: ")]
    problems = []
    if outcome.returncode != 1:
        problems.append(f"exit code {outcome.returncode}")
    if "Traceback" in outcome.stderr:
        problems.append("a traceback")
    if len(errors) != 1 or len(hints) != 1:
        problems.append(f"{len(errors)} error lines and {len(hints)} hint lines")
    missing = [word for word in case.words if not any(word in line for line in errors)]
    if missing:
        problems.append(f"no {missing} in the error")
    return problems


def test_the_names_of_the_cases_are_distinct() -> None:
    names = [case.name for case in (*CLI_CASES, *FILE_CASES, *API_CASES)]
    assert len(names) == len(set(names))
    assert len(names) >= 50


def test_every_cli_case_is_one_clean_error(corpus_dir: Path, tmp_path: Path) -> None:
    outcomes = _run_all(CLI_CASES, corpus_dir, tmp_path / "home")
    failures = {
        case.name: (problems, outcomes[case.name].stderr[-600:])
        for case in CLI_CASES
        if (problems := _problems_of(case, outcomes[case.name]))
    }
    assert not failures, "\n\n".join(
        f"{name}: {', '.join(problems)}\n{stderr}" for name, (problems, stderr) in failures.items()
    )


# --- runtime_env files, read in this process (the same code as `runenv env validate`) -------


@dataclass(frozen=True)
class FileCase:
    name: str
    file: str
    words: tuple[str, ...]


def _file(name: str, file: str, *words: str) -> FileCase:
    return FileCase(name, file, words)


FILE_CASES = [
    _file("top level is a list", "list.yaml", "mapping", "list"),
    _file("empty file", "empty.yaml", "mapping"),
    _file("JSON syntax", "broken.json", "JSON"),
    _file("URI that cannot parse", "wd-bad-uri.json", "working_dir", "URI"),
    _file("not an archive", "wd-rar.json", "working_dir", "archive"),
    _file("unknown scheme", "wd-gopher.json", "working_dir", "gopher"),
    _file("working_dir a number", "wd-int.json", "working_dir", "string"),
    _file("working_dir with NUL", "wd-nul.json", "working_dir", "NUL"),
    _file("working_dir a text file", "wd-file.json", "working_dir", "neither"),
    _file("working_dir missing", "wd-missing.json", "working_dir", "not found"),
    _file("env_vars surrogate", "surrogate.json", "env_vars.A", "UTF-8"),
    _file("env_vars 1.2 MB", "many-values.json", "env_vars", "1048576"),
    _file("env_vars int value", "int-value.json", "env_vars.A", "string"),
    _file("env_vars name with =", "name-equals.json", "env_vars", "name"),
    _file("setup timeout 0", "timeout-zero.json", "setup_timeout_seconds"),
    _file("setup timeout text", "timeout-text.json", "setup_timeout", "integer"),
    _file("setup timeout 1.5", "timeout-float.json", "setup_timeout", "integer"),
    _file("misspelt field", "typo.json", "pipp", "did you mean"),
    _file("lock line not a requirement", "lock-garbage.json", "lock.requirements[0]", "'!!'"),
    _file("lock line not pinned", "lock-unpinned.json", "lock.requirements[0]", "pinned"),
    _file("lock python not a version", "lock-python.json", "uv.lock.python", "version"),
    _file("Ray-only field", "container.json", "container", "not supported"),
    _file("pip and conda", "pip-and-conda.json", "pip and conda"),
    _file("bad requirement", "bad-requirement.json", "pip[0]"),
    _file("pip empty path", "pip-empty.json", "runtime_env.pip", "non-empty"),
    _file("requirements missing", "missing-reqs.json", "pip", "not found"),
    _file("py_modules empty", "py-modules-empty.json", "py_modules[0]"),
    _file("py_modules a string", "py-modules-str.json", "py_modules", "list"),
    _file("upload_path ftp", "upload-ftp.json", "upload_path", "ftp"),
    _file("upload_path host", "upload-host.json", "upload_path", "otherhost"),
    _file("conda file missing", "conda-missing.json", "conda", "not found"),
    _file("conda file not UTF-8", "conda-not-utf8.json", "conda", "UTF-8"),
    _file("working_dir too long", "wd-long.json", "working_dir", "too long"),
    _file("requirements name too long", "reqs-long.json", "pip", "too long"),
    _file("NaN in conda", "nan.json", "conda.dependencies[0]", "nan"),
]


@pytest.mark.parametrize("case", FILE_CASES, ids=[case.name for case in FILE_CASES])
def test_every_file_case_is_one_clean_error(
    case: FileCase, corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(corpus_dir)  # relative paths in the files start here
    with pytest.raises(RunenvError) as raised:
        RuntimeEnv.from_file(case.file)
    assert raised.value.hint, f"{case.name}: no hint"
    assert "\n" not in raised.value.message
    for word in case.words:
        assert word in raised.value.message


# --- the Python API ------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiCase:
    name: str
    call: Callable[[], object]
    words: tuple[str, ...]


def _self_referencing() -> dict[str, Any]:
    env: dict[str, Any] = {"conda": {}}
    env["conda"]["dependencies"] = [env]
    return env


def _nested(depth: int) -> dict[str, Any]:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return {"conda": value}


API_CASES = [
    ApiCase("merge of a dict and an int", lambda: runenv.merge({}, 5), ("child", "int")),
    ApiCase("merge of None", lambda: runenv.merge(None, {}), ("parent", "NoneType")),
    ApiCase("merge of a bad dict", lambda: runenv.merge({"pip": 5}, {}), ("runtime_env.pip",)),
    ApiCase("from_dict of an int", lambda: RuntimeEnv.from_dict(5), ("mapping", "int")),  # type: ignore[arg-type]
    ApiCase(
        "env_vars NUL from Python",
        lambda: RuntimeEnv.from_dict({"env_vars": {"A": "x\0y"}}),
        ("env_vars.A", "NUL"),
    ),
    ApiCase(
        "env_vars name NUL from Python",
        lambda: RuntimeEnv.from_dict({"env_vars": {"A\0": "x"}}),
        ("env_vars", "NUL"),
    ),
    ApiCase(
        "env_vars 10 MB from Python",
        lambda: RuntimeEnv.from_dict({"env_vars": {"A": BIG_VALUE}}),
        ("env_vars.A", "128 KiB"),
    ),
    ApiCase(
        "env_vars surrogate name",
        lambda: RuntimeEnv.from_dict({"env_vars": {"\udcff": "x"}}),
        ("env_vars", "UTF-8"),
    ),
    ApiCase(
        "self-referencing dict", lambda: RuntimeEnv.from_dict(_self_referencing()), ("nested",)
    ),
    ApiCase("dict 2000 deep", lambda: RuntimeEnv.from_dict(_nested(DEEP)), ("conda", "nested")),
    ApiCase("working_dir empty (kwargs)", lambda: RuntimeEnv(working_dir=""), ("working_dir",)),
    ApiCase("working_dir bytes", lambda: RuntimeEnv(working_dir=b"."), ("working_dir", "string")),
    ApiCase(
        "setup timeout True",
        lambda: RuntimeEnv(config={"setup_timeout_seconds": True}),
        ("setup_timeout_seconds",),
    ),
    ApiCase(
        "setup timeout 10**30 (kwargs)",
        lambda: RuntimeEnv(config={"setup_timeout_seconds": 10**30}),
        ("setup_timeout_seconds", "604800"),
    ),
    ApiCase("tuple as a key", lambda: RuntimeEnv.from_dict({("a",): 1}), ("runtime_env",)),  # type: ignore[dict-item]
    ApiCase("excludes a string", lambda: RuntimeEnv(excludes="*.pyc"), ("excludes", "list")),
    ApiCase("py_modules an object", lambda: RuntimeEnv(py_modules=[object()]), ("py_modules[0]",)),
    ApiCase("replace with a bad field", lambda: RuntimeEnv().replace(pip=7), ("runtime_env.pip",)),
    ApiCase("num_cpus text", lambda: runenv.remote(num_cpus="x")(len), ("num_cpus",)),
    ApiCase("num_cpus NaN", lambda: runenv.remote(num_cpus=float("nan"))(len), ("num_cpus",)),
    ApiCase("max_retries -2", lambda: runenv.remote(max_retries=-2)(len), ("max_retries",)),
    ApiCase(
        "resources negative",
        lambda: runenv.remote(len).options(resources={"gpu": -1}),
        ("resources['gpu']",),
    ),
    ApiCase("init num_cpus text", lambda: runenv.init(num_cpus="2"), ("num_cpus", "str")),
]


@pytest.mark.parametrize("case", API_CASES, ids=[case.name for case in API_CASES])
def test_every_api_case_is_one_clean_error(case: ApiCase) -> None:
    with pytest.raises(RunenvError) as raised:
        case.call()
    assert raised.value.hint, f"{case.name}: no hint"
    for word in case.words:
        assert word in raised.value.message


# --- a full disk ---------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, when this process may mount one (root, as in CI)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_while_packaging_names_the_destination(tiny_disk: Path, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # incompressible
    result = subprocess.run(
        [*RUNENV, "package", str(code)],
        env={**os.environ, "RUNENV_HOME": str(tiny_disk)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "disk is full" in errors[0] and str(tiny_disk) in errors[0]
    assert "weights.bin" not in errors[0]  # the source file is not to blame
    assert "hint: " in result.stderr


def test_a_full_disk_is_said_without_a_tmpfs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same, by making every write into the archive fail as a full disk does."""
    from runenv.packaging import package_directory
    from runenv.storage import Store

    code = tmp_path / "code"
    code.mkdir()
    (code / "main.py").write_text("print('hi')\n" * 1000)
    real_open = zipfile.ZipFile.open

    def full_disk_open(self: zipfile.ZipFile, name: Any, mode: str = "r", **kw: Any) -> Any:
        if mode == "w":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(self, name, mode, **kw)

    monkeypatch.setenv("RUNENV_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(zipfile.ZipFile, "open", full_disk_open)
    store = Store(str(tmp_path / "store"))
    with pytest.raises(PackagingError) as raised:
        package_directory(code, store)
    assert "disk is full" in raised.value.message
    assert str(tmp_path / "store") in raised.value.message
    assert "main.py" not in raised.value.message
    assert raised.value.hint
