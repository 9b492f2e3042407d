"""In-run attempt decisions (try again, reconcile, give up) and the adaptive slow-down,
as pure functions of their inputs.

``AttemptPolicy.decide`` maps (attempt, error class, the service's retry-after, a random
number) to one of four small decisions; the engine does the waiting and the I/O. The
catalog decides the class; nothing here looks at HTTP statuses.

* throttled: wait, exponentially longer from ``throttle_base_delay`` with full jitter, but
  never less than the service's ``x-acs-retry-after``;
* not sent: wait (exponential backoff with full jitter from ``base_delay``) and send again;
* ambiguous: the call may have run, so never re-send blindly: ``Reconcile`` (read the link
  back), then ask ``after_reconcile`` whether to send again;
* permanent: give up; fatal: abort the whole run.

``AdaptiveRate`` is the run-wide slow-down on throttling, after the AWS SDKs' adaptive
retry mode but simpler (AIMD): each throttle multiplies the allowed rate by ``beta`` (at
most once per ``cooldown`` seconds, since the requests already in flight come back
throttled together: one wave is one signal), never below ``floor`` of the configured rate.
Successes win it back additively, ``recovery`` of the configured rate per second since the
last throttle or success: only evidence that the service accepts requests again raises the
rate, and reading the rate never changes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bulk_attach.core.catalog import ErrorClass
from bulk_attach.settings import AttemptSettings

__all__ = [
    "Abort",
    "AdaptiveRate",
    "AttemptPolicy",
    "Decision",
    "GiveUp",
    "Reconcile",
    "TryAgain",
]


@dataclass(frozen=True, slots=True)
class TryAgain:
    """Send again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Reconcile:
    """The call may have run: read the link back before deciding anything else."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Settle the row as failed with the error it met."""


@dataclass(frozen=True, slots=True)
class Abort:
    """The run itself is wrong (credentials, signature): stop everything."""


Decision = TryAgain | Reconcile | GiveUp | Abort

# 2**60 seconds is already far beyond any max_delay; bounding the exponent avoids overflow.
_MAX_EXPONENT = 60


class AttemptPolicy:
    """What to do after a failed attempt. ``attempt`` counts attempts made so far (>= 1)."""

    __slots__ = ("settings",)

    def __init__(self, settings: AttemptSettings | None = None) -> None:
        self.settings = settings or AttemptSettings()

    @property
    def max_attempts(self) -> int:
        return self.settings.max_attempts

    def backoff(
        self,
        attempt: int,
        error_class: ErrorClass,
        retry_after: float | None,
        rand: float,
    ) -> float:
        """Seconds to wait before attempt ``attempt + 1``: full jitter over an exponential
        ceiling, at least ``retry_after`` when the service gave one, at most ``max_delay``."""
        s = self.settings
        base = s.throttle_base_delay if error_class is ErrorClass.THROTTLED else s.base_delay
        exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
        ceiling = min(s.max_delay, base * (2.0**exponent))
        delay = min(max(rand, 0.0), 1.0) * ceiling
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            delay = max(delay, retry_after)
        return max(0.0, min(delay, s.max_delay))

    def decide(
        self,
        attempt: int,
        error_class: ErrorClass,
        retry_after: float | None,
        rand: float,
    ) -> Decision:
        if error_class is ErrorClass.FATAL:
            return Abort()
        if error_class is ErrorClass.PERMANENT:
            return GiveUp()
        if error_class is ErrorClass.AMBIGUOUS:
            # Even on the last attempt: reading back may show the call did run.
            return Reconcile()
        if attempt >= self.settings.max_attempts:
            return GiveUp()
        return TryAgain(self.backoff(attempt, error_class, retry_after, rand))

    def after_reconcile(self, attempt: int, rand: float) -> TryAgain | GiveUp:
        """The read-back found no link: the ambiguous call did not run, so it may be sent
        again (with the not-sent backoff) while attempts remain."""
        if attempt >= self.settings.max_attempts:
            return GiveUp()
        return TryAgain(self.backoff(attempt, ErrorClass.NOT_SENT, None, rand))

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"<AttemptPolicy max_attempts={s.max_attempts} base={s.base_delay:g}s "
            f"throttle_base={s.throttle_base_delay:g}s max_delay={s.max_delay:g}s>"
        )


class AdaptiveRate:
    """The share of the configured rate a region may use now; times are any monotonic clock.

    Invariant: ``floor * rate <= current_rate(now) <= rate``.
    """

    __slots__ = (
        "_fraction",
        "_last_decrease",
        "_updated",
        "beta",
        "cooldown",
        "floor",
        "rate",
        "recovery",
        "throttles",
    )

    def __init__(
        self,
        rate: float,
        *,
        beta: float = 0.7,
        floor: float = 0.05,
        recovery: float = 0.05,
        cooldown: float = 0.5,
    ) -> None:
        if rate <= 0 or not math.isfinite(rate):
            raise ValueError("rate must be a positive number")
        if not 0 < beta < 1:
            raise ValueError("beta must be between 0 and 1")
        if not 0 < floor <= 1:
            raise ValueError("floor must be in (0, 1]")
        if recovery < 0 or cooldown < 0:
            raise ValueError("recovery and cooldown must not be negative")
        self.rate = rate
        self.beta = beta
        self.floor = floor
        self.recovery = recovery  # fraction of the configured rate regained per second
        self.cooldown = cooldown
        self._fraction = 1.0
        self._updated: float | None = None  # when _fraction was last brought up to date
        self._last_decrease: float | None = None
        self.throttles = 0  # decreases applied

    @property
    def fraction(self) -> float:
        """The share of the configured rate allowed now, in ``[floor, 1]``."""
        return self._fraction

    def current_rate(self, now: float) -> float:
        """Requests per second allowed at ``now`` (read-only: does not change the state;
        ``now`` is taken so a time-based model can replace this one without API change)."""
        return self.rate * self._fraction

    def on_throttle(self, now: float) -> bool:
        """The service throttled a request; True when this slowed the rate down (the first
        throttle of a wave), False when it fell within the cooldown of the last one."""
        if self._last_decrease is not None and 0 <= now - self._last_decrease < self.cooldown:
            return False
        self._fraction = max(self.floor, self._fraction * self.beta)
        self._updated = now
        self._last_decrease = now
        self.throttles += 1
        return True

    def on_success(self, now: float) -> None:
        """A request succeeded: regain rate for the time since the last update."""
        if self._fraction < 1.0:
            elapsed = 0.0 if self._updated is None else max(0.0, now - self._updated)
            self._fraction = min(1.0, self._fraction + self.recovery * elapsed)
            self._updated = now

    def __repr__(self) -> str:
        return (
            f"<AdaptiveRate {self.rate * self._fraction:.2f}/{self.rate:g} per s "
            f"({self._fraction:.0%}), throttles={self.throttles}>"
        )
