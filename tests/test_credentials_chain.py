"""The credentials chain end to end against the emulator's STS, metadata service and URI:
each mode runs a job that attaches every row; refresh mid-run; bad configuration is one
clear ConfigError (exit 3); no secret in any message. The real STS and 100.100.100.200 are
never reached: the endpoints are pointed at the emulator through BULK_ATTACH_STS_ENDPOINT
and BULK_ATTACH_ECS_METADATA_ENDPOINT."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from conftest import WritePairs

from bulk_attach.api import credentials as creds_module
from bulk_attach.api.credentials import (
    CredentialOptions,
    Credentials,
    RefreshingCredentials,
    open_credentials,
)
from bulk_attach.core.outcomes import Status
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import EmulatorSettings, RunningEmulator, running_emulator
from bulk_attach.emulator.sts import StsSettings
from bulk_attach.errors import ConfigError, ExitCode
from bulk_attach.files.report import read_report
from bulk_attach.job import run_job
from bulk_attach.settings import AttemptSettings, ClientSettings, ReportFormat, RunSettings

HZ = "cn-hangzhou"
AK = "LTAI5tChainKeyForTests01"
SECRET = "Pq8ChainSecretMustNeverShow77"
ROLE = "acs:ram::1234567890123456:role/migrator"
OIDC_TOKEN = "eyJOidcTokenMustNeverShowInAnyMessage0123"
NEEDLES = (SECRET, OIDC_TOKEN)


def world(n: int) -> tuple[EcsModel, list[tuple[str, str, str]]]:
    model = EcsModel()
    model.add_vpc(Vpc("vpc-a", HZ))
    rows = [(HZ, f"i-c{k:05d}", "vpc-a") for k in range(n)]
    for _, instance, _ in rows:
        model.add_instance(Instance(instance, HZ))
    return model, rows


def base_env(emu: RunningEmulator, home: Path, **extra: str) -> dict[str, str]:
    return {
        "HOME": str(home),
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
        "BULK_ATTACH_STS_ENDPOINT": emu.endpoint,
        "BULK_ATTACH_ECS_METADATA_ENDPOINT": emu.endpoint,
        "BULK_ATTACH_ECS_METADATA_TIMEOUT": "0.5",
        **extra,
    }


def write_profile(home: Path, *profiles: dict[str, Any]) -> Path:
    path = home / ".aliyun" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"current": profiles[0]["name"], "profiles": list(profiles)}), encoding="utf-8"
    )
    return path


def assert_clean(text: str) -> None:
    for needle in NEEDLES:
        for fragment in (needle, needle[:12], needle[-12:]):
            assert fragment not in text


async def attach_all(
    emu: RunningEmulator,
    rows: Iterable[tuple[str, str, str]],
    provider: Any,
    tmp: Path,
    pairs: WritePairs,
) -> int:
    path = pairs(list(rows))
    settings = RunSettings(
        input_path=path,
        report_path=tmp / "report.jsonl",
        report_format=ReportFormat.JSONL,
        rate=None,
        attempts=AttemptSettings(base_delay=0.001, max_delay=0.01),
    )
    result = await run_job(settings, ClientSettings(endpoint=emu.endpoint), provider)
    statuses = [row.status for row in read_report(result.report_path)]
    assert statuses
    assert all(s == Status.ATTACHED for s in statuses), statuses
    return result.exit_code


def mode_setup(
    mode: str, home: Path, emu: RunningEmulator
) -> tuple[CredentialOptions, dict[str, str]]:
    opts = CredentialOptions()
    env = base_env(emu, home)
    token_file = home / "oidc-token"
    token_file.write_text(OIDC_TOKEN, encoding="utf-8")
    keys = {"access_key_id": AK, "access_key_secret": SECRET}
    if mode == "AK":
        write_profile(home, {"name": "p", "mode": "AK", **keys})
    elif mode == "StsToken":
        # A token of our own, minted by the emulator's STS first.
        env_sts = {**env}
        return opts, env_sts
    elif mode == "RamRoleArn":
        write_profile(home, {"name": "p", "mode": "RamRoleArn", "ram_role_arn": ROLE, **keys})
    elif mode == "ChainableRamRoleArn":
        write_profile(
            home,
            {
                "name": "p",
                "mode": "ChainableRamRoleArn",
                "source_profile": "base",
                "ram_role_arn": ROLE,
            },
            {"name": "base", "mode": "AK", **keys},
        )
    elif mode == "EcsRamRole":
        write_profile(home, {"name": "p", "mode": "EcsRamRole"})
    elif mode == "OIDC-profile":
        write_profile(
            home,
            {
                "name": "p",
                "mode": "OIDC",
                "ram_role_arn": ROLE,
                "oidc_provider_arn": "acs:ram::1234567890123456:oidc-provider/ack",
                "oidc_token_file": str(token_file),
            },
        )
    elif mode == "OIDC-env":
        env.update(
            ALIBABA_CLOUD_ROLE_ARN=ROLE,
            ALIBABA_CLOUD_OIDC_PROVIDER_ARN="acs:ram::1234567890123456:oidc-provider/ack",
            ALIBABA_CLOUD_OIDC_TOKEN_FILE=str(token_file),
        )
    elif mode == "CredentialsURI-env":
        env["ALIBABA_CLOUD_CREDENTIALS_URI"] = emu.endpoint + "/credentials-uri"
    elif mode == "metadata-chain":
        del env["ALIBABA_CLOUD_ECS_METADATA_DISABLED"]
    elif mode == "ini":
        ini = home / ".alibabacloud" / "credentials.ini"
        ini.parent.mkdir(parents=True)
        ini.write_text(
            f"[default]\ntype = ram_role_arn\naccess_key_id = {AK}\n"
            f"access_key_secret = {SECRET}\nrole_arn = {ROLE}\n",
            encoding="utf-8",
        )
    elif mode == "cli-ram-role-arn":
        env.update(ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
        opts = CredentialOptions(ram_role_arn=ROLE, role_session_name="cron-job", external_id="x-1")
    return opts, env


MODES = [
    "AK",
    "StsToken",
    "RamRoleArn",
    "ChainableRamRoleArn",
    "EcsRamRole",
    "OIDC-profile",
    "OIDC-env",
    "CredentialsURI-env",
    "metadata-chain",
    "ini",
    "cli-ram-role-arn",
]


@pytest.mark.parametrize("mode", MODES)
async def test_each_mode_runs_a_job_against_the_emulator(
    mode: str, tmp_path: Path, write_pairs: WritePairs
) -> None:
    model, rows = world(5)
    home = tmp_path / "home"
    home.mkdir()
    settings = EmulatorSettings(
        access_keys={AK: SECRET}, sts=StsSettings(oidc_tokens=frozenset({OIDC_TOKEN}))
    )
    async with running_emulator(model, settings) as emu:
        opts, env = mode_setup(mode, home, emu)
        if mode == "StsToken":
            role = await open_credentials(
                CredentialOptions(ram_role_arn=ROLE),
                {
                    **env,
                    "ALIBABA_CLOUD_ACCESS_KEY_ID": AK,
                    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
                },
            )
            sts = await role.current()
            await role.aclose()
            assert sts.security_token
            write_profile(
                home,
                {
                    "name": "p",
                    "mode": "StsToken",
                    "access_key_id": sts.access_key_id,
                    "access_key_secret": sts.access_key_secret,
                    "sts_token": sts.security_token,
                },
            )
        provider = await open_credentials(opts, env)
        try:
            assert await attach_all(emu, rows, provider, tmp_path, write_pairs) == ExitCode.OK
            assert_clean(provider.source + repr(provider))
            if mode not in ("AK", "StsToken"):
                assert sum(emu.sts.issued.values()) >= 1  # temporary credentials were issued
        finally:
            await provider.aclose()


async def test_a_long_run_refreshes_a_short_lived_token_without_stopping(
    tmp_path: Path, write_pairs: WritePairs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 300-row run across several lifetimes of a 30-second token, on a fake clock that
    advances 0.1 s each time it is read: every row attached, refreshes as the clock says."""
    ticks = itertools.count()
    start = creds_module.time.time()

    def clock() -> float:
        return start + next(ticks) * 0.1

    monkeypatch.setattr(creds_module, "CLOCK", clock)
    model, rows = world(300)
    settings = EmulatorSettings(access_keys={AK: SECRET}, sts=StsSettings(lifetime=30), clock=clock)
    async with running_emulator(model, settings) as emu:
        env = base_env(
            emu, tmp_path, ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET
        )
        provider = await open_credentials(CredentialOptions(ram_role_arn=ROLE), env)
        assert isinstance(provider, RefreshingCredentials)
        try:
            assert await attach_all(emu, rows, provider, tmp_path, write_pairs) == ExitCode.OK
        finally:
            await provider.aclose()
        elapsed = clock() - start
        lifetimes = elapsed / 30
        assert lifetimes >= 3, "the run did not outlive three tokens: the test proves nothing"
        assert provider.refreshes >= 3
        assert emu.sts.issued["AssumeRole"] == provider.fetches
        assert emu.emulator.calls["AttachClassicLinkVpc"]["OK"] == 300


