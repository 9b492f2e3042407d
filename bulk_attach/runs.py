"""The ``run`` and ``retry`` commands: lock, validate, run, print.

``main`` is what the CLI calls for both. ``retry`` works in rounds over a source report
(``files/rerun.py``): pick from the merged view, run into the retry report, fold when the
round finishes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bulk_attach.commands import Link, launch, print_result, say_to, start
from bulk_attach.core.outcomes import Summary
from bulk_attach.core.retrying import RetrySelection
from bulk_attach.engine.signals import SignalStop
from bulk_attach.errors import ExitCode, UsageError
from bulk_attach.files.lock import ReportLock
from bulk_attach.files.paths import ReportPaths
from bulk_attach.files.report import read_report
from bulk_attach.files.rerun import (
    RETRY_COMMAND,
    PickedRows,
    fold_round,
    pick_rows,
    plan_round,
    retry_family,
)
from bulk_attach.files.resume import (
    Previous,
)
from bulk_attach.job import exit_code_for, read_input, report_path_of
from bulk_attach.settings import RunSettings

__all__ = ["main"]


async def main(settings: RunSettings, link: Link, retry: RetrySelection | None = None) -> int:
    """Run (or, with ``retry``, re-run the chosen rows of a report) and print the summary.

    Signals are handled for the whole command: Ctrl-C while waiting for the lock or while
    the input is validated ends it at once (nothing was sent), and during the run it stops
    sending. The report's lock is taken first: a second run of the same job stops there
    (exit 75), before it reads, validates or sends anything.
    """

    async def body(settings: RunSettings, sig: SignalStop) -> int:
        if retry is not None:
            return await _retry(settings, link, retry, sig)
        return await _run(settings, link, sig)

    return await start(settings, link, body)


async def _run(settings: RunSettings, link: Link, sig: SignalStop) -> int:
    paths = ReportPaths(report_path_of(settings))
    settings = replace(settings, report_path=paths.report)
    lock = ReportLock(paths.lock, paths.report, command="run")
    await sig.off_loop(lock.acquire, settings.wait_lock)
    with lock:
        # Validate the whole input before anything touches the network (InputError: exit 2).
        rows = await sig.off_loop(read_input, settings)
        result = await launch(settings, link, rows, lock=lock, signals=sig)
    print_result(settings, result)
    return result.exit_code


async def _retry(
    settings: RunSettings, link: Link, selection: RetrySelection, sig: SignalStop
) -> int:
    """One round of retry (see ``files/rerun.py``), under the source report's lock."""
    family = retry_family(settings.input_path, settings.report_format, settings.report_path)
    source = family.source
    say = say_to(settings)
    lock = ReportLock(source.lock, source.report, command=RETRY_COMMAND)
    await sig.off_loop(lock.acquire, settings.wait_lock)
    with lock:
        rnd = plan_round(family, selection)
        rows = await sig.off_loop(pick_rows, rnd.base, selection)
        if family.redirected:
            say(f"retry: {family.given} belongs to {source.report}; retrying that report")
        if rnd.folded is not None:
            say(f"retry: the previous round's outcomes were folded into {rnd.folded}")
        _check_only(selection, rows, rnd.base)
        if rows.total == 0:
            return _nothing_to_retry(rows, rnd.base, say)
        what = "resuming the interrupted round" if rnd.resume else f"round {rnd.pin.round}"
        say(f"retry: {rows.total} rows of {rnd.base} selected ({selection.describe()}); {what}")
        settings = replace(settings, input_path=rnd.base, report_path=family.retry.report)
        result = await launch(
            settings,
            link,
            rows,
            lock=lock,
            signals=sig,
            command=RETRY_COMMAND,
            previous=Previous.RESUME if rnd.resume else Previous.REPLACE,
            round_pin=rnd.pin,
        )
        merged: Path | None = None
        code = result.exit_code
        if result.stop_reason is None:
            merged = fold_round(family, rnd.base, rnd.pin.source, rnd.pin.round)
            # The exit code speaks for the whole report: 0 once every row has succeeded.
            code = exit_code_for(Summary(read_report(merged)), None)
    print_result(settings, result, exit_code=code)
    if merged is not None:
        say(f"merged view (latest outcome and history per row): {merged}")
    else:
        say(
            "merged view not updated: the round was stopped; run the same command again "
            "to resume it"
        )
    return code


def _check_only(selection: RetrySelection, rows: PickedRows, base: Path) -> None:
    if not selection.only:
        return
    absent = sorted(selection.only - set(rows.codes))
    if not absent:
        return
    present = ", ".join(f"{code} ({n})" for code, n in rows.codes.most_common()) or "none"
    if len(absent) == len(selection.only):
        raise UsageError(
            f"--only {', '.join(absent)}: no row of {base} that did not succeed has "
            f"{'this code' if len(absent) == 1 else 'these codes'}; the codes there: {present}"
        )
    sys.stderr.write(
        f"bulk-attach: warning: --only {', '.join(absent)}: no row of {base} has "
        f"{'this code' if len(absent) == 1 else 'these codes'}\n"
    )


def _nothing_to_retry(rows: PickedRows, base: Path, say: Callable[[str], None]) -> int:
    if rows.not_succeeded == 0:
        say(f"retry: nothing to retry: every row of {base} has succeeded")
        return ExitCode.OK
    codes = ", ".join(f"{code} ({n})" for code, n in rows.codes.most_common())
    sys.stderr.write(
        f"bulk-attach: nothing to retry: {rows.not_succeeded} rows of {base} did not succeed, "
        f"and the selection takes none of them ({codes}). --all-failed sends them all, "
        "--only CODE the rows with that code.\n"
    )
    return ExitCode.SOME_ROWS_FAILED
