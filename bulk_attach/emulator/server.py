"""The emulator as an aiohttp application: the request pipeline, the control endpoint, startup.

One API request goes through, in order::

    draw faults (synchronously, so draws follow arrival order) -> parse -> latency
    -> authenticate -> find the action -> flow control (Throttling.User)
    -> fault before execution (500, 503, drop, hang) -> run the model verb
    -> fault after a committed change (500 or drop) -> render

Every ``ApiFault`` raised on the way is rendered by ``http.render_error`` and counted per
action and code. The control endpoint (``/_emulator/...``) bypasses all of it: no
authentication, no flow control, no faults, and by default it only exists when the server
is bound to a loopback address.

Library use::

    async with running_emulator(model, EmulatorSettings()) as emulator:
        ...  # emulator.endpoint, emulator.access_key_id, emulator.access_key_secret
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import ssl
import string
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from bulk_attach.emulator.auth import DEFAULT_MAX_SKEW, Authenticator, Keyring
from bulk_attach.emulator.faults import Fault, FaultInjector, FaultSettings, RateLimiter
from bulk_attach.emulator.http import (
    ApiFault,
    find_action,
    new_request_id,
    parse_request,
    product_for,
    render_error,
    render_success,
    response_format,
    run_action,
)
from bulk_attach.emulator.model import EcsModel
from bulk_attach.emulator.sts import StsService, StsSettings
from bulk_attach.emulator.world import dump_world, world_from_dict
from bulk_attach.errors import InputError

__all__ = [
    "EMULATOR_KEY",
    "Emulator",
    "EmulatorSettings",
    "RunningEmulator",
    "create_app",
    "generate_credentials",
    "running_emulator",
    "serve",
]

CONTROL_PREFIX: Final = "/_emulator"
DROPPED: Final = "Dropped"  # the "code" counted for an answer that never went out
# Seconds a shutdown waits for handlers still running (a hang fault sleeps much longer).
SHUTDOWN_TIMEOUT: Final = 1.0
# Seconds a request may take to arrive whole (headers from the connection's start or the last
# answer, then its body): a client sending a byte a minute (slowloris) is cut off, not kept
# for aiohttp's hour-long default. Above the SDKs' and our client's idle keep-alive (15 s),
# so a connection a client is about to reuse is not closed under it.
DEFAULT_REQUEST_TIMEOUT: Final = 30.0
INCOMPLETE: Final = "(incomplete request)"  # counted under this "action", code DROPPED
_BEFORE: Final = frozenset({Fault.INTERNAL_ERROR, Fault.UNAVAILABLE, Fault.DROP, Fault.HANG})
_AFTER: Final = frozenset({Fault.COMMIT_THEN_ERROR, Fault.COMMIT_THEN_DROP})


@dataclass(frozen=True)
class EmulatorSettings:
    """How the emulator listens, who may call it, and what flow control and faults it applies."""

    host: str = "127.0.0.1"
    port: int = 0
    # Flow control and faults (see faults.py); changeable at runtime via POST /_emulator/faults.
    faults: FaultSettings = field(default_factory=FaultSettings)
    seed: int = 0
    # Credentials: access key id -> secret (one pair is generated when empty); STS keys map
    # to the token they require; each key acts as an account (default ``account``).
    access_keys: Mapping[str, str] = field(default_factory=dict)
    security_tokens: Mapping[str, str] = field(default_factory=dict)
    accounts: Mapping[str, str] = field(default_factory=dict)
    account: str = "default"
    max_clock_skew: float = DEFAULT_MAX_SKEW
    # The control endpoint: None = only when bound to a loopback address.
    control: bool | None = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    # Wall clock for timestamps, nonces and flow control; tests pass a fake one.
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)
    # STS, the ECS metadata service and a credentials URI (emulator/sts.py).
    sts: StsSettings = field(default_factory=StsSettings)

    @property
    def control_enabled(self) -> bool:
        if self.control is not None:
            return self.control
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def generate_credentials() -> tuple[str, str]:
    """A random key pair shaped like Alibaba's: ``LTAI`` + 20 characters, a 30-character secret."""
    alphabet = string.ascii_letters + string.digits
    key_id = "LTAI" + "".join(secrets.choice(alphabet) for _ in range(20))
    secret = "".join(secrets.choice(alphabet) for _ in range(30))
    return key_id, secret


