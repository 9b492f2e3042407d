"""The failure threshold: stop starting rows once too many of the settled ones failed."""

from __future__ import annotations

from bulk_attach.core.outcomes import SENT, RowResult, Status

__all__ = ["FailureThreshold"]


class FailureThreshold:
    """Counts rows that reached the service; ``crossed`` once more than ``max_rate`` of at
    least ``min_settled`` of them failed. ``max_rate=None`` never crosses."""

    __slots__ = ("failed", "max_rate", "min_settled", "settled")

    def __init__(self, max_rate: float | None, min_settled: int) -> None:
        self.max_rate = max_rate
        self.min_settled = min_settled
        self.settled = 0
        self.failed = 0

    def crossed(self, result: RowResult) -> bool:
        """Count one settled row; True while the threshold is exceeded."""
        if self.max_rate is None or result.status not in SENT:
            return False
        self.settled += 1
        self.failed += result.status is Status.FAILED
        return self.settled >= self.min_settled and self.failed / self.settled > self.max_rate

    def __repr__(self) -> str:
        limit = "off" if self.max_rate is None else f">{self.max_rate:g} of >={self.min_settled}"
        return f"<FailureThreshold {self.failed}/{self.settled} failed, stop at {limit}>"
