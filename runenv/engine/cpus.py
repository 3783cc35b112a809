"""The CPU ledger: who holds how many of the engine's CPUs. Taking twice or giving back twice
changes nothing, so no caller needs to remember whether it holds its CPUs."""

from __future__ import annotations

_EPSILON = 1e-9


class CpuLedger:
    def __init__(self, total: float) -> None:
        self.total = total
        self._held: dict[str, float] = {}
        self._used = 0.0
        self._lent: dict[str, tuple[int, float]] = {}  # holder -> (waits, its CPUs)

    @property
    def free(self) -> float:
        return self.total - self._used

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
        """Give back what ``holder`` holds, or has lent (it is done: nothing to take back)."""
        self._lent.pop(holder, None)
        cpus = self._held.pop(holder, None)
        if cpus is not None:
            self._used -= cpus

    def lend(self, holder: str) -> None:
        """``holder`` waits (a task in a nested ``get``): its CPUs are free until the last of
        its waits ends, as Ray does, so nested work cannot deadlock on a full machine."""
        waits, cpus = self._lent.get(holder, (0, 0.0))
        if waits == 0:
            if holder not in self._held:
                return  # holds nothing: nothing to lend
            cpus = self._held.pop(holder)
            self._used -= cpus
        self._lent[holder] = (waits + 1, cpus)

    def take_back(self, holder: str) -> None:
        """One wait of ``holder`` ended; after the last, it holds its CPUs again (even over the
        total for a while: it must not wait behind the work it waited for)."""
        lent = self._lent.get(holder)
        if lent is None:
            return  # it was given back meanwhile (finished, or its worker died)
        waits, cpus = lent
        if waits > 1:
            self._lent[holder] = (waits - 1, cpus)
            return
        del self._lent[holder]
        self.take(holder, cpus, force=True)

    def exhausted(self) -> bool:
        return self.free <= _EPSILON