class Emulator:
    """The live emulator: model, authenticator, flow control, faults and the call counters."""

    __slots__ = (
        "_initial_faults",
        "_initial_world",
        "authenticator",
        "calls",
        "control_enabled",
        "injected",
        "injector",
        "limiter",
        "model",
        "request_timeout",
    )

    def __init__(self, model: EcsModel, settings: EmulatorSettings, keyring: Keyring) -> None:
        self.model = model
        self.request_timeout = settings.request_timeout
        self.authenticator = Authenticator(
            keyring, settings.clock, max_skew=settings.max_clock_skew
        )
        self._initial_faults = settings.faults
        self.injector = FaultInjector(self._initial_faults, settings.seed)
        self.limiter = RateLimiter(settings.clock)
        self.calls: dict[str, Counter[str]] = {}
        self.injected: Counter[str] = Counter()
        self.control_enabled = settings.control_enabled
        self._initial_world = dump_world(model)

    def __repr__(self) -> str:
        total = sum(sum(codes.values()) for codes in self.calls.values())
        return f"<Emulator {self.model!r} calls={total} {self.injector!r}>"

    # --- the API pipeline ----------------------------------------------------------------

    def _count(self, action: str, code: str) -> None:
        codes = self.calls.get(action)
        if codes is None:
            codes = self.calls[action] = Counter()
        codes[code] += 1

    def _drop(self, request: web.Request, action: str) -> web.Response:
        """Close the connection without answering; the client sees a disconnect."""
        self._count(action, DROPPED)
        if request.transport is not None:
            request.transport.abort()
        request.protocol.force_close()
        # Never written: the transport is gone, and aiohttp skips writing to it.
        return web.Response(status=500)

    def _throttle(self, settings: FaultSettings, qps: float, key: tuple[str, str, str]) -> None:
        """Flow control per account, region and action: Throttling.User when over qps."""
        if self.limiter.admit(key, qps, settings.limiter, settings.window_seconds) is None:
            return
        self.injected["throttled"] += 1
        headers = {}
        if settings.retry_after_ms is not None:
            headers["x-acs-retry-after"] = str(settings.retry_after_ms)
        raise ApiFault("Throttling.User", headers=headers)

    @staticmethod
    async def _before(fault: Fault, settings: FaultSettings) -> bool:
        """Apply a fault that strikes before execution; True means drop the connection."""
        if fault is Fault.HANG:
            await asyncio.sleep(settings.hang_seconds)
        elif fault is Fault.DROP:
            return True
        elif fault is Fault.INTERNAL_ERROR:
            raise ApiFault("InternalError")
        elif fault is Fault.UNAVAILABLE:
            raise ApiFault("ServiceUnavailable")
        return False

    async def handle_api(self, request: web.Request) -> web.StreamResponse:
        draw = self.injector.draw()  # before any await: the draw sequence follows arrival
        request_id = new_request_id()
        try:
            async with asyncio.timeout(self.request_timeout):
                parsed = await parse_request(request)  # reads the body
        except TimeoutError:
            return self._drop(request, INCOMPLETE)
        fmt = response_format(parsed)
        product = product_for(parsed)
        region = parsed.params.get("RegionId", "")
        name = parsed.action or "(none)"
        settings = self.injector.settings
        try:
            delay = settings.latency_for(draw.jitter)
            if delay > 0:
                await asyncio.sleep(delay)
            if request.method not in ("GET", "POST"):
                raise ApiFault("UnsupportedHTTPMethod")
            caller = self.authenticator.authenticate(parsed)
            action = find_action(parsed)
            qps = settings.limit_for(region, action.name)
            if qps is not None:
                self._throttle(settings, qps, (caller.account, region, action.name))
            fault = settings.fault_for(draw.fault, mutating=action.mutating)
            if fault in _BEFORE:
                self.injected[fault.value] += 1
                if await self._before(fault, settings):
                    return self._drop(request, name)
            payload = run_action(action, self.model, caller.account, parsed.params)
            if fault in _AFTER:
                # Only reached when the change was committed: the worst case for a client.
                self.injected[fault.value] += 1
                if fault is Fault.COMMIT_THEN_DROP:
                    return self._drop(request, name)
                raise ApiFault("InternalError")
        except ApiFault as error:
            self._count(name, error.code)
            host = product.lower()
            host_id = f"{host}.{region}.aliyuncs.com" if region else f"{host}.aliyuncs.com"
            return render_error(
                error,
                fmt=fmt,
                request_id=request_id,
                host_id=host_id,
                product=product,
                variant=self.model.variant,
            )
        self._count(name, "OK")
        return render_success(action.name, {"RequestId": request_id, **payload}, fmt)

    # --- the control endpoint ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        snapshot = self.model.snapshot()
        return {
            **snapshot,
            "calls": {action: dict(codes) for action, codes in sorted(self.calls.items())},
            "faults": {
                "settings": self.injector.settings.as_dict(),
                "seed": self.injector.seed,
                "draws": self.injector.draws,
                "injected": dict(sorted(self.injected.items())),
            },
        }

    def reset(self) -> None:
        """Back to the start: the world as loaded, no counters, no nonces, draws from the seed."""
        self.model = world_from_dict(self._initial_world, variant=self.model.variant)
        self.calls.clear()
        self.injected.clear()
        self.limiter.reset()
        self.authenticator.reset()
        self.injector.settings = self._initial_faults
        self.injector.reseed()

    def load_world(self, data: Any) -> None:
        """Replace the model by this world (which also becomes what a reset returns to)."""
        model = world_from_dict(data, source="POST /_emulator/world", variant=self.model.variant)
        self.model = model
        self._initial_world = dump_world(model)

    def change_faults(self, changes: Mapping[str, Any]) -> None:
        changes = dict(changes)
        seed = changes.pop("seed", None)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be an integer")
        self.injector.settings = self.injector.settings.updated(changes)
        if seed is not None:
            self.injector.reseed(seed)


