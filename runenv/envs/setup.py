"""What every materialization step shares: the cache, the deadline, the log, progress."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runenv import process, runs
from runenv.cache import Builder, Lease, ResourceCache
from runenv.context import Context
from runenv.deadline import Deadline
from runenv.errors import EnvSetupError, SetupTimeoutError
from runenv.setup_log import SetupLog
from runenv.spec import RuntimeEnv

# Called with a stage ("download", "unpack", "resolve", "install", "cached") and what it is about.
StageCallback = Callable[[str, str], None]

TIMEOUT_HINT = "raise config.setup_timeout_seconds in the runtime_env (-1 for no limit)"


@dataclass
class Setup:
    cache: ResourceCache
    deadline: Deadline
    log: SetupLog
    report: StageCallback
    leases: list[Lease] = field(default_factory=list)

    def acquire(self, kind: str, key: str, build: Builder, what: str) -> Path:
        """The cache entry for ``(kind, key)``, built if missing (or changed since it was
        built: said in one line); its lease is kept. Entries are read-only: a step whose
        processes write (a working_dir) gives them a copy (:meth:`fresh_copy`)."""
        self.check_deadline(kind)
        entry = self.cache.acquire(kind, key, build, self.deadline, read_only=True)
        self.leases.append(entry.lease)
        if entry.replaced is not None:
            self.log.write(f"{what} was {entry.replaced}; it was built again")
            self.report("rebuilt", f"{what} ({entry.replaced})")
        elif not entry.built:
            self.report("cached", what)
        return entry.path

    def fresh_copy(self, entry_directory: str) -> str:
        """A writable copy of a directory of an entry for this run alone, held as a lease is."""
        copy, fd = runs.fresh_copy(entry_directory, str(self.cache.root / runs.RUNS))
        self.leases.append(Lease(fd, Path(copy)))
        return copy

    def check_deadline(self, step: str) -> None:
        if self.deadline.expired():
            raise self.timeout_error(step)

    def timeout_error(self, step: str) -> SetupTimeoutError:
        tail = self.log.tail()
        return SetupTimeoutError(
            f"runtime env setup timed out after {self.deadline.seconds:g} s during {step}"
            + (f"; last lines of the setup log:\n{tail}" if tail else ""),
            hint=TIMEOUT_HINT,
            step=step,
            log_path=str(self.log.path),
        )

    def run(self, argv: Sequence[str], step: str, env: Mapping[str, str] | None = None) -> None:
        """Run a setup command, its output going to the log; its process group is killed when
        the deadline passes or the wait is interrupted."""
        self.log.write(f"$ {' '.join(argv)}")
        start = self.log.size()
        with self.log.open_for_output() as output:
            try:
                finished = process.run(
                    argv,
                    timeout=self.deadline.remaining(),
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            except subprocess.TimeoutExpired:
                raise self.timeout_error(step) from None
        if finished.returncode != 0:
            raise EnvSetupError(
                f"{step} failed (exit code {finished.returncode}):\n{self.log.tail(since=start)}",
                hint="the setup log (below) has the command's whole output",
                step=step,
                log_path=str(self.log.path),
            )


Step = Callable[[RuntimeEnv, Setup, Context], Context]
