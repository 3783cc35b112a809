"""The CPU ledger: who holds how many of the engine's CPUs. Taking twice or giving back twice
changes nothing, so no caller needs to remember whether it holds its CPUs."""

from __future__ import annotations

_EPSILON = 1e-9


class CpuLedger:
    def __init__(self, total: float) -> None:
        self.total = total
        self._held: dict[str, float] = {}
        self._used = 0.0

    @property
    def free(self) -> float:
        return self.total - self._used

    def holds(self, holder: str) -> bool:
        return holder in self._held

    def take(self, holder: str, cpus: float, *, force: bool = False) -> bool:
        """Take ``cpus`` for ``holder`` if they are free (or anyway, with ``force``: a task
        coming back from a nested ``get`` must not wait behind the work it waited for)."""
        if holder in self._held:
            return True
        if not force and cpus > self.free + _EPSILON:
            return False
        self._held[holder] = cpus
        self._used += cpus
        return True

    def give(self, holder: str) -> None:
        cpus = self._held.pop(holder, None)
        if cpus is not None:
            self._used -= cpus

    def exhausted(self) -> bool:
        return self.free <= _EPSILON
