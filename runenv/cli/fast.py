"""The fast path of ``runenv run`` and ``runenv job submit --no-wait``: an env already set up
(or prepared, for a job), recognised by its recipe.

A *recipe* is what a slow run recorded (:mod:`runenv.cli.recipes`) about the env it set up: the
request it answered (the env flags, the directory it ran in, this installation of runenv), the
stat of every input the setup read, the environment variables it used, the cache entries it
leased, and its result. When every input stats the same, every variable has the same value and
every entry is still published (leased first, so that it cannot be collected meanwhile), the
result still holds, and the command starts without typer, pydantic or any setup code loaded.
Anything else — no recipe, a changed input, an unreadable recipe — is the slow path, which
records the recipe again. Only the plain form is recognised: known flags, then ``--`` and the
command; the slow path (Click) parses everything else.

This module is imported before anything else of the CLI, so it loads only what Python has
built in: recipes are ``marshal`` files (trusted as the cache's own interpreters are), named by
a checksum of their request, which they hold to be compared in full.
"""

from __future__ import annotations

import fcntl
import marshal
import os
import sys
import zlib

import runenv

TYPE_CHECKING = False  # typing itself costs milliseconds here; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import NoReturn

FORMAT = 2
RECIPES = "recipes"
# Flags of `runenv run` that shape the env (they are the request), and those that don't.
RUN_VALUE_OPTIONS = ("--runtime-env", "--runtime-env-json", "--working-dir")
RUN_LIST_OPTIONS = ("--pip", "--env-var")
RUN_FLAGS = ("-q", "--quiet")
# Of `runenv job submit`: the env's flags are the request; the job's own flags are not.
SUBMIT_ENV_OPTIONS = ("--runtime-env", "--runtime-env-json", "--working-dir")
SUBMIT_VALUE_OPTIONS = (*SUBMIT_ENV_OPTIONS, "--submission-id", "--metadata-json")
SUBMIT_FLAGS = ("--no-wait",)

Request = dict[str, object]  # option name -> value (a list for repeatable ones)
Fingerprint = list[int] | None  # the stat of a path, or None when there is nothing there


class Parsed:
    """A command line in the plain form: its options, its flags, and the command after --."""

    def __init__(self, options: Request, flags: set[str], command: list[str]) -> None:
        self.options = options
        self.flags = flags
        self.command = command


_missed: tuple[list[object], Parsed] | None = None


def try_fast_path(args: Sequence[str]) -> None:
    """Serve ``runenv run`` or ``runenv job submit --no-wait`` at once if the env is known
    and unchanged; otherwise just return.

    On a miss, :func:`missed` tells the slow path which request to record the recipe for.
    """
    global _missed
    kind, parsed = "run", parse_run(args)
    if parsed is None:
        kind, parsed = "submit", parse_submit(args)
    if parsed is None:
        return
    env_options = {name: value for name, value in parsed.options.items() if _shapes_env(name)}
    request = request_of(kind, env_options)
    if request is None:
        return
    recipe = load(request)
    leases = holds(recipe) if recipe is not None else None
    if recipe is None or leases is None:
        _missed = (request, parsed)
        return
    result = recipe["result"]
    assert isinstance(result, dict)  # holds() checked it
    if kind == "run":
        run_command(parsed.command, fresh_copies(result, leases), leases)
    submit_job(parsed, result)


def missed() -> tuple[list[object], Parsed] | None:
    """The request (and parse) of a plain command line the fast path could not serve: the
    slow path records its recipe."""
    return _missed


def _shapes_env(option: str) -> bool:
    return option in RUN_VALUE_OPTIONS or option in RUN_LIST_OPTIONS


def parse_run(args: Sequence[str]) -> Parsed | None:
    """``run [flags] -- COMMAND...``, or None for anything else (the slow path parses it)."""
    if list(args[:1]) != ["run"]:
        return None
    return _parse(args[1:], RUN_VALUE_OPTIONS, RUN_LIST_OPTIONS, RUN_FLAGS)


def parse_submit(args: Sequence[str]) -> Parsed | None:
    """``job submit [flags] --no-wait [flags] -- ENTRYPOINT...`` on this machine, or None."""
    if list(args[:2]) != ["job", "submit"] or os.environ.get("RUNENV_ADDRESS"):
        return None
    parsed = _parse(args[2:], SUBMIT_VALUE_OPTIONS, (), SUBMIT_FLAGS)
    return parsed if parsed is not None and "--no-wait" in parsed.flags else None