async def test_an_expired_token_answer_refreshes_once_and_resends(
    tmp_path: Path, write_pairs: WritePairs
) -> None:
    model, rows = world(3)
    async with running_emulator(model, EmulatorSettings(access_keys={AK: SECRET})) as emu:
        env = base_env(
            emu, tmp_path, ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET
        )
        provider = await open_credentials(CredentialOptions(ram_role_arn=ROLE), env)
        first = await provider.current()
        # The service expires the token while the client still believes in it.
        emu.emulator.authenticator.keyring.expires[first.access_key_id] = 0.0  # type: ignore[index]
        try:
            assert await attach_all(emu, rows, provider, tmp_path, write_pairs) == ExitCode.OK
        finally:
            await provider.aclose()
        assert provider.refreshes == 1
        assert (
            sum(
                emu.emulator.calls[a].get("InvalidSecurityToken.Expired", 0)
                for a in emu.emulator.calls
            )
            >= 1
        )


async def test_a_fixed_expired_token_is_fatal(tmp_path: Path, write_pairs: WritePairs) -> None:
    """Fixed credentials cannot be refreshed: the expired answer stops the run (exit 3)."""
    model, rows = world(3)
    async with running_emulator(model, EmulatorSettings(access_keys={AK: SECRET})) as emu:
        env = base_env(
            emu, tmp_path, ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET
        )
        role = await open_credentials(CredentialOptions(ram_role_arn=ROLE), env)
        sts = await role.current()
        await role.aclose()
        emu.emulator.authenticator.keyring.expires[sts.access_key_id] = 0.0  # type: ignore[index]
        fixed = Credentials(sts.access_key_id, sts.access_key_secret, sts.security_token, "test")
        settings = RunSettings(
            input_path=write_pairs(rows), report_path=tmp_path / "r.csv", rate=None
        )
        result = await run_job(settings, ClientSettings(endpoint=emu.endpoint), fixed)
        assert result.exit_code == ExitCode.CONFIG


