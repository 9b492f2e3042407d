"""Roll back: which rows ``detach`` takes from a report (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from bulk_attach.core.outcomes import RowResult, Status

__all__ = ["DetachSelection"]


@dataclass(frozen=True, slots=True)
class DetachSelection:
    """By default the rows this tool attached (``attached``: undo exactly what the run
    did); ``all_linked`` also the rows it found linked (``already_linked``)."""

    all_linked: bool = False

    def selects(self, result: RowResult) -> bool:
        if result.status is Status.ATTACHED:
            return True
        return self.all_linked and result.status is Status.ALREADY_LINKED

    def describe(self) -> str:
        if self.all_linked:
            return "rows attached by bulk-attach or found already linked"
        return "rows attached by bulk-attach"