def _parse(
    args: Sequence[str],
    value_options: tuple[str, ...],
    list_options: tuple[str, ...],
    flags: tuple[str, ...],
) -> Parsed | None:
    """Known options (``--name value``, ``--name=value``), known flags, ``--``, the command."""
    options: Request = {}
    seen: set[str] = set()
    tokens = list(args)
    while tokens:
        token = tokens.pop(0)
        if token == "--":
            return Parsed(options, seen, tokens) if tokens else None
        if token in flags:
            seen.add(token)
            continue
        name, equals, value = token.partition("=")
        if name not in value_options + list_options:
            return None
        if not equals:
            if not tokens:
                return None
            value = tokens.pop(0)
        if value.startswith("-"):
            return None  # what Click makes of it is Click's business
        if name in list_options:
            values = options.setdefault(name, [])
            assert isinstance(values, list)
            values.append(value)
        elif name in options:
            return None
        else:
            options[name] = value
    return None


def request_of(kind: str, options: Request) -> list[object] | None:
    """What a recipe answers: what was asked, where, and by which runenv and Python."""
    try:
        cwd = os.getcwd()
        installation = fingerprint_of(os.stat(runenv.__file__ or ""))
    except OSError:
        return None  # the slow path says what is wrong
    return [FORMAT, kind, cwd, sorted(options.items()), sys.executable, sys.version, installation]


def recipe_key(request: list[object]) -> str:
    """A recipe's file name: a checksum of its request (the recipe holds the request itself)."""
    data = repr(request).encode()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def recipe_path(key: str) -> str:
    return os.path.join(runenv_home(), RECIPES, key)


def runenv_home() -> str:
    """``settings.runenv_home()``, without importing what it imports (pathlib, platformdirs)."""
    configured = os.environ.get("RUNENV_HOME")
    if configured:
        return os.path.realpath(os.path.expanduser(configured))
    from runenv import settings

    return str(settings.runenv_home())


def load(request: list[object]) -> dict[str, object] | None:
    """The recipe answering ``request``, if there is one (and it is readable)."""
    try:
        with open(recipe_path(recipe_key(request)), "rb") as handle:
            recipe = marshal.loads(handle.read())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if isinstance(recipe, dict) and recipe.get("request") == request:
        return recipe
    return None


def holds(recipe: Mapping[str, object]) -> list[int] | None:
    """Whether the recipe's result still holds: then the leases on its entries, held."""
    try:
        environ, inputs, entries = recipe["environ"], recipe["inputs"], recipe["entries"]
        assert isinstance(environ, dict) and isinstance(inputs, list)
        assert isinstance(entries, list) and isinstance(recipe["result"], dict)
        if not environ_matches(environ):
            return None
        if any(fingerprint(path) != expected for path, expected in inputs):
            return None
        return lease(entries)
    except (AssertionError, KeyError, TypeError, ValueError):
        return None  # a recipe of another shape: the slow path writes a good one


def environ_matches(recorded: Mapping[str, str | None]) -> bool:
    """The variables the setup read have the same values; no new RUNENV_* setting appeared."""
    if any(name.startswith("RUNENV_") and name not in recorded for name in os.environ):
        return False
    return all(os.environ.get(name) == value for name, value in recorded.items())


def fingerprint(path: str) -> Fingerprint:
    """What changes when the path's content, listing, metadata or identity does."""
    try:
        return fingerprint_of(os.stat(path))
    except OSError:
        return None


def fingerprint_of(info: os.stat_result) -> list[int]:
    return [
        info.st_mode,
        info.st_size,
        info.st_mtime_ns,
        info.st_ctime_ns,
        info.st_ino,
        info.st_dev,
    ]