EMULATOR_KEY: Final = web.AppKey("emulator", Emulator)
STS_KEY: Final = web.AppKey("sts", StsService)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, indent=1))


async def _read_json(request: web.Request) -> Any:
    text = await request.text()
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None


async def _state(request: web.Request) -> web.Response:
    return _json(request.app[EMULATOR_KEY].state())


async def _reset(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR_KEY]
    emulator.reset()
    return _json(emulator.state())


async def _world(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR_KEY]
    data = await _read_json(request)
    try:
        emulator.load_world(data)
    except InputError as exc:
        return _json({"error": str(exc)}, status=400)
    return _json(emulator.state())


async def _faults(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR_KEY]
    data = await _read_json(request)
    if not isinstance(data, dict):
        return _json({"error": "the body must be a JSON object"}, status=400)
    try:
        emulator.change_faults(data)
    except ValueError as exc:
        return _json({"error": str(exc)}, status=400)
    return _json(emulator.state()["faults"])


def create_app(
    model: EcsModel, settings: EmulatorSettings, *, keyring: Keyring | None = None
) -> web.Application:
    """The aiohttp application; credentials are generated when none are configured."""
    if keyring is None:
        keyring = keyring_for(settings)
    emulator = Emulator(model, settings, keyring)
    app = web.Application()
    app[EMULATOR_KEY] = emulator
    sts = app[STS_KEY] = StsService(settings.sts, emulator.authenticator, settings.clock)

    async def root(request: web.Request) -> web.StreamResponse:
        return await (sts.handle if sts.handles(request) else emulator.handle_api)(request)

    app.router.add_route("*", "/", root)
    sts.add_routes(app)
    if emulator.control_enabled:
        app.router.add_get(f"{CONTROL_PREFIX}/state", _state)
        app.router.add_post(f"{CONTROL_PREFIX}/reset", _reset)
        app.router.add_post(f"{CONTROL_PREFIX}/world", _world)
        app.router.add_post(f"{CONTROL_PREFIX}/faults", _faults)
    return app


def keyring_for(settings: EmulatorSettings) -> Keyring:
    keys = dict(settings.access_keys)
    if not keys:
        key_id, secret = generate_credentials()
        keys[key_id] = secret
    unknown = sorted(set(settings.security_tokens) - set(keys))
    if unknown:
        raise ValueError(f"security tokens given for unknown access keys: {unknown}")
    return Keyring(
        secrets=keys,
        tokens=dict(settings.security_tokens),
        accounts=dict(settings.accounts),
        default_account=settings.account,
    )


@dataclass(frozen=True)
class RunningEmulator:
    """A started emulator: where it listens and the first configured credentials."""

    endpoint: str  # "http://127.0.0.1:PORT"
    host: str
    port: int
    access_key_id: str
    access_key_secret: str = field(repr=False)
    app: web.Application = field(repr=False)

    @property
    def emulator(self) -> Emulator:
        return self.app[EMULATOR_KEY]

    @property
    def model(self) -> EcsModel:
        """The current model (a reset or a world load replaces it: read it again after)."""
        return self.app[EMULATOR_KEY].model

    @property
    def sts(self) -> StsService:
        return self.app[STS_KEY]

    @property
    def security_token(self) -> str | None:
        return self.emulator.authenticator.keyring.tokens.get(self.access_key_id)


@asynccontextmanager
async def running_emulator(
    model: EcsModel, settings: EmulatorSettings, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[RunningEmulator]:
    """Serve on ``settings.host``/``port`` (port 0: any free port) for the block's duration;
    over TLS with ``ssl_context`` (tests reach it as the real API is reached: https)."""
    keyring = keyring_for(settings)
    app = create_app(model, settings, keyring=keyring)
    # keepalive_timeout also bounds a connection whose request headers never complete.
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        keepalive_timeout=settings.request_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_context)
        await site.start()
        port = settings.port
        for address in runner.addresses:
            if isinstance(address, tuple):
                port = int(address[1])
                break
        host = settings.host
        shown = f"[{host}]" if ":" in host else host
        key_id, secret = next(iter(keyring.secrets.items()))
        yield RunningEmulator(
            endpoint=f"{'https' if ssl_context else 'http'}://{shown}:{port}",
            host=host,
            port=port,
            access_key_id=key_id,
            access_key_secret=secret,
            app=app,
        )
    finally:
        await runner.cleanup()


async def serve(
    model: EcsModel,
    settings: EmulatorSettings,
    *,
    on_ready: Callable[[RunningEmulator], None],
) -> None:
    """Run until cancelled (Ctrl-C under ``asyncio.run``), then shut down cleanly."""
    async with running_emulator(model, settings) as running:
        on_ready(running)
        await asyncio.Event().wait()
