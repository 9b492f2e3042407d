"""``bulk-attach emulator``: the emulator's own command line, kept beside it (as moto does).

Two option groups make two frozen objects: ``SERVING`` the ``EmulatorSettings`` (where it
listens, whom it lets in, its flow control and faults) and ``WORLD`` the ``WorldSpec`` that
``world.build_world`` turns into a model, the same way ``bulk-attach run --emulator`` does.
The emulator's modules are imported when the command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bulk_attach.errors import UsageError
from bulk_attach.options import OptionGroup, VerboseOpt, setup_logging, takes

if TYPE_CHECKING:
    from bulk_attach.emulator.server import EmulatorSettings, RunningEmulator
    from bulk_attach.emulator.world import WorldSpec

__all__ = ["SERVING", "WORLD", "banner", "emulator"]

EMULATOR_PANEL = "Emulator"
FAULTS_PANEL = "Flow control and faults (deterministic under --seed)"
VARIANTS = ("2018", "current")


def _share(name: str, help_text: str) -> Any:
    """A fault's share of requests, 0 to 1."""
    return typer.Option(name, min=0.0, max=1.0, help=help_text, rich_help_panel=FAULTS_PANEL)


def _serving(
    *,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, rich_help_panel=EMULATOR_PANEL)
    ] = 8080,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Bind address (loopback unless you mean it).",
            rich_help_panel=EMULATOR_PANEL,
        ),
    ] = "127.0.0.1",
    access_key_id: Annotated[
        str | None,
        typer.Option(
            "--access-key-id", help="\\[default: generated]", rich_help_panel=EMULATOR_PANEL
        ),
    ] = None,
    access_key_secret: Annotated[
        str | None,
        typer.Option(
            "--access-key-secret", help="\\[default: generated]", rich_help_panel=EMULATOR_PANEL
        ),
    ] = None,
    qps: Annotated[
        float | None,
        typer.Option(
            "--qps",
            min=0.0,
            help="Requests/s per API before Throttling.User.",
            rich_help_panel=FAULTS_PANEL,
        ),
    ] = None,
    retry_after_ms: Annotated[
        int | None,
        typer.Option(
            "--retry-after-ms",
            help="Send x-acs-retry-after on throttled answers.",
            rich_help_panel=FAULTS_PANEL,
        ),
    ] = None,
    limiter: Annotated[
        str | None,
        typer.Option(
            "--limiter",
            metavar="bucket|window",
            help="Flow control's shape: a token bucket (1 s of burst) or fixed windows of "
            "--window-seconds aligned to the clock \\[default: bucket].",
            rich_help_panel=FAULTS_PANEL,
        ),
    ] = None,
    window_seconds: Annotated[
        float | None,
        typer.Option(
            "--window-seconds",
            min=0.001,
            help="Length of a --limiter window (60: ECS's per-minute windows) \\[default: 1].",
            rich_help_panel=FAULTS_PANEL,
        ),
    ] = None,
    limit: Annotated[
        list[str] | None,
        typer.Option(
            "--limit",
            metavar="KEY=QPS",
            help="Requests/s for one API, region or region/API (repeatable; beats --qps).",
            rich_help_panel=FAULTS_PANEL,
        ),
    ] = None,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", min=0.0, rich_help_panel=FAULTS_PANEL)
    ] = 0.0,
    jitter_ms: Annotated[
        float, typer.Option("--jitter-ms", min=0.0, rich_help_panel=FAULTS_PANEL)
    ] = 0.0,
    error_rate: Annotated[float, _share("--error-rate", "500 InternalError.")] = 0.0,
    unavailable_rate: Annotated[
        float, _share("--unavailable-rate", "503 ServiceUnavailable.")
    ] = 0.0,
    drop_rate: Annotated[float, _share("--drop-rate", "Dropped connections.")] = 0.0,
    hang_rate: Annotated[float, _share("--hang-rate", "Hang for --hang-seconds.")] = 0.0,
    hang_seconds: Annotated[
        float, typer.Option("--hang-seconds", min=0.0, rich_help_panel=FAULTS_PANEL)
    ] = 30.0,
    commit_then_error_rate: Annotated[
        float, _share("--commit-then-error-rate", "Attach commits, then a 5xx.")
    ] = 0.0,
    commit_then_drop_rate: Annotated[
        float, _share("--commit-then-drop-rate", "Attach commits, then the connection drops.")
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", rich_help_panel=FAULTS_PANEL)] = 0,
) -> EmulatorSettings:
    from bulk_attach.emulator.faults import FaultSettings
    from bulk_attach.emulator.server import EmulatorSettings

    if (access_key_id is None) != (access_key_secret is None):
        raise UsageError("give both --access-key-id and --access-key-secret, or neither")
    flow: dict[str, Any] = {}
    if limiter is not None:
        flow["limiter"] = limiter
    if window_seconds is not None:
        flow["window_seconds"] = window_seconds
    if limit:
        flow["limits"] = _parse_limits(limit)
    try:
        faults = FaultSettings(
            qps=qps or None,
            retry_after_ms=retry_after_ms,
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            error_rate=error_rate,
            unavailable_rate=unavailable_rate,
            drop_rate=drop_rate,
            hang_rate=hang_rate,
            hang_seconds=hang_seconds,
            commit_then_error_rate=commit_then_error_rate,
            commit_then_drop_rate=commit_then_drop_rate,
        ).updated(flow)
    except ValueError as error:  # e.g. fault rates that add up to more than 1
        raise UsageError(str(error)) from None
    return EmulatorSettings(
        host=host,
        port=port,
        faults=faults,
        seed=seed,
        access_keys={access_key_id: access_key_secret}
        if access_key_id and access_key_secret
        else {},
    )