def lease(entries: Sequence[Sequence[str]]) -> list[int] | None:
    """Lease each entry as runenv.cache.Lease does (a shared flock on ``<entry>.lease``), then
    check it is still published (collection takes that lock exclusively before removing) and
    unchanged since it was built (else the slow path builds it again, and says so)."""
    from runenv import integrity

    held: list[int] = []
    for lease_path, published, directory, manifest in entries:
        try:
            fd = os.open(lease_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            break
        held.append(fd)
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.utime(fd)  # the lease file's mtime is the entry's last use
        if not os.path.isfile(published) or integrity.check(directory, manifest) is not None:
            break
    else:
        return held
    for fd in held:
        os.close(fd)
    return None


def fresh_copies(context: Mapping[str, object], leases: list[int]) -> dict[str, object]:
    """The recorded context with a fresh copy (runenv.runs) in place of each copy its run had,
    held by a descriptor added to ``leases``: no run works in another's copy."""
    pairs = context.get("fresh_copies")
    renewed = dict(context)
    if not pairs:
        return renewed
    from runenv import runs

    assert isinstance(pairs, list)
    new_of = {}
    for entry, old in pairs:
        new, fd = runs.fresh_copy(entry, os.path.dirname(old))
        leases.append(fd)
        new_of[old] = new
    renewed["cwd"] = new_of.get(str(context["cwd"]), context["cwd"])
    renewed["pythonpath"] = [new_of.get(path, path) for path in _strings(context["pythonpath"])]
    renewed["fresh_copies"] = [[entry, new_of[old]] for entry, old in pairs]
    return renewed


def environment(context: Mapping[str, object], base: Mapping[str, str]) -> dict[str, str]:
    """The environment of a process started in a recorded context (as Context.environment)."""
    from runenv.environ import compose

    env_vars = context["env_vars"]
    assert isinstance(env_vars, dict)
    return compose(
        base,
        _strings(context["unset_vars"]),
        _strings(context["pythonpath"]),
        _strings(context["path"]),
        env_vars,
    )


def run_command(
    command: Sequence[str], context: Mapping[str, object], leases: Sequence[int]
) -> NoReturn:
    """Run COMMAND in a recorded context, in place of runenv (exec).

    Both paths of ``runenv run`` end here, so a warm run behaves exactly as a cold one. Being
    the same process, the command gets every signal sent to runenv and its exit status is
    runenv's; it inherits the leases, so its cache entries stay while it runs.
    """
    argv = list(command)
    if argv[0] in ("python", "python3"):  # the env's interpreter, whatever PATH says
        argv[0] = str(context["python_executable"])
    env = environment(context, os.environ)
    cwd = context["cwd"]
    if cwd:
        os.chdir(str(cwd))
    for fd in leases:
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    _exec(argv, env)


def _exec(argv: list[str], env: dict[str, str]) -> NoReturn:
    """Exec ``argv``, looking the program up on the new PATH as the shell (and Popen) do."""
    from runenv.errors import TOO_BIG_HINT, RunenvError

    program = argv[0]
    candidates = [program] if os.sep in program else _on_path(program, env)
    failure: OSError = FileNotFoundError(program)
    for candidate in candidates:
        try:
            os.execve(candidate, argv, env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as error:
            failure = error  # e.g. not executable: said if nothing later on PATH runs
    if isinstance(failure, FileNotFoundError):
        raise RunenvError(
            f"command not found: {program}",
            hint="check the name; the env's bin directory is first on PATH",
        )
    if isinstance(failure, PermissionError):
        raise RunenvError(f"command is not executable: {program}", hint="chmod +x it")
    import errno  # built in, as this module's imports must be

    too_big = failure.errno == errno.E2BIG
    raise RunenvError(
        f"cannot run {program}: {failure.strerror}",
        hint=TOO_BIG_HINT if too_big else "check the command",
    )


def submit_job(parsed: Parsed, prepared: Mapping[str, object]) -> NoReturn:
    """Submit the job with the env a recipe holds prepared, and say so as the slow path does."""
    from runenv.jobs.manager import JobManager

    runtime_env, env_key = prepared["runtime_env"], prepared["env_key"]
    assert isinstance(runtime_env, dict) and isinstance(env_key, str)
    submission_id = parsed.options.get("--submission-id")
    metadata = job_metadata(parsed.options.get("--metadata-json"))
    job_id = JobManager().submit_prepared(
        job_entrypoint(parsed.command),
        runtime_env,
        env_key,
        submission_id if isinstance(submission_id, str) else None,
        metadata,
    )
    announce_submitted(job_id)
    sys.exit(0)


def announce_submitted(job_id: str) -> None:
    """What ``job submit --no-wait`` says: the id on stdout, how to follow it on stderr."""
    print(f"submitted {job_id}", file=sys.stderr)
    print(job_id, flush=True)
    print(f"follow it with: runenv job logs {job_id} --follow", file=sys.stderr)


def job_entrypoint(tokens: Sequence[str]) -> str:
    """The entrypoint as one shell command: a single word as it is, else the words quoted."""
    if len(tokens) <= 1:
        return "".join(tokens)
    import shlex

    return shlex.join(tokens)


def job_metadata(text: object) -> dict[str, str]:
    """``--metadata-json``: a JSON object, its values as strings."""
    if not isinstance(text, str) or not text:
        return {}
    import json

    from runenv.errors import RunenvError

    example = 'e.g. --metadata-json \'{"team": "ml"}\''
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise RunenvError(f"--metadata-json is not valid JSON: {error}", hint=example) from None
    if not isinstance(data, dict):
        raise RunenvError("--metadata-json: expected a JSON object of strings", hint=example)
    return {str(key): str(value) for key, value in data.items()}


def _on_path(program: str, env: Mapping[str, str]) -> list[str]:
    return [os.path.join(directory, program) for directory in os.get_exec_path(dict(env))]


def _strings(value: object) -> list[str]:
    assert isinstance(value, list)
    return [str(item) for item in value]
