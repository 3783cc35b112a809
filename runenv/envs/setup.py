"""What every materialization step shares: the cache, the deadline, the log, progress."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runenv.cache import Builder, Lease, ResourceCache
from runenv.context import Context, die_with_parent
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
        """The cache entry for ``(kind, key)``, built if missing; its lease is kept."""
        self.check_deadline(kind)
        entry = self.cache.acquire(kind, key, build, self.deadline)
        self.leases.append(entry.lease)
        if not entry.built:
            self.report("cached", what)
        return entry.path

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
        """Run a setup command, its output going to the log; killed when the deadline passes."""
        self.log.write(f"$ {' '.join(argv)}")
        start = self.log.size()
        with self.log.open_for_output() as output:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,  # its own process group, killed as a whole
                preexec_fn=die_with_parent,
            )
            try:
                code = process.wait(timeout=self.deadline.remaining())
            except subprocess.TimeoutExpired:
                _kill_group(process)
                raise self.timeout_error(step) from None
            except BaseException:
                _kill_group(process)
                raise
        if code != 0:
            raise EnvSetupError(
                f"{step} failed (exit code {code}):\n{self.log.tail(since=start)}",
                hint="the setup log (below) has the command's whole output",
                step=step,
                log_path=str(self.log.path),
            )


Step = Callable[[RuntimeEnv, Setup, Context], Context]


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
