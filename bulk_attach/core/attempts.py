"""In-run attempt decisions (try again, reconcile, give up), as pure functions of their
inputs.

``AttemptPolicy.decide`` maps (attempt, error class, the service's retry-after, a random
number, how long the service has refused everything) to one of four small decisions; the
engine does the waiting and the I/O. The catalog decides the class; nothing here looks at
HTTP statuses.

* throttled: send again, however often: the rate gate (``core/flow.py``) holds it until
  the service accepts requests again, so the only wait here is the service's own
  ``x-acs-retry-after``. Its budget is time, not attempts: the row gives up only once the
  service has accepted nothing of its kind for ``throttle_timeout`` seconds, and throttled
  attempts do not count against ``max_attempts`` (the engine passes ``attempt`` without
  them);
* not sent: wait (exponential backoff with full jitter from ``base_delay``) and send again;
* ambiguous: the call may have run, so never re-send blindly: ``Reconcile`` (read the link
  back), then ask ``after_reconcile`` whether to send again;
* permanent: give up; fatal: abort the whole run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bulk_attach.core.catalog import ErrorClass
from bulk_attach.settings import AttemptSettings

__all__ = [
    "Abort",
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
        *,
        refused_for: float = 0.0,
    ) -> Decision:
        """``attempt`` counts the attempts that were not throttled; ``refused_for`` is how
        long the service has accepted nothing like this request (throttled ones only)."""
        if error_class is ErrorClass.THROTTLED:
            return self.after_throttle(retry_after, refused_for)
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

    def after_throttle(self, retry_after: float | None, refused_for: float) -> TryAgain | GiveUp:
        """A throttled request: again (after the service's retry-after, if any) until the
        service has refused everything for ``throttle_timeout``."""
        if refused_for >= self.settings.throttle_timeout:
            return GiveUp()
        delay = 0.0
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            delay = min(retry_after, self.settings.max_delay)
        return TryAgain(delay)

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
            f"throttle_timeout={s.throttle_timeout:g}s max_delay={s.max_delay:g}s>"
        )
