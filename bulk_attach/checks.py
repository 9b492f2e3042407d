"""``plan`` and ``verify``: the read-only steps before and after a run, as commands.

The engines are ``plan.py`` and ``verify.py``; this is their command-line composition, as
``job.py`` is run's: signals handled for the whole command, the report's lock, the input
validated off the event loop, credentials (or the embedded emulator), progress, and the
terminal summary. Neither sends a change.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import replace

from bulk_attach.commands import Link, announce, connect, progress_for, show_summary, start
from bulk_attach.core.prediction import Variant
from bulk_attach.engine.signals import SignalStop
from bulk_attach.files.lock import ReportLock
from bulk_attach.files.paths import ReportPaths, command_report_for
from bulk_attach.job import read_input
from bulk_attach.plan import PlanSettings, plan_job
from bulk_attach.progress import render_read_summary
from bulk_attach.session import ReadJobResult
from bulk_attach.settings import RunSettings
from bulk_attach.verify import VerifySettings, verify_job

__all__ = ["PLAN_COMMAND", "VERIFY_COMMAND", "check_main"]

PLAN_COMMAND = "plan"
VERIFY_COMMAND = "verify"


async def check_main(
    command: str, settings: RunSettings, link: Link, *, variant: Variant | None = None
) -> int:
    """``plan`` or ``verify`` a pairs CSV (or a report); prints the summary."""

    async def body(settings: RunSettings, sig: SignalStop) -> int:
        return await _check(command, settings, link, sig, variant)

    return await start(settings, link, body)


async def _check(
    command: str, settings: RunSettings, link: Link, sig: SignalStop, variant: Variant | None
) -> int:
    paths = ReportPaths(
        settings.report_path
        or command_report_for(settings.input_path, command, settings.report_format)
    )
    settings = replace(settings, report_path=paths.report)
    lock = ReportLock(paths.lock, paths.report, command=command)
    await sig.off_loop(lock.acquire, settings.wait_lock)
    with lock:
        rows = await sig.off_loop(read_input, settings)
        async with AsyncExitStack() as stack:
            credentials, client_settings = await connect(stack, settings, link)
            announce(command, settings, rows, client_settings.endpoint)
            listeners, close = progress_for(settings, rows.total)
            try:
                result: ReadJobResult
                if command == PLAN_COMMAND:
                    # The embedded emulator answers the 2018 contract page's codes.
                    chosen = variant or (Variant.V2018 if link.emulator else Variant.CURRENT)
                    result = await plan_job(
                        rows,
                        PlanSettings(
                            report_path=paths.report,
                            report_format=settings.report_format,
                            input_path=settings.input_path,
                            rate=settings.rate,
                            vpc_quota=settings.vpc_quota,
                            variant=chosen,
                            concurrency=settings.concurrency,
                            attempts=settings.attempts,
                        ),
                        client_settings,
                        credentials,
                        listeners=listeners,
                        control=sig.control,
                    )
                else:
                    result = await verify_job(
                        rows,
                        VerifySettings(
                            report_path=paths.report,
                            report_format=settings.report_format,
                            input_path=settings.input_path,
                            rate=settings.rate,
                            attempts=settings.attempts,
                        ),
                        client_settings,
                        credentials,
                        listeners=listeners,
                        control=sig.control,
                    )
            finally:
                close()
    if not settings.quiet:
        show_summary(
            settings,
            dict(result.summary),
            render_read_summary,
            result.report_path,
            result.summary_path,
        )
    return result.exit_code
