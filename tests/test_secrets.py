"""No secret and no STS token ever leaves the process: not in output, logs, reports or reprs.

The emulator is configured with distinctive secrets and a token; succeeding and failing
commands run against it with debug logging (as child processes, and in-process with every
logger at DEBUG), and then everything they printed and every file they wrote is scanned
for the secrets, their first and last characters, and the token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from conftest import CliResult, RunCli, WritePairs

from bulk_attach.api.client import EcsClient
from bulk_attach.api.credentials import CredentialOptions, Credentials, resolve_credentials
from bulk_attach.core.outcomes import Status
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import EmulatorSettings, RunningEmulator, running_emulator
from bulk_attach.errors import ConfigError, ExitCode
from bulk_attach.files.report import read_report
from bulk_attach.job import run_job
from bulk_attach.settings import (
    AttemptSettings,
    ClientSettings,
    ReportFormat,
    RunSettings,
    SignatureVersion,
)

HZ = "cn-hangzhou"
AK = "LTAI5tPlainKeyForScan01"
SECRET = "Qz7SecretPlainKeyMustNeverShow9"
STS_AK = "STS.NStsKeyForTheScan0001"
STS_SECRET = "Wx4StsSecretMustNeverShowEither"
TOKEN = "CAISTokenValueMustNeverAppearAnywhere+/=0123456789abcdef"
WRONG_SECRET = "Jk2WrongSecretAlsoMustNotShow88"
WRONG_TOKEN = "CAISWrongTokenMustNotShowEither0123456789"
NEEDLES = (SECRET, STS_SECRET, TOKEN, WRONG_SECRET, WRONG_TOKEN)


def fragments() -> list[str]:
    """Each needle, plus its first and last 12 characters (a partial leak is a leak)."""
    found: list[str] = []
    for needle in NEEDLES:
        found += [needle, needle[:12], needle[-12:]]
    return found


def assert_no_secret(where: str, text: str) -> None:
    for fragment in fragments():
        assert fragment not in text, f"{fragment[:4]}... found in {where}"


def assert_no_secret_in_files(root: Path, *, skip: Iterable[Path] = ()) -> int:
    """Scan every file under root (except the inputs that hold secrets on purpose)."""
    skipped = {path.resolve() for path in skip}
    scanned = 0
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.resolve() not in skipped:
            assert_no_secret(str(path), path.read_bytes().decode("utf-8", "replace"))
            scanned += 1
    return scanned


def world(rows: Iterable[tuple[str, str, str]]) -> EcsModel:
    model = EcsModel()
    model.add_vpc(Vpc("vpc-closed", HZ, classic_link_enabled=False))
    for region, instance, vpc in rows:
        model.add_instance(Instance(instance, region))
        if vpc not in model.vpcs:
            model.add_vpc(Vpc(vpc, region))
    return model


ROWS = [(HZ, f"i-s{n:04d}", "vpc-a") for n in range(6)] + [(HZ, "i-sclosed", "vpc-closed")]
EMULATOR = EmulatorSettings(
    access_keys={AK: SECRET, STS_AK: STS_SECRET}, security_tokens={STS_AK: TOKEN}
)


def write_profile(home: Path, profile: Mapping[str, object], current: str) -> Path:
    path = home / ".aliyun" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"current": current, "profiles": [profile]}), encoding="utf-8")
    return path


# --- child processes ----------------------------------------------------------------------

CASES = {
    # name: (extra arguments, environment, profile or None, expected exit code)
    "env-ak": (
        [],
        {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET},
        None,
        ExitCode.SOME_ROWS_FAILED,
    ),
    "env-sts-v1": (
        ["--signature", "v1"],
        {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": STS_AK,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": STS_SECRET,
            "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN,
        },
        None,
        ExitCode.SOME_ROWS_FAILED,
    ),
    "legacy-env": (
        [],
        {"ALICLOUD_ACCESS_KEY": AK, "ALICLOUD_SECRET_KEY": SECRET},
        None,
        ExitCode.SOME_ROWS_FAILED,
    ),
    "options-sts": (
        ["--access-key-id", STS_AK, "--access-key-secret", STS_SECRET, "--security-token", TOKEN],
        {},
        None,
        ExitCode.SOME_ROWS_FAILED,
    ),
    "profile-sts": (
        [],
        {},
        {
            "name": "scan",
            "mode": "StsToken",
            "access_key_id": STS_AK,
            "access_key_secret": STS_SECRET,
            "sts_token": TOKEN,
            "region_id": HZ,
        },
        ExitCode.SOME_ROWS_FAILED,
    ),
    "profile-ak-v1": (
        ["--signature", "v1"],
        {},
        {"name": "scan", "mode": "AK", "access_key_id": AK, "access_key_secret": SECRET},
        ExitCode.SOME_ROWS_FAILED,
    ),
    "wrong-secret": (
        [],
        {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": WRONG_SECRET},
        None,
        ExitCode.CONFIG,
    ),
    "wrong-secret-v1": (
        ["--signature", "v1"],
        {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": WRONG_SECRET},
        None,
        ExitCode.CONFIG,
    ),
    "wrong-token": (
        [],
        {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": STS_AK,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": STS_SECRET,
            "ALIBABA_CLOUD_SECURITY_TOKEN": WRONG_TOKEN,
        },
        None,
        ExitCode.CONFIG,
    ),
    "half-env": (
        [],
        {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET},
        None,
        ExitCode.CONFIG,
    ),
    "half-options": (
        ["--access-key-secret", SECRET, "--security-token", TOKEN],
        {},
        None,
        ExitCode.CONFIG,
    ),
    "profile-other-mode": (
        [],
        {},
        {
            "name": "scan",
            "mode": "RamRoleArn",
            "access_key_id": AK,
            "access_key_secret": SECRET,
            "ram_role_arn": "acs:ram::1:role/x",
        },
        ExitCode.CONFIG,
    ),
    "profile-without-key-id": (
        [],
        {},
        {"name": "scan", "mode": "StsToken", "access_key_secret": SECRET, "sts_token": TOKEN},
        ExitCode.CONFIG,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_no_secret_in_anything_a_command_prints_or_writes(
    run_cli: RunCli, write_pairs: WritePairs, cli_env: dict[str, str], tmp_path: Path, case: str
) -> None:
    args, env, profile, expected = CASES[case]
    home = Path(cli_env["HOME"])
    inputs = []
    if profile is not None:
        inputs.append(write_profile(home, profile, current="scan"))
    path = write_pairs(ROWS)
    report = tmp_path / "report.csv"
    async with running_emulator(world(ROWS), EMULATOR) as emu:
        result = await run_cli(
            "run",
            path,
            "--endpoint",
            emu.endpoint,
            "--rate",
            "0",
            "--report",
            report,
            "-vv",
            *args,
            env_extra=env,
        )
        calls = dict(emu.emulator.calls)
    assert result.returncode == expected, result
    if expected == ExitCode.SOME_ROWS_FAILED:  # it ran: the good rows attached
        assert calls["AttachClassicLinkVpc"]["OK"] == 6
        assert "DEBUG" in result.stderr  # -vv did log at debug level
    assert_no_secret("stdout", result.stdout)
    assert_no_secret("stderr", result.stderr)
    scanned = assert_no_secret_in_files(tmp_path, skip=inputs)
    if expected != ExitCode.CONFIG or case.startswith("wrong-"):
        assert report.exists()
        assert scanned >= 3  # the input, the report and its summary at least


async def test_a_malformed_config_file_does_not_echo_its_content(
    run_cli: RunCli, write_pairs: WritePairs, cli_env: dict[str, str], tmp_path: Path
) -> None:
    config = Path(cli_env["HOME"]) / ".aliyun" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(
        '{"current": "x", "profiles": [{"name": "x", "access_key_secret": "' + SECRET + '" ,,]}',
        encoding="utf-8",
    )
    path = write_pairs(ROWS)
    result: CliResult = await run_cli("run", path, "--endpoint", "http://127.0.0.1:9", "-vv")
    assert result.returncode == ExitCode.CONFIG, result
    assert "config.json" in result.stderr
    assert_no_secret("stderr", result.stderr + result.stdout)


# --- in process: every logger at DEBUG ------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        (STS_AK, STS_SECRET, TOKEN, SignatureVersion.V3),
        (STS_AK, STS_SECRET, TOKEN, SignatureVersion.V1),
        (AK, WRONG_SECRET, None, SignatureVersion.V3),
        (STS_AK, STS_SECRET, WRONG_TOKEN, SignatureVersion.V1),
    ],
    ids=["sts-v3", "sts-v1", "wrong-secret", "wrong-token"],
)
async def test_no_secret_in_debug_logs_in_process(
    tmp_path: Path,
    write_pairs: WritePairs,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    case: tuple[str, str, str | None, SignatureVersion],
) -> None:
    key, secret, token, signature = case
    caplog.set_level(logging.DEBUG)  # the root logger: ours, aiohttp's and asyncio's
    path = write_pairs(ROWS)
    credentials = Credentials(key, secret, token, source="test")
    settings = RunSettings(
        input_path=path,
        report_path=tmp_path / "report.jsonl",
        report_format=ReportFormat.JSONL,
        rate=None,
        attempts=AttemptSettings(base_delay=0.001, max_delay=0.01),
    )
    async with running_emulator(world(ROWS), EMULATOR) as emu:
        client = ClientSettings(endpoint=emu.endpoint, signature=signature)
        result = await run_job(settings, client, credentials)
    statuses = {row.status for row in read_report(result.report_path)}
    if secret == WRONG_SECRET or token == WRONG_TOKEN:
        assert result.exit_code == ExitCode.CONFIG
        assert Status.ATTACHED not in statuses
    else:
        assert Status.ATTACHED in statuses
    assert caplog.records, "nothing was logged: the scan would prove nothing"
    for record in caplog.records:
        assert_no_secret(f"log record {record.name}", record.getMessage())
        assert_no_secret(f"log record args {record.name}", repr(record.args))
        if record.exc_info:
            assert_no_secret("a logged exception", repr(record.exc_info[1]))
    captured = capsys.readouterr()
    assert_no_secret("stdout", captured.out)
    assert_no_secret("stderr", captured.err)
    assert_no_secret("the summary", json.dumps(result.summary))
    assert_no_secret_in_files(tmp_path)


# --- reprs and messages ---------------------------------------------------------------------


def test_credentials_repr_and_str_hide_the_secret_and_token() -> None:
    credentials = Credentials(STS_AK, STS_SECRET, TOKEN, source="test")
    for text in (repr(credentials), str(credentials), f"{credentials}", f"{credentials!r}"):
        assert_no_secret("Credentials", text)
        assert STS_AK not in text  # the key id is masked too
    assert "test" in repr(credentials)  # the source is shown: that is what it is for
    options = CredentialOptions(access_key_id=AK, access_key_secret=SECRET, security_token=TOKEN)
    assert_no_secret("CredentialOptions", repr(options) + str(options))


async def test_client_and_emulator_reprs_hide_the_secret() -> None:
    credentials = Credentials(STS_AK, STS_SECRET, TOKEN, source="test")
    async with EcsClient(ClientSettings(endpoint="http://127.0.0.1:9"), credentials) as client:
        assert_no_secret("EcsClient", repr(client) + str(client))
        assert "test" in repr(client)
    async with running_emulator(EcsModel(), EMULATOR) as emu:
        shown: RunningEmulator = emu
        assert_no_secret("RunningEmulator", repr(shown) + str(shown))


def test_configuration_errors_never_quote_a_secret(tmp_path: Path) -> None:
    cases = [
        CredentialOptions(access_key_secret=SECRET, security_token=TOKEN),
        CredentialOptions(access_key_id=AK, security_token=TOKEN),
    ]
    for options in cases:
        with pytest.raises(ConfigError) as raised:
            resolve_credentials(options, {"HOME": str(tmp_path)})
        assert_no_secret("ConfigError", str(raised.value) + repr(raised.value))
    env = {"HOME": str(tmp_path), "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}
    with pytest.raises(ConfigError) as raised:
        resolve_credentials(CredentialOptions(), env)
    assert_no_secret("ConfigError", str(raised.value))


def test_the_scan_finds_a_planted_fragment(tmp_path: Path) -> None:
    """The scanner itself must be able to fail, or every test above proves nothing."""
    (tmp_path / "log.txt").write_text(f"token=...{TOKEN[-12:]}", encoding="utf-8")
    with pytest.raises(AssertionError):
        assert_no_secret_in_files(tmp_path)
    with pytest.raises(AssertionError):
        assert_no_secret("text", f"secret {SECRET[:12]}****")


# --- temporary credentials: the issued secrets and tokens never show either ------------------


@pytest.mark.parametrize("command", ["run", "whoami"])
async def test_no_issued_sts_secret_in_a_role_run_or_whoami(
    run_cli: RunCli, write_pairs: WritePairs, cli_env: dict[str, str], tmp_path: Path, command: str
) -> None:
    role = "acs:ram::1234567890123456:role/scan"
    profile = write_profile(
        Path(cli_env["HOME"]),
        {
            "name": "scan",
            "mode": "RamRoleArn",
            "access_key_id": AK,
            "access_key_secret": SECRET,
            "ram_role_arn": role,
            "region_id": HZ,
        },
        current="scan",
    )
    path = write_pairs(ROWS)
    async with running_emulator(world(ROWS), EMULATOR) as emu:
        env = {"BULK_ATTACH_STS_ENDPOINT": emu.endpoint}
        args: list[str | Path] = (
            ["run", path, "--rate", "0", "--report", tmp_path / "r.csv"]
            if command == "run"
            else ["whoami"]
        )
        result = await run_cli(*args, "--endpoint", emu.endpoint, "-vv", env_extra=env)
        keyring = emu.emulator.authenticator.keyring
        issued = [
            value
            for key, value in [*keyring.secrets.items(), *keyring.tokens.items()]
            if key.startswith("STS.") and key != STS_AK
        ]
    assert issued, "no temporary credentials were issued: the scan would prove nothing"
    expected = ExitCode.SOME_ROWS_FAILED if command == "run" else ExitCode.OK
    assert result.returncode == expected, result
    assert "AssumedRoleUser" in result.stderr + result.stdout  # -v/whoami named the identity
    for text in (result.stdout, result.stderr):
        assert_no_secret("output", text)
        for secret in issued:
            assert secret not in text
            assert secret[:12] not in text
    assert_none_in_files(tmp_path, issued, skip=profile)


def assert_none_in_files(root: Path, needles: list[str], *, skip: Path) -> None:
    for file in sorted(root.rglob("*")):
        if file.is_file() and file != skip:
            content = file.read_bytes().decode("utf-8", "replace")
            assert all(needle not in content for needle in needles), file