def _parse_limits(entries: list[str]) -> dict[str, float]:
    """``--limit AttachClassicLinkVpc=40 --limit cn-beijing=10`` as the ``limits`` mapping."""
    limits: dict[str, float] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        try:
            qps = float(value)
        except ValueError:
            qps = -1.0
        if not sep or not key.strip() or not qps > 0:
            raise UsageError(f"--limit takes KEY=QPS with a positive QPS, not {entry!r}")
        limits[key.strip()] = qps
    return limits


def _world(
    *,
    world: Annotated[
        Path | None,
        typer.Option("--world", help="World JSON file.", rich_help_panel=EMULATOR_PANEL),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            metavar="FILE",
            help="Keep the world in FILE: loaded if it exists (instead of --world), saved "
            "when the emulator stops. The same file as run's --emulator-state.",
            rich_help_panel=EMULATOR_PANEL,
        ),
    ] = None,
    world_from: Annotated[
        Path | None,
        typer.Option(
            "--world-from",
            metavar="PAIRS.csv",
            help="Derive (or, with --world, complete) the world from a pairs CSV.",
            rich_help_panel=EMULATOR_PANEL,
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(
            "--region", help="Region for CSV rows without one.", rich_help_panel=EMULATOR_PANEL
        ),
    ] = None,
    variant: Annotated[
        str,
        typer.Option(
            "--variant",
            help="Error codes and statuses: '2018' (the contract page) or 'current' "
            "(the 2024 doc: all 403, OperationDenied for linked elsewhere).",
            rich_help_panel=EMULATOR_PANEL,
        ),
    ] = "2018",
    vpc_quota: Annotated[
        int | None,
        typer.Option(
            "--vpc-quota",
            min=0,
            help="Links per VPC \\[default: 1000].",
            rich_help_panel=EMULATOR_PANEL,
        ),
    ] = None,
) -> WorldSpec:
    from bulk_attach.emulator.world import WorldSpec

    if variant not in VARIANTS:
        raise UsageError(f"--variant must be '2018' or 'current', not {variant!r}")
    return WorldSpec(
        world=world,
        pairs=world_from,
        default_region=region,
        variant=variant,
        quota=vpc_quota,
        state=state,
    )


SERVING = OptionGroup("serving", _serving)
WORLD = OptionGroup("world_spec", _world)


