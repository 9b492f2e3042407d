"""Flow control and injected faults: what can go wrong between a client and ECS, on purpose.

Two independent mechanisms, both applied only to API calls (never to the control endpoint):

* ``RateLimiter``: flow control per key (account, region, action), in one of two shapes
  (``FaultSettings.limiter``): a token bucket refilled at ``qps`` tokens per second with a
  burst of one second's worth, or fixed windows of ``window_seconds`` aligned to the clock
  (``qps * window_seconds`` calls each; 60-second windows are the documented ECS behaviour:
  a call throttled in minute T works again from minute T+1). The limit is ``qps``, or the
  entry of ``limits`` for the call's ``region/Action``, ``Action`` or ``region`` (most
  specific first). A request over the limit is refused with ``Throttling.User`` and was not
  executed, exactly like the service's flow control. Time comes from an injectable clock
  so tests move it instead of sleeping; a changed limit applies from the next request.
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
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "Fault",
    "FaultDraw",
    "FaultInjector",
    "FaultSettings",
    "LimiterShape",
    "RateLimiter",
]


class LimiterShape(StrEnum):
    """How the emulator's flow control counts calls."""

    BUCKET = "bucket"  # token bucket, one second's worth of burst
    WINDOW = "window"  # fixed windows of window_seconds, aligned to the clock


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
    limiter: LimiterShape = LimiterShape.BUCKET
    window_seconds: float = 1.0  # the window's length when limiter is "window"
    # Per-API and per-region limits: "region/Action", "Action" or "region" -> qps (None:
    # unlimited); the most specific entry wins over ``qps``.
    limits: Mapping[str, float | None] = field(default_factory=dict)
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
        for key, limit in self.limits.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"limits: {key!r} is not a region, an Action or region/Action")
            if limit is not None and not (limit > 0 and math.isfinite(limit)):
                raise ValueError(f"limits[{key!r}] must be a positive number, not {limit}")
        if not (self.window_seconds > 0 and math.isfinite(self.window_seconds)):
            raise ValueError(f"window_seconds must be a positive number, not {self.window_seconds}")
        object.__setattr__(self, "limiter", LimiterShape(self.limiter))
        if self.retry_after_ms is not None and self.retry_after_ms < 0:
            raise ValueError("retry_after_ms must not be negative")
        for name in ("latency_ms", "jitter_ms", "hang_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["limiter"] = str(self.limiter)
        data["limits"] = dict(self.limits)
        return data

    def limit_for(self, region: str, action: str) -> float | None:
        """Calls per second allowed for ``action`` in ``region``; None: unlimited."""
        limits = self.limits
        if limits:
            for key in (f"{region}/{action}", action, region):
                if key in limits:
                    return limits[key]
        return self.qps

    def updated(self, changes: Mapping[str, Any]) -> FaultSettings:
        """A copy with ``changes`` applied (the control endpoint's JSON); ValueError if bad."""
        known = {f.name: f for f in dataclasses.fields(self)}
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault setting {name!r}")
            if name == "limiter":
                try:
                    clean[name] = LimiterShape(value)
                except ValueError:
                    shapes = [str(s) for s in LimiterShape]
                    raise ValueError(f"limiter must be one of {shapes}, not {value!r}") from None
            elif name == "limits":
                clean[name] = _limits(value)
            elif value is None:
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


def _limits(value: Any) -> dict[str, float | None]:
    """``limits`` from JSON: an object of key -> positive number or null."""
    if not isinstance(value, Mapping):
        raise ValueError("limits must be an object of region/Action -> calls per second")
    clean: dict[str, float | None] = {}
    for key, limit in value.items():
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float)):
            raise ValueError(f"limits[{key!r}] must be a number or null")
        clean[str(key)] = None if limit is None else float(limit)
    return clean


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
    """Flow control per key: token buckets (one second's worth banked) or fixed windows."""

    __slots__ = ("_buckets", "_clock", "_windows")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        # key -> (tokens, time of last refill)
        self._buckets: dict[object, tuple[float, float]] = {}
        # key -> (window number, calls admitted in it)
        self._windows: dict[object, tuple[int, int]] = {}

    def admit(
        self,
        key: object,
        qps: float,
        shape: LimiterShape = LimiterShape.BUCKET,
        window: float = 1.0,
    ) -> float | None:
        """Admit one call: None if admitted, else the seconds until one will be."""
        if shape is LimiterShape.WINDOW:
            return self._admit_window(key, qps, window)
        now = self._clock()
        capacity = max(1.0, qps)
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + max(0.0, now - last) * qps)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / qps

    def _admit_window(self, key: object, qps: float, window: float) -> float | None:
        now = self._clock()
        number = math.floor(now / window)
        # At least one call per window, so a tiny limit still lets something through.
        budget = max(1, math.floor(qps * window + 1e-9))
        current, count = self._windows.get(key, (number, 0))
        if current != number:
            count = 0
        if count < budget:
            self._windows[key] = (number, count + 1)
            return None
        self._windows[key] = (number, count)
        return (number + 1) * window - now

    def reset(self) -> None:
        self._buckets.clear()
        self._windows.clear()

    def __repr__(self) -> str:
        return f"<RateLimiter keys={len(self._buckets) + len(self._windows)}>"
