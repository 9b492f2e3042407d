"""Flow control and injected faults: what can go wrong between a client and ECS, on purpose.

Two independent mechanisms, both applied only to API calls (never to the control endpoint):

* ``RateLimiter``: a token bucket per key (account, region, action) refilled at ``qps``
  tokens per second with a burst of one second's worth. A request without a token is
  refused with ``Throttling.User`` and was not executed, exactly like the service's flow
  control. Time comes from an injectable clock so tests move it instead of sleeping.
* ``FaultInjector``: one ``random.Random(seed)``, and exactly two draws per API request taken
  synchronously when the request arrives (one picks the fault, one the latency jitter). The
  same seed and the same arrival order therefore give the same sequence of outcomes,
  whatever the requests turn out to be and however the settings change in between.

A fault is one of: ``InternalError`` (500) or ``ServiceUnavailable`` (503) before anything
runs; a dropped connection before anything runs; a hang of ``hang_seconds`` (after which the
request is served normally: the late commit a timed-out client cannot see); and, for the
calls that change state (attach, detach), the worst case: the change is committed and then
the answer is a 500 or the connection drops.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Fault", "FaultDraw", "FaultInjector", "FaultSettings", "RateLimiter"]


class Fault(StrEnum):
    """What the emulator does to one API request besides serving it."""

    NONE = "none"
    INTERNAL_ERROR = "internal_error"  # 500 InternalError, nothing executed
    UNAVAILABLE = "unavailable"  # 503 ServiceUnavailable, nothing executed
    DROP = "drop"  # connection closed without an answer, nothing executed
    HANG = "hang"  # sleep hang_seconds, then serve normally
    COMMIT_THEN_ERROR = "commit_then_error"  # mutating call committed, then 500
    COMMIT_THEN_DROP = "commit_then_drop"  # mutating call committed, then the connection drops


_RATE_FIELDS = (
    "error_rate",
    "unavailable_rate",
    "drop_rate",
    "hang_rate",
    "commit_then_error_rate",
    "commit_then_drop_rate",
)


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Flow control, latency and fault rates; replaced whole when changed at runtime."""

    qps: float | None = None  # per account, region and action; None = unlimited
    retry_after_ms: int | None = None  # x-acs-retry-after on throttled answers; None = omit
    latency_ms: float = 0.0
    jitter_ms: float = 0.0  # uniform extra latency in [0, jitter_ms)
    error_rate: float = 0.0
    unavailable_rate: float = 0.0
    drop_rate: float = 0.0
    hang_rate: float = 0.0
    hang_seconds: float = 30.0
    commit_then_error_rate: float = 0.0
    commit_then_drop_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if sum(getattr(self, name) for name in _RATE_FIELDS) > 1.0 + 1e-9:
            raise ValueError("the fault rates add up to more than 1")
        if self.qps is not None and not (self.qps > 0 and math.isfinite(self.qps)):
            raise ValueError(f"qps must be a positive number, not {self.qps}")
        if self.retry_after_ms is not None and self.retry_after_ms < 0:
            raise ValueError("retry_after_ms must not be negative")
        for name in ("latency_ms", "jitter_ms", "hang_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, changes: Mapping[str, Any]) -> FaultSettings:
        """A copy with ``changes`` applied (the control endpoint's JSON); ValueError if bad."""
        known = {f.name: f for f in dataclasses.fields(self)}
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault setting {name!r}")
            if value is None:
                if name not in ("qps", "retry_after_ms"):
                    raise ValueError(f"{name} cannot be null")
                clean[name] = None
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
            else:
                clean[name] = int(value) if name == "retry_after_ms" else float(value)
        return dataclasses.replace(self, **clean)

    def fault_for(self, draw: float, *, mutating: bool) -> Fault:
        """Map one uniform draw in [0, 1) onto a fault; the layout never depends on the call.

        Commit-then faults only exist for calls that change state; for the others their
        share of the draw range means "no fault", so the sequence stays aligned.
        """
        edge = 0.0
        for name, fault in (
            ("error_rate", Fault.INTERNAL_ERROR),
            ("unavailable_rate", Fault.UNAVAILABLE),
            ("drop_rate", Fault.DROP),
            ("hang_rate", Fault.HANG),
            ("commit_then_error_rate", Fault.COMMIT_THEN_ERROR),
            ("commit_then_drop_rate", Fault.COMMIT_THEN_DROP),
        ):
            edge += getattr(self, name)
            if draw < edge:
                if fault in (Fault.COMMIT_THEN_ERROR, Fault.COMMIT_THEN_DROP) and not mutating:
                    return Fault.NONE
                return fault
        return Fault.NONE

    def latency_for(self, draw: float) -> float:
        """Seconds to wait before answering, from one uniform draw in [0, 1)."""
        return (self.latency_ms + self.jitter_ms * draw) / 1000.0


@dataclass(frozen=True, slots=True)
class FaultDraw:
    """The two numbers drawn for one request at arrival."""

    fault: float
    jitter: float


class FaultInjector:
    """The seeded source of fault draws: two per API request, in arrival order."""

    __slots__ = ("_rng", "draws", "seed", "settings")

    def __init__(self, settings: FaultSettings, seed: int) -> None:
        self.settings = settings
        self.seed = seed
        self._rng = random.Random(seed)
        self.draws = 0

    def draw(self) -> FaultDraw:
        rng = self._rng.random
        self.draws += 1
        return FaultDraw(rng(), rng())

    def reseed(self, seed: int | None = None) -> None:
        """Start the draw sequence again (from ``seed`` if given)."""
        if seed is not None:
            self.seed = seed
        self._rng = random.Random(self.seed)
        self.draws = 0

    def __repr__(self) -> str:
        return f"<FaultInjector seed={self.seed} draws={self.draws} {self.settings}>"


class RateLimiter:
    """Token buckets per key: ``qps`` tokens per second, at most one second's worth banked."""

    __slots__ = ("_buckets", "_clock")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        # key -> (tokens, time of last refill)
        self._buckets: dict[object, tuple[float, float]] = {}

    def admit(self, key: object, qps: float) -> float | None:
        """Take a token: None if admitted, else the seconds until one will be available."""
        now = self._clock()
        capacity = max(1.0, qps)
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + max(0.0, now - last) * qps)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / qps

    def reset(self) -> None:
        self._buckets.clear()

    def __repr__(self) -> str:
        return f"<RateLimiter keys={len(self._buckets)}>"
