"""The per-VPC quota ledger: a row is sent only while ``linked + in flight < quota``.

A VPC holds a limited number of ClassicLinks (1000 by default). The ledger starts from the
link count read from the service (``set_linked``), reserves a slot before each attach
(``try_reserve``), and either turns the reservation into a link (``commit``) or gives it
back (``release``). Reservations in flight count against the quota, so concurrency can
never overshoot it. If the service still answers QuotaExceeded, our count was wrong
(someone else linked instances meanwhile): ``mark_full`` closes the VPC for the run.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["QuotaLedger", "UnknownVpcError"]


class UnknownVpcError(KeyError):
    """A VPC was used before its link count was read (``set_linked``)."""


class _Usage:
    __slots__ = ("full", "in_flight", "linked", "quota")

    def __init__(self, linked: int, quota: int) -> None:
        self.linked = linked
        self.in_flight = 0
        self.quota = quota
        self.full = False


class QuotaLedger:
    """Link counts and reservations per VPC; ``quota`` is the default for every VPC."""

    __slots__ = ("_vpcs", "quota")

    def __init__(self, quota: int) -> None:
        if quota < 0:
            raise ValueError("quota must not be negative")
        self.quota = quota
        self._vpcs: dict[str, _Usage] = {}

    def _usage(self, vpc_id: str) -> _Usage:
        try:
            return self._vpcs[vpc_id]
        except KeyError:
            raise UnknownVpcError(f"{vpc_id}: link count not read yet (set_linked first)") from None

    def is_known(self, vpc_id: str) -> bool:
        return vpc_id in self._vpcs

    def set_linked(self, vpc_id: str, linked: int, quota: int | None = None) -> None:
        """Record the VPC's current link count (and optionally its own quota).

        Reservations in flight are kept: they are not part of a count read from the service.
        """
        if linked < 0:
            raise ValueError("linked must not be negative")
        usage = self._vpcs.get(vpc_id)
        if usage is None:
            self._vpcs[vpc_id] = _Usage(linked, self.quota if quota is None else quota)
        else:
            usage.linked = linked
            if quota is not None:
                usage.quota = quota

    def try_reserve(self, vpc_id: str) -> bool:
        """Take a slot for one attach; False when the VPC has no room (the row is skipped)."""
        usage = self._usage(vpc_id)
        if usage.full or usage.linked + usage.in_flight >= usage.quota:
            return False
        usage.in_flight += 1
        return True

    def commit(self, vpc_id: str) -> None:
        """The attach succeeded: the reserved slot becomes a link."""
        usage = self._usage(vpc_id)
        if usage.in_flight <= 0:
            raise ValueError(f"{vpc_id}: commit without a reservation")
        usage.in_flight -= 1
        usage.linked += 1

    def release(self, vpc_id: str) -> None:
        """The attach did not happen: give the reserved slot back."""
        usage = self._usage(vpc_id)
        if usage.in_flight <= 0:
            raise ValueError(f"{vpc_id}: release without a reservation")
        usage.in_flight -= 1
        if usage.full:  # the service's quota is now known more closely
            usage.quota = min(usage.quota, usage.linked + usage.in_flight)

    def mark_full(self, vpc_id: str) -> None:
        """The service said QuotaExceeded: its quota for this VPC is what is linked (plus what
        is in flight and may still land); reserve nothing more. Our own link count stays
        true: it is what this run knows, and the summary reports it."""
        usage = self._usage(vpc_id)
        usage.full = True
        usage.quota = min(usage.quota, usage.linked + usage.in_flight)

    def is_full(self, vpc_id: str) -> bool:
        usage = self._usage(vpc_id)
        return usage.full or usage.linked + usage.in_flight >= usage.quota

    def headroom(self, vpc_id: str) -> int:
        """Slots still free: ``quota - linked - in flight`` (0 once marked full)."""
        usage = self._usage(vpc_id)
        if usage.full:
            return 0
        return max(0, usage.quota - usage.linked - usage.in_flight)

    def linked(self, vpc_id: str) -> int:
        return self._usage(vpc_id).linked

    def in_flight(self, vpc_id: str) -> int:
        return self._usage(vpc_id).in_flight

    def quota_of(self, vpc_id: str) -> int:
        return self._usage(vpc_id).quota

    def vpcs(self) -> Iterator[str]:
        return iter(sorted(self._vpcs))

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Per VPC: linked, in_flight, quota, headroom (for the summary)."""
        return {
            vpc: {
                "linked": self._vpcs[vpc].linked,
                "in_flight": self._vpcs[vpc].in_flight,
                "quota": self._vpcs[vpc].quota,
                "headroom": self.headroom(vpc),
            }
            for vpc in self.vpcs()
        }

    def __len__(self) -> int:
        return len(self._vpcs)

    def __repr__(self) -> str:
        parts = []
        for vpc in self.vpcs():
            u = self._vpcs[vpc]
            parts.append(f"{vpc} {u.linked}+{u.in_flight}/{u.quota}{' full' if u.full else ''}")
        return f"<QuotaLedger {', '.join(parts) if parts else f'empty, quota {self.quota}'}>"
