"""Credential resolution: every source, the order, profile modes, the errors, and masking."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bulk_attach.api.credentials import (
    CredentialOptions,
    Credentials,
    mask_access_key_id,
    resolve_credentials,
    resolve_region,
)
from bulk_attach.errors import ConfigError, ExitCode

SECRET = "S3cr3t-Value-For-Tests-Only-x9"
TOKEN = "STS-Token-Value-For-Tests-Only-q7"
AK = "LTAI5tTestAccessKeyId"


def write_config(path: Path, profiles: list[dict[str, Any]], current: str = "default") -> Path:
    path.write_text(json.dumps({"current": current, "profiles": profiles}), encoding="utf-8")
    return path


def profile(name: str, mode: str = "AK", **extra: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "mode": mode,
        "access_key_id": f"{AK}-{name}",
        "access_key_secret": f"{SECRET}-{name}",
        "region_id": f"region-of-{name}",
    }
    data.update(extra)
    return data


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "config.json",
        [
            profile("default"),
            profile("other"),
            profile("sts", mode="StsToken", sts_token=TOKEN),
            profile("role", mode="RamRoleArn"),
            profile("noregion", region_id=""),
        ],
    )


def opts(config: Path | None = None, **kwargs: Any) -> CredentialOptions:
    return CredentialOptions(config_path=config, **kwargs)


# --- each source ---------------------------------------------------------------------------


def test_explicit_options(config: Path) -> None:
    creds = resolve_credentials(
        opts(config, access_key_id=AK, access_key_secret=SECRET, security_token=TOKEN), {}
    )
    assert (creds.access_key_id, creds.access_key_secret, creds.security_token) == (
        AK,
        SECRET,
        TOKEN,
    )
    assert "command-line" in creds.source


def test_environment(config: Path) -> None:
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": AK,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
        "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN,
    }
    creds = resolve_credentials(opts(config), env)
    assert (creds.access_key_id, creds.access_key_secret, creds.security_token) == (
        AK,
        SECRET,
        TOKEN,
    )
    assert creds.source == "environment (ALIBABA_CLOUD_ACCESS_KEY_ID)"


def test_legacy_environment(config: Path) -> None:
    env = {"ALICLOUD_ACCESS_KEY": AK, "ALICLOUD_SECRET_KEY": SECRET}
    creds = resolve_credentials(opts(config), env)
    assert (creds.access_key_id, creds.access_key_secret, creds.security_token) == (
        AK,
        SECRET,
        None,
    )
    assert creds.source == "environment (ALICLOUD_ACCESS_KEY)"


def test_current_profile(config: Path) -> None:
    creds = resolve_credentials(opts(config), {})
    assert creds.access_key_id == f"{AK}-default"
    assert creds.access_key_secret == f"{SECRET}-default"
    assert creds.security_token is None
    assert "profile 'default'" in creds.source
    assert "mode AK" in creds.source


def test_current_names_the_profile(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.json", [profile("default"), profile("work")], current="work")
    assert resolve_credentials(opts(path), {}).access_key_id == f"{AK}-work"


def test_sts_profile(config: Path) -> None:
    creds = resolve_credentials(opts(config, profile="sts"), {})
    assert creds.security_token == TOKEN
    assert "mode StsToken" in creds.source


def test_default_config_path_is_under_home(tmp_path: Path) -> None:
    (tmp_path / ".aliyun").mkdir()
    write_config(tmp_path / ".aliyun" / "config.json", [profile("default")])
    creds = resolve_credentials(CredentialOptions(), {"HOME": str(tmp_path)})
    assert creds.access_key_id == f"{AK}-default"
    assert str(tmp_path / ".aliyun" / "config.json") in creds.source


# --- precedence ----------------------------------------------------------------------------

FULL_ENV = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "env-id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-s"}
LEGACY_ENV = {"ALICLOUD_ACCESS_KEY": "legacy-id", "ALICLOUD_SECRET_KEY": "legacy-s"}


def test_options_beat_environment_and_profile(config: Path) -> None:
    creds = resolve_credentials(
        opts(config, access_key_id="opt-id", access_key_secret="opt-s", profile="other"),
        {**FULL_ENV, **LEGACY_ENV},
    )
    assert creds.access_key_id == "opt-id"


def test_environment_beats_profile(config: Path) -> None:
    creds = resolve_credentials(opts(config, profile="other"), {**FULL_ENV, **LEGACY_ENV})
    assert creds.access_key_id == "env-id"


def test_new_environment_names_beat_legacy(config: Path) -> None:
    assert resolve_credentials(opts(config), {**LEGACY_ENV, **FULL_ENV}).access_key_id == "env-id"
    assert resolve_credentials(opts(config), LEGACY_ENV).access_key_id == "legacy-id"


def test_empty_environment_values_count_as_unset(config: Path) -> None:
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ""}
    assert resolve_credentials(opts(config), env).access_key_id == f"{AK}-default"


def test_profile_option_beats_profile_env_beats_current(config: Path) -> None:
    env = {"ALIBABA_CLOUD_PROFILE": "other"}
    assert resolve_credentials(opts(config), env).access_key_id == f"{AK}-other"
    chosen = resolve_credentials(opts(config, profile="sts"), env)
    assert chosen.access_key_id == f"{AK}-sts"
    assert "--profile" in chosen.source
    assert "ALIBABA_CLOUD_PROFILE" in resolve_credentials(opts(config), env).source


# --- errors --------------------------------------------------------------------------------


def test_role_profile_without_its_role_names_the_missing_field(config: Path) -> None:
    with pytest.raises(ConfigError, match="RamRoleArn") as info:
        resolve_credentials(opts(config, profile="role"), {})
    assert info.value.exit_code == ExitCode.CONFIG
    assert "ram_role_arn" in str(info.value)


def test_unsupported_profile_mode_is_refused_by_name(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.json", [profile("default", mode="CloudSSO")])
    with pytest.raises(ConfigError, match="CloudSSO") as info:
        resolve_credentials(opts(path), {})
    assert "AK, StsToken, RamRoleArn" in str(info.value)


def test_missing_named_profile(config: Path) -> None:
    with pytest.raises(ConfigError, match="'nope'") as info:
        resolve_credentials(opts(config, profile="nope"), {})
    assert "default" in str(info.value)  # the profiles that do exist are listed


def test_missing_profile_from_env(config: Path) -> None:
    with pytest.raises(ConfigError, match="ALIBABA_CLOUD_PROFILE"):
        resolve_credentials(opts(config), {"ALIBABA_CLOUD_PROFILE": "nope"})


def test_named_profile_without_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_credentials(opts(tmp_path / "absent.json", profile="work"), {})


def test_sts_profile_without_token(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.json", [profile("default", mode="StsToken")])
    with pytest.raises(ConfigError, match="sts_token"):
        resolve_credentials(opts(path), {})


def test_profile_without_secret(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.json", [profile("default", access_key_secret="")])
    with pytest.raises(ConfigError, match="access_key_secret"):
        resolve_credentials(opts(path), {})


def test_nothing_found_lists_every_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_credentials(
            opts(tmp_path / "absent.json"),
            {"HOME": str(tmp_path), "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"},
        )
    message = str(info.value)
    for tried in (
        "--access-key-id",
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALICLOUD_ACCESS_KEY",
        str(tmp_path / "absent.json"),
        "not found",
        "OIDC",
        "credentials.ini",
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED=true",
        "ALIBABA_CLOUD_CREDENTIALS_URI",
    ):
        assert tried in message
    assert info.value.exit_code == ExitCode.CONFIG


def test_current_profile_missing_is_nothing_found(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.json", [profile("a")], current="gone")
    with pytest.raises(ConfigError, match="no profile 'gone'"):
        resolve_credentials(
            opts(path), {"HOME": str(tmp_path), "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}
        )


@pytest.mark.parametrize(
    ("options", "env", "missing"),
    [
        (CredentialOptions(access_key_id=AK), {}, "--access-key-secret"),
        (CredentialOptions(access_key_secret=SECRET), {}, "--access-key-id"),
        (
            CredentialOptions(),
            {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK},
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        ),
        (
            CredentialOptions(),
            {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET},
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
        ),
        (CredentialOptions(), {"ALICLOUD_ACCESS_KEY": AK}, "ALICLOUD_SECRET_KEY"),
    ],
)
def test_half_given_source_is_an_error(
    options: CredentialOptions, env: dict[str, str], missing: str
) -> None:
    with pytest.raises(ConfigError, match=missing) as info:
        resolve_credentials(options, env)
    assert SECRET not in str(info.value)


def test_malformed_config_names_position_not_content(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"profiles": [{"access_key_secret": "' + SECRET + '"', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        resolve_credentials(opts(path), {})
    assert str(path) in str(info.value)
    assert SECRET not in str(info.value)


def test_config_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match="JSON object"):
        resolve_credentials(opts(path), {})


# --- region --------------------------------------------------------------------------------


def test_region_order(config: Path) -> None:
    env = {"ALIBABA_CLOUD_REGION_ID": "env-region", "ALICLOUD_REGION": "legacy-region"}
    assert resolve_region("opt-region", env, opts(config)) == "opt-region"
    assert resolve_region(None, env, opts(config)) == "env-region"
    assert resolve_region(None, {"ALICLOUD_REGION": "legacy-region"}, opts(config)) == (
        "legacy-region"
    )
    assert resolve_region(None, {}, opts(config)) == "region-of-default"
    assert resolve_region(None, {}, opts(config, profile="other")) == "region-of-other"
    assert resolve_region(None, {"ALIBABA_CLOUD_PROFILE": "sts"}, opts(config)) == "region-of-sts"


def test_region_absent(config: Path, tmp_path: Path) -> None:
    assert resolve_region(None, {}, opts(config, profile="noregion")) is None
    assert resolve_region(None, {}, opts(tmp_path / "absent.json")) is None


# --- masking -------------------------------------------------------------------------------


def test_mask_access_key_id() -> None:
    assert mask_access_key_id(AK) == "LTAI****"
    assert mask_access_key_id("short") == "****"


def test_credentials_repr_and_str_hide_secrets() -> None:
    creds = Credentials(AK, SECRET, TOKEN, source="environment (X)")
    for text in (repr(creds), str(creds), f"{creds}", f"{creds!r}", repr([creds])):
        assert SECRET not in text
        assert TOKEN not in text
        assert AK not in text
        assert "LTAI****" in text
        assert "environment (X)" in text


def test_options_repr_hides_secrets() -> None:
    options = CredentialOptions(AK, SECRET, TOKEN, profile="p")
    for text in (repr(options), str(options)):
        assert SECRET not in text
        assert TOKEN not in text
        assert AK not in text
        assert "'p'" in text


def test_sources_never_contain_secrets(config: Path) -> None:
    found = [
        resolve_credentials(opts(config, access_key_id=AK, access_key_secret=SECRET), {}),
        resolve_credentials(
            opts(config),
            {
                "ALIBABA_CLOUD_ACCESS_KEY_ID": AK,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
                "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN,
            },
        ),
        resolve_credentials(opts(config, profile="sts"), {}),
    ]
    for creds in found:
        assert creds.access_key_secret.startswith(SECRET)
        assert SECRET not in creds.source
        assert TOKEN not in creds.source
        assert SECRET not in repr(creds)


def test_error_messages_never_contain_secrets(config: Path, tmp_path: Path) -> None:
    cases: list[tuple[CredentialOptions, dict[str, str]]] = [
        (opts(config, profile="role"), {}),
        (opts(config, profile="nope"), {}),
        (CredentialOptions(access_key_secret=SECRET, security_token=TOKEN), {}),
        (opts(config), {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}),
        (opts(tmp_path / "absent.json"), {}),
    ]
    for options, env in cases:
        with pytest.raises(ConfigError) as info:
            resolve_credentials(options, env)
        text = f"{info.value} {info.value!r}"
        assert SECRET not in text
        assert TOKEN not in text