@takes(SERVING, WORLD)
def emulator(*, serving: EmulatorSettings, world_spec: WorldSpec, verbose: VerboseOpt = 0) -> None:
    """Serve a local ECS (and VPC) API emulator until Ctrl-C."""
    from bulk_attach.emulator.server import serve
    from bulk_attach.emulator.world import build_world, save_state

    setup_logging(verbose)
    model = build_world(world_spec)
    serving = _with_world_flow_control(serving, world_spec)
    started: list[RunningEmulator] = []

    def ready(running: RunningEmulator) -> None:
        started.append(running)
        for line in banner(running, serving, world_spec.state):
            typer.echo(line)

    # SIGTERM (a service manager, `kill`) stops it as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(serve(model, serving, on_ready=ready))
    except KeyboardInterrupt:
        if world_spec.state is not None and started:
            # The current model: a reset or a world load through the control endpoint
            # replaces it.
            save_state(started[0].model, world_spec.state)
            typer.echo(f"emulator state saved to {world_spec.state}")
        typer.echo("emulator stopped")


def _with_world_flow_control(serving: EmulatorSettings, spec: WorldSpec) -> EmulatorSettings:
    """The world file's ``flow_control`` under the command line's: options that differ
    from their defaults win over the file."""
    import dataclasses

    from bulk_attach.emulator.world import flow_control_of

    if spec.world is None:
        return serving
    flow = flow_control_of(spec.world)
    if not flow:
        return serving
    cli = serving.faults
    base = dataclasses.replace(cli, qps=None, limits={})
    try:
        merged = base.updated(flow)
    except ValueError as error:
        raise UsageError(f"{spec.world}: flow_control: {error}") from None
    default = type(cli)()
    explicit: dict[str, Any] = {
        name: getattr(cli, name)
        for name in ("limiter", "window_seconds")
        if getattr(cli, name) != getattr(default, name)
    }
    if cli.qps is not None:
        explicit["qps"] = cli.qps
    if cli.limits:
        explicit["limits"] = {**merged.limits, **cli.limits}
    return dataclasses.replace(serving, faults=merged.updated(explicit))


def banner(
    running: RunningEmulator, settings: EmulatorSettings, state: Path | None = None
) -> list[str]:
    """What to tell whoever started the emulator: only what is true of this one.

    The control endpoint exists only on loopback (unless enabled), and the client refuses
    plain http to any other address unless told ``--insecure-http``: the suggested commands
    are ones it accepts.
    """
    from bulk_attach.emulator.server import is_loopback

    port = running.port
    # The emulator's own credentials are printed on purpose: they exist only here.
    lines = [f"ECS emulator listening on {running.endpoint}  (Ctrl-C to stop)"]
    wildcard = _unspecified(running.host)
    if is_loopback(running.host):
        local = running.endpoint
    elif wildcard:
        local = f"http://127.0.0.1:{port}" if running.host != "::" else f"http://[::1]:{port}"
    else:
        local = None
    if settings.control_enabled:
        lines.append(f"  state:   {local or running.endpoint}/_emulator/state")
    else:
        lines.append("  control endpoint (/_emulator/...): off, as it is away from loopback")
    if state is not None:
        lines.append(f"  world kept in {state} (saved when the emulator stops)")
    lines.append(f"  export ALIBABA_CLOUD_ACCESS_KEY_ID={running.access_key_id}")
    lines.append(f"  export ALIBABA_CLOUD_ACCESS_KEY_SECRET={running.access_key_secret}")
    if local is not None:
        lines.append(f"  bulk-attach run PAIRS.csv --endpoint {local}")
    if not is_loopback(running.host):
        where = (
            "THIS-HOST"
            if wildcard
            else (f"[{running.host}]" if ":" in running.host else running.host)
        )
        lines.append(
            f"  from another machine: bulk-attach run PAIRS.csv --endpoint "
            f"http://{where}:{port} --insecure-http  (plain http: anyone on the way reads it)"
        )
    return lines


def _unspecified(host: str) -> bool:
    """0.0.0.0 or ::, every address of this machine (loopback included)."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return not host


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
