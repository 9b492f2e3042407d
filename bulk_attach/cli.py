"""The command line: options in, frozen settings out, one call into ``job``, an exit code back.

This is, with ``options.py`` (the shared options, in groups) and ``emulator/cli.py`` (the
emulator's own command), the only code that reads options and the environment. Every error
the package raises on purpose arrives here as a ``BulkAttachError`` and leaves as one clear
line on stderr and its exit code; a traceback is only shown for a bug, with ``--debug``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bulk_attach import __version__, logs
from bulk_attach.api.credentials import CredentialOptions
from bulk_attach.core.prediction import Variant
from bulk_attach.core.retrying import RetrySelection
from bulk_attach.core.rollback import DetachSelection
from bulk_attach.emulator.cli import emulator
from bulk_attach.errors import BulkAttachError, ExitCode
from bulk_attach.files.paths import run_report_for
from bulk_attach.options import (
    CONNECTION,
    CREDENTIALS,
    INPUT,
    OUTPUT,
    PACE,
    POLICY,
    QUOTA,
    RUN_PANEL,
    Connection,
    InputOptions,
    JobPolicy,
    Output,
    Pace,
    setup_logging,
    takes,
)
from bulk_attach.settings import DEFAULT_VPC_QUOTA, RunSettings

app = typer.Typer(
    name="bulk-attach",
    help=(
        "Link classic-network ECS instances to VPCs in bulk (AttachClassicLinkVpc), "
        "rate-limited, quota-aware, safe to re-run."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


if TYPE_CHECKING:  # imported when a command runs: --help stays fast
    from bulk_attach.commands import Link

_POLICY = JobPolicy()
_INPUT = InputOptions()


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        typer.echo(f"bulk-attach {__version__}")
        raise typer.Exit(0)


@app.command()
@takes(OUTPUT, INPUT, CONNECTION, PACE, QUOTA, POLICY, CREDENTIALS)
def run(
    input_csv: Annotated[
        Path, typer.Argument(metavar="PAIRS.csv", help="CSV of RegionId,InstanceId,VpcId rows.")
    ],
    *,
    output: Output,
    reading: InputOptions,
    connection: Connection,
    pace: Pace,
    quota: int,
    policy: JobPolicy,
    credentials: CredentialOptions,
) -> None:
    """Attach every (instance, VPC) pair of a CSV, writing one report row per input row.

    Running the same command again resumes: settled rows are kept, the rest run. A report
    is accepted as input too.
    """
    report = output.report
    if report is None:
        report = run_report_for(input_csv, output.report_format)
    settings = _run_settings(input_csv, report, output, connection, pace, quota, policy, reading)
    _start_job(settings, output, connection, credentials)


@app.command()
@takes(OUTPUT, CONNECTION, PACE, QUOTA, POLICY, CREDENTIALS)
def retry(
    source_report: Annotated[
        Path, typer.Argument(metavar="REPORT", help="A report written by bulk-attach.")
    ],
    all_failed: Annotated[
        bool,
        typer.Option(
            "--all-failed", help="Every row that did not succeed.", rich_help_panel=RUN_PANEL
        ),
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="CODE",
            help="Only rows with this error code (repeatable).",
            rich_help_panel=RUN_PANEL,
        ),
    ] = None,
    *,
    output: Output,
    connection: Connection,
    pace: Pace,
    quota: int,
    policy: JobPolicy,
    credentials: CredentialOptions,
) -> None:
    """Run again the rows of a report that did not succeed; writes a retry report and a merged view.

    By default the rows whose failure may pass (throttled, ambiguous, locked instance, bad
    instance state, skipped, quota), as of each row's latest outcome across every earlier
    retry. Every row is read back against the live link state first: one fixed by hand is
    reported already_linked and not sent. An interrupted retry resumes when run again.
    """
    selection = RetrySelection(all_failed=all_failed, only=frozenset(only or ()))
    # None: retry names its own report after the report it retries (``files/rerun.py``).
    settings = _run_settings(source_report, output.report, output, connection, pace, quota, policy)
    _start_job(settings, output, connection, credentials, selection)


@app.command()
@takes(OUTPUT, INPUT, CONNECTION, PACE, QUOTA, CREDENTIALS)
def plan(
    input_csv: Annotated[
        Path,
        typer.Argument(metavar="PAIRS.csv", help="CSV of RegionId,InstanceId,VpcId rows."),
    ],
    variant: Annotated[
        Variant | None,
        typer.Option(
            "--variant",
            help="Which generation of error codes to predict: 2018 (the contract page) or "
            "current \\[default: current; 2018 with --emulator].",
            rich_help_panel=RUN_PANEL,
        ),
    ] = None,
    *,
    output: Output,
    reading: InputOptions,
    connection: Connection,
    pace: Pace,
    quota: int,
    credentials: CredentialOptions,
) -> None:
    """Predict what run would do with every row, with nothing changed (Describe calls only).

    Writes a plan report (the predicted status and error code per row) and a summary;
    exit 0 when every row would attach or is already linked, 1 otherwise.
    """
    from bulk_attach.checks import PLAN_COMMAND, check_main

    settings = _run_settings(
        input_csv, output.report, output, connection, pace, quota, input_options=reading
    )
    _start(
        output,
        lambda link: check_main(PLAN_COMMAND, settings, link, variant=variant),
        connection,
        credentials,
    )


@app.command()
@takes(OUTPUT, INPUT, CONNECTION, PACE, CREDENTIALS)
def verify(
    input_csv: Annotated[
        Path,
        typer.Argument(metavar="PAIRS.csv|REPORT", help="A pairs CSV, a report or merged view."),
    ],
    *,
    output: Output,
    reading: InputOptions,
    connection: Connection,
    pace: Pace,
    credentials: CredentialOptions,
) -> None:
    """Read the live link state of every row: linked, not_linked or linked_elsewhere.

    Whoever made the links. Exit 0 only when every row is linked to its VPC, 1 otherwise:
    the check a scheduled job runs after run.
    """
    from bulk_attach.checks import VERIFY_COMMAND, check_main

    settings = _run_settings(
        input_csv, output.report, output, connection, pace, input_options=reading
    )
    _start(
        output,
        lambda link: check_main(VERIFY_COMMAND, settings, link),
        connection,
        credentials,
    )


@app.command()
@takes(OUTPUT, INPUT, CONNECTION, PACE, POLICY, CREDENTIALS)
def detach(
    source: Annotated[
        Path,
        typer.Argument(metavar="REPORT|PAIRS.csv", help="A report of run, or a pairs CSV."),
    ],
    all_linked: Annotated[
        bool,
        typer.Option(
            "--all-linked",
            help="From a report: also the rows found already linked, not only those this "
            "tool attached.",
            rich_help_panel=RUN_PANEL,
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", help="Do not ask for confirmation (scripts).", rich_help_panel=RUN_PANEL
        ),
    ] = False,
    *,
    output: Output,
    reading: InputOptions,
    connection: Connection,
    pace: Pace,
    policy: JobPolicy,
    credentials: CredentialOptions,
) -> None:
    """Roll back: unlink (DetachClassicLinkVpc) the rows a run attached, safely.

    From a report, the rows this tool attached (--all-linked: also those found linked);
    from a pairs CSV, every row. Each VPC's links are read first: a row not linked is
    not_linked and not sent. Asks before sending on a terminal; --yes for scripts; with no
    terminal and no --yes it refuses (exit 2). Resumes like run.
    """
    from bulk_attach.rollback import detach_main

    settings = _run_settings(
        source, output.report, output, connection, pace, policy=policy, input_options=reading
    )
    ask = _confirm if sys.stdin.isatty() and sys.stderr.isatty() else None
    _start(
        output,
        lambda link: detach_main(
            settings, link, selection=DetachSelection(all_linked=all_linked), yes=yes, ask=ask
        ),
        connection,
        credentials,
    )


def _confirm(question: str) -> bool:
    return typer.confirm(question, default=False, err=True)


@app.command()
@takes(OUTPUT, CONNECTION, CREDENTIALS)
def whoami(
    *,
    output: Output,
    connection: Connection,
    credentials: CredentialOptions,
) -> None:
    """Print where the credentials come from, who they are (STS GetCallerIdentity) and
    whether the region's ECS and VPC endpoints answer them.

    Exit 0 when all three work, 3 otherwise: the check a scheduled job runs first.
    """
    from bulk_attach.whoami import whoami_main

    _start(
        output,
        lambda link: whoami_main(link, quiet=output.quiet),
        connection,
        credentials,
    )


# The emulator's command line lives beside the emulator; listed after the job commands.
app.command()(emulator)


def _run_settings(
    input_path: Path,
    report: Path | None,
    output: Output,
    connection: Connection,
    pace: Pace,
    quota: int = DEFAULT_VPC_QUOTA,
    policy: JobPolicy = _POLICY,
    input_options: InputOptions = _INPUT,
) -> RunSettings:
    return RunSettings(
        input_path=input_path,
        report_path=report,
        report_format=output.report_format,
        default_region=connection.region,  # the job completes it from env and profile
        concurrency=pace.concurrency,
        rate=pace.rate,
        vpc_quota=quota,
        attempts=policy.attempts,
        max_failure_rate=policy.max_failure_rate,
        min_settled=policy.min_settled,
        drain_timeout=policy.drain_timeout,
        quiet=output.quiet,
        fresh=policy.fresh,
        wait_lock=policy.wait_lock,
        log_format=output.log_format,
        progress_interval=output.progress_interval,
        delimiter=input_options.delimiter,
        encoding=input_options.encoding,
    )


def _start(
    output: Output,
    command: Callable[[Link], Coroutine[Any, Any, int]],
    connection: Connection,
    credentials: CredentialOptions,
) -> None:
    """One call into a command's composition, and its exit code. Here, and only here, the
    environment is read: it travels down in the ``Link``."""
    from bulk_attach.commands import Link
    from bulk_attach.engine.signals import run_command

    setup_logging(output.verbose, output.log_format)
    link = Link(
        client=connection.client,
        options=credentials,
        env=dict(os.environ),
        emulator=connection.emulator,
        world=connection.world,
        emulator_state=connection.emulator_state,
        region_option=connection.region,
    )
    raise typer.Exit(run_command(command(link)))


def _start_job(
    settings: RunSettings,
    output: Output,
    connection: Connection,
    credentials: CredentialOptions,
    selection: RetrySelection | None = None,
) -> None:
    """run and retry: one call into the job."""
    from bulk_attach import runs

    _start(
        output,
        lambda link: runs.main(settings, link, retry=selection),
        connection,
        credentials,
    )


def main() -> None:
    """Console-script entry point: every expected error becomes one line and an exit code.

    Typer handles usage errors (exit 2) and ``--help`` itself; what reaches us is ours.
    """
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        app()
    except BulkAttachError as error:
        if logs.is_json():  # --log-format json: the error is one more object on stderr
            logs.record("error", str(error), level=logging.ERROR, exit_code=error.exit_code)
        else:
            sys.stderr.write(f"bulk-attach: error: {error}\n")
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("bulk-attach: interrupted\n")
        sys.exit(ExitCode.SIGINT)
    except Exception as error:  # a bug: say so plainly, traceback only when asked for
        if debug:
            raise
        sys.stderr.write(
            f"bulk-attach: internal error: {type(error).__name__}: {error}\n"
            "Run again with --debug for a traceback, and please report it.\n"
        )
        sys.exit(ExitCode.INTERNAL)
