"""``detach``: roll back a migration, with the same safety as attach.

From a report, by default the rows this tool attached (``--all-linked`` adds the rows it
found already linked); from a pairs CSV, every row. Each row's VPC links are read first (a
row not linked is ``not_linked`` and not sent); the rate gate, attempts by class, read-back
after an ambiguous answer, the resume journal, the report's lock and the exit codes are
run's, through the same ``Engine`` with the ``DETACH`` action.

Destructive, so it asks first: on a terminal it shows what will be detached (counts per
VPC) and asks for confirmation; ``--yes`` is for scripts; with no terminal and no ``--yes``
it refuses (exit 2) and sends nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from bulk_attach.commands import Link, launch, print_result, say_to, start
from bulk_attach.core.rollback import DetachSelection
from bulk_attach.core.rows import Row
from bulk_attach.engine.actions import DETACH
from bulk_attach.engine.signals import SignalStop
from bulk_attach.engine.sources import RowSource
from bulk_attach.errors import ExitCode, UsageError
from bulk_attach.files.lock import ReportLock
from bulk_attach.files.paths import ReportPaths, command_report_for
from bulk_attach.files.report import is_report
from bulk_attach.files.rerun import pick_rows
from bulk_attach.job import read_input
from bulk_attach.settings import RunSettings

__all__ = ["DETACH_COMMAND", "Ask", "describe_targets", "detach_main"]

DETACH_COMMAND = "detach"

# Asks the operator a yes/no question on the terminal; None when there is no terminal.
Ask = Callable[[str], bool]


def describe_targets(rows: RowSource, *, most: int = 10) -> str:
    """``12 links in 3 VPCs: vpc-a 8, vpc-b 3, vpc-c 1``: the largest VPCs first."""
    per_vpc: Counter[str] = Counter(item.vpc_id for item in rows if isinstance(item, Row))
    total = sum(per_vpc.values())
    shown = ", ".join(f"{vpc} {n}" for vpc, n in per_vpc.most_common(most))
    more = f", and {len(per_vpc) - most} more VPCs" if len(per_vpc) > most else ""
    vpcs = f"{len(per_vpc)} VPC{'s' if len(per_vpc) != 1 else ''}"
    return f"{total} link{'s' if total != 1 else ''} in {vpcs}: {shown}{more}"


async def detach_main(
    settings: RunSettings,
    link: Link,
    *,
    selection: DetachSelection,
    yes: bool,
    ask: Ask | None,
) -> int:
    """The ``detach`` command: choose the rows, confirm, run the DETACH action."""

    async def body(settings: RunSettings, sig: SignalStop) -> int:
        return await _detach(settings, link, selection, yes=yes, ask=ask, sig=sig)

    return await start(settings, link, body)


async def _detach(
    settings: RunSettings,
    link: Link,
    selection: DetachSelection,
    *,
    yes: bool,
    ask: Ask | None,
    sig: SignalStop,
) -> int:
    say = say_to(settings)
    source = settings.input_path
    paths = ReportPaths(
        settings.report_path or command_report_for(source, DETACH_COMMAND, settings.report_format)
    )
    settings = replace(settings, report_path=paths.report)
    lock = ReportLock(paths.lock, paths.report, command=DETACH_COMMAND)
    await sig.off_loop(lock.acquire, settings.wait_lock)
    with lock:
        rows: RowSource
        if is_report(source):
            rows = await sig.off_loop(pick_rows, source, selection)
            what = f"{selection.describe()} in {source}"
        else:
            rows = await sig.off_loop(read_input, settings)
            what = f"every row of {source}"
        targets = describe_targets(rows)
        if rows.total == 0:
            say(f"detach: nothing to detach: no {what}")
            return ExitCode.OK
        announce = f"detach: {targets} ({what}); report: {paths.report}"
        if not yes:
            if ask is None:
                raise UsageError(
                    f"detach would unlink {targets}; it is destructive, and there is no "
                    "terminal to confirm on: pass --yes to go ahead. Nothing was sent."
                )
            if not await sig.off_loop(ask, f"Detach {targets}?"):
                raise UsageError("detach not confirmed; nothing was sent")
        else:
            say(announce)
        result = await launch(
            settings, link, rows, lock=lock, signals=sig, command=DETACH_COMMAND, action=DETACH
        )
    print_result(settings, result)
    return result.exit_code