# --- bad configuration: one clear message, exit 3, no secret ---------------------------------


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("unsupported-mode", "CloudSSO"),
        ("missing-field", "ram_role_arn"),
        ("unreadable-file", "cannot read"),
        ("role-refused", "EntityNotExist.Role"),
        ("metadata-timeout", "ALIBABA_CLOUD_ECS_METADATA_DISABLED=true"),
        ("metadata-garbage", "not credentials JSON"),
        ("uri-garbage", "not credentials JSON"),
        ("oidc-refused", "InvalidParameter.OIDCToken"),
        ("bad-cli-mode", "--mode"),
    ],
)
async def test_bad_configuration_is_one_clear_config_error(
    case: str, expect: str, tmp_path: Path
) -> None:
    sts = StsSettings(roles=frozenset({ROLE}), oidc_tokens=frozenset({"another-token"}))
    async with running_emulator(
        EcsModel(), EmulatorSettings(access_keys={AK: SECRET}, sts=sts)
    ) as emu:
        env = base_env(emu, tmp_path)
        opts = CredentialOptions()
        keys = {"access_key_id": AK, "access_key_secret": SECRET}
        if case == "unsupported-mode":
            write_profile(tmp_path, {"name": "p", "mode": "CloudSSO", **keys})
        elif case == "missing-field":
            write_profile(tmp_path, {"name": "p", "mode": "RamRoleArn", **keys})
        elif case == "unreadable-file":
            path = write_profile(tmp_path, {"name": "p", "mode": "AK", **keys})
            path.unlink()
            path.mkdir()  # a directory where the file should be
        elif case == "role-refused":
            write_profile(
                tmp_path,
                {
                    "name": "p",
                    "mode": "RamRoleArn",
                    "ram_role_arn": ROLE.replace("migrator", "x"),
                    **keys,
                },
            )
        elif case in ("metadata-timeout", "metadata-garbage"):
            del env["ALIBABA_CLOUD_ECS_METADATA_DISABLED"]
            emu.sts.answer = "hang" if case == "metadata-timeout" else "garbage"
        elif case == "uri-garbage":
            env["ALIBABA_CLOUD_CREDENTIALS_URI"] = emu.endpoint + "/credentials-uri"
            emu.sts.answer = "garbage"
        elif case == "oidc-refused":
            token = tmp_path / "t"
            token.write_text(OIDC_TOKEN, encoding="utf-8")
            env.update(
                ALIBABA_CLOUD_ROLE_ARN=ROLE,
                ALIBABA_CLOUD_OIDC_PROVIDER_ARN="acs:ram::1:oidc-provider/x",
                ALIBABA_CLOUD_OIDC_TOKEN_FILE=str(token),
            )
        elif case == "bad-cli-mode":
            opts = CredentialOptions(mode="OIDC")
        with pytest.raises(ConfigError) as raised:
            await open_credentials(opts, env)
        message = str(raised.value)
        assert expect in message, message
        assert raised.value.exit_code == ExitCode.CONFIG
        assert "\n" not in message
        assert_clean(message + repr(raised.value))
