"""Flow control that finds the service's limit and runs just under it: one pure object per
(region, API), fed the time of each send and answer by a thin async shell (``engine/gates``).

Nobody knows the limit in advance: ECS limits are per API, region and account, shared with
every other tool of the account, and the user's ``--rate`` is a guess (or 0, no guess at
all). The controller learns it from what the service accepts, and only from that:

* **Pace.** Sends are spaced ``1 / pace`` apart (a GCRA: a virtual send time, so a late
  wake-up is caught up, with at most ``slack`` sends of tolerance). The pace never exceeds
  the ceiling (``--rate``, exactly: no 1-second window above it). With no ceiling the pace
  starts at ``SLOW_START`` and doubles every ``SLOW_START_DOUBLING`` seconds until the
  first throttle, as TCP's slow start does, so an unknown limit is found in a second or two
  without a flood of throttled requests.
* **Estimate on throttle.** A throttle means the service's budget is spent *now*. What it
  accepted in the last complete clock second, or in the last second before the throttle
  whatever its phase (``max`` of the two), is what it lets through per second, whatever
  its shape: a 1-second window admits exactly its limit in each, a token bucket its refill
  (and a throttle early in a clock second, when that second's count is a fraction of the
  rate, is still measured over a whole second). The limit becomes ``min(pace, that)`` and
  the pace ``MARGIN`` of the limit. One decrease per stall: the requests already in flight
  come back throttled together, and each answer carries when its request left, so the
  answers of requests sent before the stall began are one signal (as TCP reacts once per
  RTT); none of them stretches the probes' pauses or ends the stall.
* **Stall and probes.** After a throttle nothing is sent but single probes, each after a
  doubling pause (from ``1 / pace``), and never later than just after the next second
  boundary: a throttled 1-second window opens there. A probe still unanswered holds the
  next for ``PROBE_TIMEOUT``. A stall that outlives a second boundary is a long window
  (ECS: a call throttled in minute T works again from minute T+1): what the service
  accepted in the current clock minute, divided by 60, is its rate, and the next probe
  goes just after the next minute boundary, not every few seconds. The first accepted
  answer to a request sent during the stall ends it. ``refused_for`` says how long the
  service has accepted nothing (the gate fails waiting requests past the throttle
  timeout).
* **Probing up.** While the service accepts everything, the limit grows by ``GROWTH`` per
  accepted request (the limit may have been raised, another tool may have stopped), so
  the pace returns slowly above the old limit and a throttle re-measures it: a sawtooth a
  few percent wide, one throttled answer every few hundred requests whatever the limit.
  Growth stops at twice what the service accepted in the last second: a pace the run
  does not use (held back by its concurrency, or a service that never throttles) does not
  grow, so it can neither burst later nor overflow.

Time is any clock in seconds whose whole seconds and minutes are the service's (wall
time: ``time.time``), passed to every method; nothing here reads a clock or sleeps.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["FlowControl", "slack_for"]

MARGIN = 0.97  # pace as a share of the estimated limit
GROWTH = 1 / 8000  # the limit's growth per accepted request while nothing is throttled
SLOW_START = 100.0  # first pace without a ceiling, per second
SLOW_START_DOUBLING = 0.25  # seconds per doubling of the pace before the first throttle
LONG_WINDOW = 60.0  # seconds: ECS's per-minute windows
BOUNDARY_DELAY = 0.01  # a probe goes this long after a window boundary
MIN_PROBE_GAP = 0.005
MAX_PROBE_GAP = 1.0  # a short window's stall never waits longer between probes
# A probe whose answer has not come after this long is taken as lost: the next one goes.
PROBE_TIMEOUT = 5.0
# Below this rate a 1 ms late wake-up costs under 3.5 % of the rate, and a spare token
# (which costs one request per second of sustained rate) would cost more.
_SLACK_FROM = 35.0
_JITTER_MARGIN = 0.005


def slack_for(rate: float) -> int:
    """Sends of tolerance for a pace of ``rate``: one below 35/s, more from there (a second
    token absorbs the event loop's late wake-ups, ~1 ms, for one request per window)."""
    return 1 if rate < _SLACK_FROM else max(2, math.ceil(rate / 100))


class FlowControl:
    """When the next request of one (region, API) may leave, learned from the answers.

    Invariants: ``0 < pace <= ceiling_pace`` (when there is a ceiling); a stall sends at most
    one probe at a time; every decision depends only on the arguments and earlier calls.
    """

    __slots__ = (
        "_backoff",
        "_grown_at",
        "_long",
        "_lowered",
        "_min_count",
        "_min_index",
        "_prev_count",
        "_probe_at",
        "_recent",
        "_sec_count",
        "_sec_index",
        "_stall",
        "_tat",
        "_updated",
        "accepted",
        "ceiling",
        "decreases",
        "last_accepted",
        "limit",
        "pace",
        "throttled",
    )

    def __init__(self, ceiling: float | None = None) -> None:
        if ceiling is not None and not (ceiling > 0 and math.isfinite(ceiling)):
            raise ValueError("the ceiling must be a positive number")
        self.ceiling = ceiling
        self.limit: float | None = None  # the service's rate as learned; None: not yet
        self.pace = self.ceiling_pace if ceiling is not None else SLOW_START
        self._tat = -math.inf  # the GCRA's theoretical time of the next send
        self._stall: float | None = None  # when the current stall began
        self._long = False  # the current stall is a long window's
        self._probe_at = 0.0
        self._backoff = 0.0
        self._updated: float | None = None  # when the pace last grew
        self._lowered: float | None = None  # when the limit was last lowered
        self._sec_index = 0
        self._sec_count = 0
        self._prev_count = 0
        self._grown_at = 0  # ``accepted`` when the limit last grew
        self._recent: deque[float] = deque()  # when answers were accepted, the last second
        self._min_index = 0
        self._min_count = 0
        self.accepted = 0
        self.throttled = 0
        self.decreases = 0
        self.last_accepted: float | None = None

    @property
    def ceiling_pace(self) -> float:
        """The pace that keeps every 1-second window at or under the ceiling, with slack."""
        if self.ceiling is None:
            return math.inf
        rate = self.ceiling
        return (rate - slack_for(rate) + 1) * (1 - _JITTER_MARGIN)

    @property
    def stalled(self) -> bool:
        return self._stall is not None

    # --- sending -----------------------------------------------------------------------

    def delay(self, now: float) -> float:
        """Seconds to wait before the next request may leave (0: now); changes nothing."""
        if self._stall is not None:
            return max(0.0, self._probe_at - now)
        tolerance = (self._slack() - 1) / self.pace
        return max(0.0, self._tat - tolerance - now)

    def sent(self, now: float) -> None:
        """A request left at ``now`` (after ``delay`` said 0)."""
        self._grow(now)
        if self._stall is not None:
            # One probe at a time: the next only if this one's answer never comes.
            self._probe_at = now + PROBE_TIMEOUT
            return
        self._tat = max(self._tat, now) + 1.0 / self.pace

    # --- answers -----------------------------------------------------------------------

    def on_accepted(self, now: float, sent_at: float | None = None) -> bool:
        """The service answered a request (anything but throttling) that left at
        ``sent_at`` (None: after everything already fed back); True if that ended a stall
        (the waiting requests may go at once)."""
        self._roll(now)
        self._sec_count += 1
        self._min_count += 1
        self.accepted += 1
        self.last_accepted = now
        recent = self._recent
        recent.append(now)
        while recent[0] <= now - 1.0:
            recent.popleft()
        self._grow(now)
        if self._stall is None or self._before_stall(sent_at):
            # Sent before the stall began: the service took it before its budget ran out,
            # which says nothing about whether the budget is back.
            return False
        self._stall = None
        self._long = False
        # The probe took what the service had: no catch-up burst right after a stall.
        self._tat = now + self._slack() / self.pace
        return True

    def on_throttle(self, now: float, sent_at: float | None = None) -> bool:
        """The service throttled a request that left at ``sent_at`` (None: after
        everything already fed back); True if the pace was lowered."""
        self.throttled += 1
        self._roll(now)
        if self._stall is None:
            self._stall = now
            self._long = False
            seen = max(self._prev_count, self._last_second(now))
            estimate = seen if seen >= 1 else self.pace / 2
            recent = self._lowered is not None and now - self._lowered < 1.0
            # Once per second at most on the pace alone (a bucket refuses every other call
            # while it drains); within it, only the count can lower the limit further.
            cap = self.limit if recent and self.limit is not None else self.pace
            self._lower(min(cap, estimate), now)
            self._backoff = max(1.0 / self.pace, MIN_PROBE_GAP)
            self._probe_at = min(now + self._backoff, _next_boundary(now, 1.0))
            return True
        if self._before_stall(sent_at):
            # The rest of the wave that began the stall: one wave is one signal.
            return False
        lowered = False
        if not self._long and now - self._stall >= 1.0 and _crossed(self._stall, now, 1.0):
            # Refused past a second boundary: a long window, spent for this minute.
            self._long = True
            lowered = self._lower(max(self._min_count, 1) / LONG_WINDOW, now)
        if self._long:
            self._probe_at = _next_boundary(now, LONG_WINDOW)
        else:
            self._backoff = min(2 * self._backoff, MAX_PROBE_GAP)
            self._probe_at = min(now + self._backoff, _next_boundary(now, 1.0))
        return lowered

    def refused_for(self, now: float) -> float:
        """Seconds the service has accepted nothing of this kind, in the current stall
        (0 when not stalled)."""
        if self._stall is None:
            return 0.0
        since = self._stall
        if self.last_accepted is not None:
            since = max(since, self.last_accepted)
        return max(0.0, now - since)

    # --- inside ------------------------------------------------------------------------

    def _last_second(self, now: float) -> int:
        """What the service accepted in the last second, whatever its phase. A clock
        second's count is exact for fixed windows (a throttle means the window's budget is
        spent) but only a fraction of a token bucket's rate when the throttle comes early
        in the second (a run that starts late in one, a bucket drained just after a
        stall); the last whole second before the throttle measures both."""
        recent = self._recent
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        return len(recent)

    def _before_stall(self, sent_at: float | None) -> bool:
        return sent_at is not None and self._stall is not None and sent_at < self._stall

    def _slack(self) -> int:
        """At the ceiling, the slack its pace was computed with; else the pace's own."""
        if self.ceiling is not None and self.pace >= self.ceiling_pace:
            return slack_for(self.ceiling)
        return slack_for(self.pace)

    def _pace_for(self, limit: float) -> float:
        """Just under ``limit``; at least one request a minute (a probe), never above the
        ceiling."""
        return min(self.ceiling_pace, max(MARGIN * limit, 1.0 / LONG_WINDOW))

    def _lower(self, limit: float, now: float) -> bool:
        if self.limit is not None and limit >= self.limit:
            return False
        self.limit = limit
        self.pace = self._pace_for(limit)
        self._grown_at = self.accepted
        self._updated = now
        self._lowered = now
        self.decreases += 1
        return True

    def _grow(self, now: float) -> None:
        """Probe upwards with time, only while the service accepts (not during a stall)."""
        last, self._updated = self._updated, now
        if self._stall is not None:
            self._grown_at = self.accepted  # what a stall's answers say is not growth
            return
        # Growth only while it is used: never past twice what the service accepted in the
        # last whole second or so far in this one (a run held back by its concurrency, or
        # one that never meets the limit, does not grow a pace it cannot use, toward a
        # burst later or past any float).
        used = 2.0 * max(self._prev_count, self._sec_count, SLOW_START / 2)
        if self.limit is None:
            if self.ceiling is None and last is not None and now > last:
                doubling = 2.0 ** ((now - last) / SLOW_START_DOUBLING)
                self.pace = min(self.pace * doubling, used)
            return
        # Per request accepted, not per second: a throttle every few hundred requests
        # whatever the limit (0.5 % of 10/s per second would cost 1.7 % of all requests).
        grown = self.limit * (1.0 + GROWTH * (self.accepted - self._grown_at))
        self._grown_at = self.accepted
        self.limit = min(grown, max(self.limit, used))
        if self.ceiling is not None:
            self.limit = min(self.limit, self.ceiling)
        self.pace = self._pace_for(self.limit)

    def _roll(self, now: float) -> None:
        """Start counting a new clock second or minute when ``now`` is in one."""
        second = math.floor(now)
        if second != self._sec_index:
            self._prev_count = self._sec_count if second == self._sec_index + 1 else 0
            self._sec_index, self._sec_count = second, 0
        minute = math.floor(now / LONG_WINDOW)
        if minute != self._min_index:
            self._min_index, self._min_count = minute, 0

    def __repr__(self) -> str:
        limit = "?" if self.limit is None else f"{self.limit:.1f}"
        ceiling = "none" if self.ceiling is None else f"{self.ceiling:g}"
        state = " stalled" if self._stall is not None else ""
        return (
            f"<FlowControl pace={self.pace:.1f}/s limit={limit} ceiling={ceiling}{state} "
            f"accepted={self.accepted} throttled={self.throttled}>"
        )


def _next_boundary(now: float, period: float) -> float:
    return (math.floor(now / period) + 1) * period + BOUNDARY_DELAY


def _crossed(start: float, now: float, period: float) -> bool:
    return math.floor(now / period) > math.floor(start / period)
