"""Option groups: declared once in ``bulk_attach/options.py``, taken whole by each command.

A command lists the groups it needs with ``@takes``; it gets exactly their options and
receives one built object per group. The option tables of ``run``, ``retry`` and
``emulator`` are pinned here: names, defaults and help panels are the user's interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.core import TyperOption
from typer.testing import CliRunner

from bulk_attach.api.credentials import CredentialOptions
from bulk_attach.cli import app
from bulk_attach.errors import UsageError
from bulk_attach.options import (
    CONNECTION,
    CREDENTIALS,
    OUTPUT,
    PACE,
    Connection,
    OptionGroup,
    Output,
    Pace,
    takes,
)
from bulk_attach.settings import ReportFormat, SignatureVersion


def subcommand(typer_app: typer.Typer, name: str) -> Any:
    """The click-level command typer builds for ``name`` (what ``--help`` renders)."""
    return typer.main.get_command(typer_app).commands[name]  # type: ignore[attr-defined]


def toy_app(seen: dict[str, Any]) -> typer.Typer:
    """A new command as the next ones (plan, verify) will be written."""
    toy = typer.Typer()

    @toy.command()
    @takes(CREDENTIALS, OUTPUT, CONNECTION, PACE)  # any order: help follows options.py
    def plan(
        input_csv: Annotated[Path, typer.Argument(metavar="PAIRS.csv")],
        *,
        output: Output,
        connection: Connection,
        credentials: CredentialOptions,
        pace: Pace,
    ) -> None:
        seen.update(
            input_csv=input_csv,
            output=output,
            connection=connection,
            credentials=credentials,
            pace=pace,
        )

    @toy.callback()
    def _root() -> None:  # keeps "plan" a subcommand
        pass

    return toy


def test_a_command_receives_one_built_object_per_group() -> None:
    seen: dict[str, Any] = {}
    result = CliRunner().invoke(
        toy_app(seen),
        ["plan", "p.csv", "--endpoint", "http://127.0.0.1:9", "--signature", "v1", "--profile",
         "ops", "--format", "jsonl", "-q", "-vv", "--rate", "0", "--concurrency", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen["input_csv"] == Path("p.csv")
    assert seen["output"] == Output(report_format=ReportFormat.JSONL, quiet=True, verbose=2)
    connection = seen["connection"]
    assert (connection.client.endpoint, connection.client.signature) == (
        "http://127.0.0.1:9",
        SignatureVersion.V1,
    )
    assert (connection.region, connection.emulator, connection.world) == (None, False, None)
    assert seen["credentials"] == CredentialOptions(profile="ops")
    assert seen["pace"] == Pace(concurrency=3, rate=None)  # 0 = no limit


def test_a_command_gets_only_the_options_of_its_groups() -> None:
    result = CliRunner().invoke(toy_app({}), ["plan", "p.csv", "--vpc-quota", "5"])
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_a_groups_usage_check_runs_before_the_command() -> None:
    seen: dict[str, Any] = {}
    result = CliRunner().invoke(toy_app(seen), ["plan", "p.csv", "--world", "w.json"])
    assert isinstance(result.exception, UsageError)
    assert "--world is only meaningful with --emulator" in str(result.exception)
    assert seen == {}


def test_help_lays_out_groups_in_one_order_whatever_order_a_command_lists_them() -> None:
    names = [p.name for p in subcommand(toy_app({}), "plan").params]
    assert names.index("report") < names.index("endpoint") < names.index("rate")
    assert names.index("rate") < names.index("access_key_id")


def test_a_command_without_a_parameter_for_a_group_is_refused_at_import() -> None:
    with pytest.raises(TypeError, match=r"\['pace'\]"):

        @takes(OUTPUT, PACE)
        def broken(*, output: Output) -> None:
            pass


def test_an_option_declared_twice_is_refused_at_import() -> None:
    def _other(*, rate: Annotated[float, typer.Option("--rate")] = 1.0) -> float:
        return rate

    with pytest.raises(TypeError, match=r"declared twice: \['rate'\]"):

        @takes(PACE, OptionGroup("other", _other))
        def broken(*, pace: Pace, other: float) -> None:
            pass


def test_a_group_option_must_be_keyword_only_with_a_default() -> None:
    def _positional(rate: float = 1.0) -> float:
        return rate

    with pytest.raises(TypeError, match="keyword-only"):
        OptionGroup("positional", _positional).parameters  # noqa: B018


# --- the option tables users rely on -----------------------------------------------------

OUT, INPUT, CONN, RUN, CRED = "Output", "Input", "Connection", "Run", "Credentials"
EMU, FAULTS = "Emulator", "Flow control and faults"

JOB_OPTIONS = {
    "--report": (OUT, None),
    "--format": (OUT, "csv"),
    "--quiet": (OUT, False),
    "--verbose": (OUT, 0),
    "--log-format": (OUT, "text"),
    "--progress-interval": (OUT, 10.0),
    "--region": (CONN, None),
    "--endpoint": (CONN, None),
    "--ecs-endpoint": (CONN, None),
    "--vpc-endpoint": (CONN, None),
    "--endpoint-type": (CONN, "public"),
    "--ca-bundle": (CONN, None),
    "--insecure-http": (CONN, False),
    "--connect-timeout": (CONN, 5.0),
    "--read-timeout": (CONN, 14.0),
    "--signature": (CONN, "v3"),
    "--emulator": (CONN, False),
    "--world": (CONN, None),
    "--emulator-state": (CONN, None),
    "--concurrency": (RUN, 16),
    "--rate": (RUN, 20.0),
    "--vpc-quota": (RUN, 1000),
    "--max-attempts": (RUN, 6),
    "--throttle-timeout": (RUN, 300.0),
    "--max-failure-rate": (RUN, None),
    "--min-settled": (RUN, 100),
    "--drain-timeout": (RUN, 30.0),
    "--fresh": (RUN, False),
    "--wait-lock": (RUN, 0.0),
    "--access-key-id": (CRED, None),
    "--access-key-secret": (CRED, None),
    "--security-token": (CRED, None),
    "--profile": (CRED, None),
    "--config-path": (CRED, None),  # --config-file is its alias
    "--mode": (CRED, None),
    "--ram-role-arn": (CRED, None),
    "--role-session-name": (CRED, None),
    "--external-id": (CRED, None),
    "--sts-region": (CRED, None),
}

EMULATOR_OPTIONS = {
    "--port": (EMU, 8080),
    "--host": (EMU, "127.0.0.1"),
    "--access-key-id": (EMU, None),
    "--access-key-secret": (EMU, None),
    "--world": (EMU, None),
    "--state": (EMU, None),
    "--world-from": (EMU, None),
    "--region": (EMU, None),
    "--variant": (EMU, "2018"),
    "--vpc-quota": (EMU, None),
    "--qps": (FAULTS, None),
    "--retry-after-ms": (FAULTS, None),
    "--limiter": (FAULTS, None),
    "--window-seconds": (FAULTS, None),
    "--limit": (FAULTS, None),
    "--latency-ms": (FAULTS, 0.0),
    "--jitter-ms": (FAULTS, 0.0),
    "--error-rate": (FAULTS, 0.0),
    "--unavailable-rate": (FAULTS, 0.0),
    "--drop-rate": (FAULTS, 0.0),
    "--hang-rate": (FAULTS, 0.0),
    "--hang-seconds": (FAULTS, 30.0),
    "--commit-then-error-rate": (FAULTS, 0.0),
    "--commit-then-drop-rate": (FAULTS, 0.0),
    "--seed": (FAULTS, 0),
    "--verbose": (OUT, 0),
}


def with_input(options: dict[str, tuple[str, object]]) -> dict[str, tuple[str, object]]:
    """The options of a command that reads a pairs CSV: the Input panel after Output."""
    items = list(options.items())
    at = max(i for i, (_, (panel, _)) in enumerate(items) if panel == OUT) + 1
    added = [("--delimiter", (INPUT, None)), ("--encoding", (INPUT, None))]
    return dict(items[:at] + added + items[at:])


def option_table(name: str) -> dict[str, tuple[str, object]]:
    table: dict[str, tuple[str, object]] = {}
    for param in subcommand(app, name).params:
        if isinstance(param, TyperOption):
            panel = getattr(param, "rich_help_panel", None) or ""
            table[param.opts[0]] = (panel.split(" (")[0], param.default)
    return table


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("run", with_input(JOB_OPTIONS)),
        (
            "retry",
            {"--all-failed": (RUN, False), "--only": (RUN, None), **JOB_OPTIONS},
        ),
        ("emulator", EMULATOR_OPTIONS),
    ],
)
def test_every_option_keeps_its_name_default_and_panel(
    name: str, expected: dict[str, tuple[str, object]]
) -> None:
    table = option_table(name)
    assert table == expected
    assert by_panel(table) == by_panel(expected)  # the order --help shows them in


def by_panel(table: dict[str, tuple[str, object]]) -> list[tuple[str, list[str]]]:
    """Panels in order of first appearance, each with its options in order (as rich shows)."""
    panels = dict.fromkeys(panel for panel, _ in table.values())
    return [(p, [option for option, (panel, _) in table.items() if panel == p]) for p in panels]
