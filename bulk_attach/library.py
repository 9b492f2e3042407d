"""bulk-attach as a library: rows in, results out through a callback, no files.

For embedding in another async program, or testing the engine without a CSV on disk::

    from bulk_attach.library import attach, pairs
    from bulk_attach.api.credentials import Credentials

    results = []
    outcome = await attach(
        pairs([("cn-hangzhou", "i-bp1...", "vpc-bp1...")]),
        credentials=Credentials("LTAI...", "secret", None, "my vault"),
        on_result=results.append,
    )
    outcome.exit_code, outcome.summary.by_status()

``api=`` takes any object with the client's methods (``EcsClient``, a fake) instead of
credentials. Each row is validated as a CSV row would be (``pairs``); the same instance
listed twice is the caller's to avoid (the file reader's duplicate check needs the whole
input first). The CLI's ``run`` and ``detach`` wrap the same ``Engine`` with a report,
a resume journal and a lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AsyncExitStack

from bulk_attach.api.client import EcsClient
from bulk_attach.api.credentials import Credentials
from bulk_attach.core.outcomes import RowResult, Status
from bulk_attach.core.rows import Columns, Problem, Row, parse_record
from bulk_attach.engine.actions import ATTACH, DETACH, Action
from bulk_attach.engine.events import Listener
from bulk_attach.engine.gates import RateGate
from bulk_attach.engine.runner import Engine, EngineResult, RowList
from bulk_attach.engine.sources import Item
from bulk_attach.engine.worker import WorkerApi
from bulk_attach.settings import ClientSettings, EngineSettings

__all__ = ["attach", "detach", "pairs", "run_action"]

_COLUMNS = Columns.from_header(["RegionId", "InstanceId", "VpcId"], region_optional=False)
_CLIENT = ClientSettings()
_ENGINE = EngineSettings()


def pairs(triples: Iterable[Sequence[str]], *, first_line: int = 1) -> RowList:
    """``(region, instance, VPC)`` triples as rows, each validated like a CSV row: a bad
    one becomes an ``invalid`` result (nothing is sent for it). ``line`` numbers count
    from ``first_line``."""
    items: list[Item] = []
    for line, fields in enumerate(triples, first_line):
        parsed = parse_record(list(fields), line, _COLUMNS, None)
        if isinstance(parsed, Problem):
            items.append(
                RowResult(
                    line=parsed.line,
                    region_id=parsed.region_id,
                    instance_id=parsed.instance_id,
                    vpc_id=parsed.vpc_id,
                    status=Status.INVALID,
                    error_code=parsed.code.value,
                    message=parsed.located("rows"),
                    extra=parsed.extra,
                )
            )
        else:
            items.append(parsed)
    return RowList.of(items)


async def run_action(
    rows: Iterable[Row | RowResult],
    action: Action,
    *,
    credentials: Credentials | None = None,
    api: WorkerApi | None = None,
    client: ClientSettings = _CLIENT,
    settings: EngineSettings = _ENGINE,
    on_result: Callable[[RowResult], None] | None = None,
    listeners: Sequence[Listener] = (),
) -> EngineResult:
    """Run ``action`` for every row; ``on_result`` sees each result as it settles."""
    if (api is None) == (credentials is None):
        raise ValueError("give either credentials (to call the service) or api, not both")
    gate = RateGate.for_run(settings)
    async with AsyncExitStack() as stack:
        if credentials is not None:
            api = await stack.enter_async_context(EcsClient(client, credentials, gate=gate))
        if api is None:  # unreachable after the check above; it keeps the types exact
            raise ValueError("no API to call")
        engine = Engine(
            api, settings, action=action, gate=gate, on_result=on_result, listeners=listeners
        )
        return await engine.run(rows)


async def attach(
    rows: Iterable[Row | RowResult],
    *,
    credentials: Credentials | None = None,
    api: WorkerApi | None = None,
    client: ClientSettings = _CLIENT,
    settings: EngineSettings = _ENGINE,
    on_result: Callable[[RowResult], None] | None = None,
    listeners: Sequence[Listener] = (),
) -> EngineResult:
    """Link every row's instance to its VPC (see ``run_action``)."""
    return await run_action(
        rows,
        ATTACH,
        credentials=credentials,
        api=api,
        client=client,
        settings=settings,
        on_result=on_result,
        listeners=listeners,
    )


async def detach(
    rows: Iterable[Row | RowResult],
    *,
    credentials: Credentials | None = None,
    api: WorkerApi | None = None,
    client: ClientSettings = _CLIENT,
    settings: EngineSettings = _ENGINE,
    on_result: Callable[[RowResult], None] | None = None,
    listeners: Sequence[Listener] = (),
) -> EngineResult:
    """Unlink every row's instance from its VPC (see ``run_action``)."""
    return await run_action(
        rows,
        DETACH,
        credentials=credentials,
        api=api,
        client=client,
        settings=settings,
        on_result=on_result,
        listeners=listeners,
    )
