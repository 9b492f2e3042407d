"""Where the access key comes from, decided once and explained without the secret.

Resolution order, first complete source wins:

1. explicit options (``--access-key-id`` / ``--access-key-secret`` / ``--security-token``);
2. the environment: ``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` /
   ``ALIBABA_CLOUD_SECURITY_TOKEN``, else the legacy ``ALICLOUD_ACCESS_KEY`` /
   ``ALICLOUD_SECRET_KEY`` (/ ``ALICLOUD_SECURITY_TOKEN``);
3. the aliyun CLI's ``~/.aliyun/config.json``: the profile named by ``--profile``, else
   ``ALIBABA_CLOUD_PROFILE``, else the file's ``current`` profile. Modes ``AK`` and
   ``StsToken`` carry keys; any other mode needs a token exchange we do not do, so it is
   refused with its name.

A half-given source (an id without a secret) is an error rather than a fall-through: silently
using another account's keys is worse than stopping. When nothing is found, the one error
lists every source tried. ``Credentials.source`` says where the keys came from so verbose
output can show it; no repr, str or message here ever contains a secret or a token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulk_attach.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "CredentialOptions",
    "Credentials",
    "mask_access_key_id",
    "resolve_credentials",
    "resolve_region",
]

# Shown in messages; the real default is computed from HOME (see ``_config_path``).
DEFAULT_CONFIG_PATH = "~/.aliyun/config.json"

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 - a variable name
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105 - a variable name
ENV_PROFILE = "ALIBABA_CLOUD_PROFILE"
ENV_REGION = "ALIBABA_CLOUD_REGION_ID"
LEGACY_ACCESS_KEY = "ALICLOUD_ACCESS_KEY"
LEGACY_SECRET_KEY = "ALICLOUD_SECRET_KEY"  # noqa: S105 - a variable name
LEGACY_SECURITY_TOKEN = "ALICLOUD_SECURITY_TOKEN"  # noqa: S105 - a variable name
LEGACY_REGION = "ALICLOUD_REGION"

_KEY_MODES = ("AK", "StsToken")


def mask_access_key_id(access_key_id: str) -> str:
    """First four characters and ``****``; short ids are hidden entirely."""
    if len(access_key_id) <= 8:
        return "****"
    return access_key_id[:4] + "****"


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """An access key pair (and STS token), plus where it came from."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None
    # Human text such as "environment (ALIBABA_CLOUD_ACCESS_KEY_ID)"; never a secret.
    source: str = "explicit"

    def __repr__(self) -> str:
        token = ", security_token=****" if self.security_token else ""
        return (
            f"Credentials(access_key_id={mask_access_key_id(self.access_key_id)!r}, "
            f"access_key_secret=****{token}, source={self.source!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True, repr=False)
class CredentialOptions:
    """What the command line said; every field may be absent."""

    access_key_id: str | None = None
    access_key_secret: str | None = None
    security_token: str | None = None
    profile: str | None = None
    config_path: Path | None = None  # None: ~/.aliyun/config.json

    def __repr__(self) -> str:
        key = mask_access_key_id(self.access_key_id) if self.access_key_id else None
        secret = "****" if self.access_key_secret else None
        token = "****" if self.security_token else None
        return (
            f"CredentialOptions(access_key_id={key!r}, access_key_secret={secret!r}, "
            f"security_token={token!r}, profile={self.profile!r}, "
            f"config_path={self.config_path!r})"
        )

    __str__ = __repr__


def _get(env: Mapping[str, str], name: str) -> str | None:
    """An environment value; empty counts as unset (``export X=`` is a common reset)."""
    value = env.get(name)
    return value or None


def _config_path(options: CredentialOptions, env: Mapping[str, str]) -> Path:
    if options.config_path is not None:
        return options.config_path
    home = _get(env, "HOME")
    base = Path(home) if home else Path.home()
    return base / ".aliyun" / "config.json"


# --- sources ----------------------------------------------------------------------------


def _from_options(options: CredentialOptions) -> Credentials | None:
    given = [options.access_key_id, options.access_key_secret, options.security_token]
    if not any(given):
        return None
    if not options.access_key_id or not options.access_key_secret:
        missing = "--access-key-id" if not options.access_key_id else "--access-key-secret"
        raise ConfigError(f"credentials on the command line are incomplete: {missing} is missing")
    return Credentials(
        access_key_id=options.access_key_id,
        access_key_secret=options.access_key_secret,
        security_token=options.security_token or None,
        source="command-line options (--access-key-id)",
    )


def _env_pair(
    env: Mapping[str, str], id_name: str, secret_name: str, token_name: str
) -> Credentials | None:
    key_id, secret = _get(env, id_name), _get(env, secret_name)
    if key_id is None and secret is None:
        return None
    if key_id is None or secret is None:
        missing = id_name if key_id is None else secret_name
        present = secret_name if key_id is None else id_name
        raise ConfigError(
            f"environment credentials are incomplete: {present} is set but {missing} is not"
        )
    return Credentials(
        access_key_id=key_id,
        access_key_secret=secret,
        security_token=_get(env, token_name),
        source=f"environment ({id_name})",
    )


def _from_env(env: Mapping[str, str]) -> Credentials | None:
    found = _env_pair(env, ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN)
    if found is not None:
        return found
    return _env_pair(env, LEGACY_ACCESS_KEY, LEGACY_SECRET_KEY, LEGACY_SECURITY_TOKEN)


@dataclass(frozen=True, slots=True)
class _Profile:
    name: str
    data: Mapping[str, Any]
    path: Path
    # Why it was chosen: "--profile", ENV_PROFILE or "current".
    chosen_by: str


def _read_config(path: Path) -> Mapping[str, Any] | None:
    """The parsed config file, None when it does not exist; malformed files are errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {type(exc).__name__}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # The position only: the text itself may hold a secret.
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object with a 'profiles' list")
    return data


def _find_profile(
    options: CredentialOptions, env: Mapping[str, str]
) -> tuple[_Profile | None, str]:
    """The chosen profile (or None) and a note for the "nothing found" message."""
    path = _config_path(options, env)
    if options.profile:
        wanted, chosen_by = options.profile, "--profile"
    elif _get(env, ENV_PROFILE):
        wanted, chosen_by = env[ENV_PROFILE], ENV_PROFILE
    else:
        wanted, chosen_by = "", "current"
    data = _read_config(path)
    if data is None:
        if chosen_by != "current":
            raise ConfigError(
                f"profile {wanted!r} (from {chosen_by}) requested, but {path} does not exist"
            )
        return None, f"{path} (not found)"
    if chosen_by == "current":
        current = data.get("current")
        wanted = current if isinstance(current, str) and current else "default"
    profiles = data.get("profiles")
    if not isinstance(profiles, list):
        profiles = []
    for item in profiles:
        if isinstance(item, dict) and item.get("name") == wanted:
            return _Profile(wanted, item, path, chosen_by), ""
    if chosen_by != "current":
        names = ", ".join(sorted(str(p.get("name")) for p in profiles if isinstance(p, dict)))
        raise ConfigError(
            f"profile {wanted!r} (from {chosen_by}) is not in {path}"
            + (f"; profiles there: {names}" if names else "")
        )
    return None, f"{path} (no profile {wanted!r})"


def _from_profile(profile: _Profile) -> Credentials:
    data = profile.data
    mode = data.get("mode") or "AK"
    label = f"profile {profile.name!r} in {profile.path}"
    if mode not in _KEY_MODES:
        raise ConfigError(
            f"{label} uses mode {mode!r}, which bulk-attach cannot use (it needs a token "
            f"exchange); supported modes: {', '.join(_KEY_MODES)}. Export "
            f"{ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} (and {ENV_SECURITY_TOKEN}) instead."
        )
    needed = ["access_key_id", "access_key_secret"] + (["sts_token"] if mode == "StsToken" else [])
    missing = [name for name in needed if not isinstance(data.get(name), str) or not data[name]]
    if missing:
        raise ConfigError(f"{label} (mode {mode}) has no {', '.join(missing)}")
    return Credentials(
        access_key_id=data["access_key_id"],
        access_key_secret=data["access_key_secret"],
        security_token=data["sts_token"] if mode == "StsToken" else None,
        source=f"{label} (mode {mode}, chosen by {profile.chosen_by})",
    )


def resolve_credentials(options: CredentialOptions, env: Mapping[str, str]) -> Credentials:
    """The first complete source in order; ``ConfigError`` listing every source tried."""
    found = _from_options(options)
    if found is not None:
        return found
    found = _from_env(env)
    if found is not None:
        return found
    profile, note = _find_profile(options, env)
    if profile is not None:
        return _from_profile(profile)
    tried = [
        "command-line options (--access-key-id, --access-key-secret)",
        f"environment ({ENV_ACCESS_KEY_ID}, {ENV_ACCESS_KEY_SECRET})",
        f"environment ({LEGACY_ACCESS_KEY}, {LEGACY_SECRET_KEY})",
        f"aliyun CLI config {note}",
    ]
    raise ConfigError(
        "no Alibaba Cloud credentials found; tried: " + "; ".join(tried) + ". Set "
        f"{ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}, or configure a profile with "
        "`aliyun configure`."
    )


def resolve_region(
    option: str | None, env: Mapping[str, str], options: CredentialOptions
) -> str | None:
    """``--region``, then ``ALIBABA_CLOUD_REGION_ID`` / ``ALICLOUD_REGION``, then the profile's."""
    if option:
        return option
    for name in (ENV_REGION, LEGACY_REGION):
        value = _get(env, name)
        if value:
            return value
    profile, _ = _find_profile(options, env)
    if profile is None:
        return None
    region = profile.data.get("region_id")
    return region if isinstance(region, str) and region else None
