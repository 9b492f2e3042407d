"""Where the access key comes from, decided once, refreshed during a run, explained without
the secret.

The chain, first configured source wins (the official default chain of
``alibabacloud-credentials`` / credentials-go, with explicit options in front):

1. explicit options: ``--access-key-id`` / ``--access-key-secret`` / ``--security-token``
   (``--mode AK|StsToken|RamRoleArn|EcsRamRole`` says which they are);
2. the environment: ``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` /
   ``ALIBABA_CLOUD_SECURITY_TOKEN``, else the legacy ``ALICLOUD_ACCESS_KEY`` /
   ``ALICLOUD_SECRET_KEY`` (/ ``ALICLOUD_SECURITY_TOKEN``);
3. OIDC (Kubernetes RRSA) when ``ALIBABA_CLOUD_ROLE_ARN``, ``ALIBABA_CLOUD_OIDC_PROVIDER_ARN``
   and ``ALIBABA_CLOUD_OIDC_TOKEN_FILE`` are all set;
4. the aliyun CLI's ``~/.aliyun/config.json`` (``--config-path``): the profile named by
   ``--profile``, else ``ALIBABA_CLOUD_PROFILE``, else the file's ``current``; modes AK,
   StsToken, RamRoleArn, ChainableRamRoleArn, EcsRamRole, OIDC, CredentialsURI
   (``ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true`` skips it);
5. ``~/.alibabacloud/credentials.ini`` (or ``ALIBABA_CLOUD_CREDENTIALS_FILE``), section
   ``ALIBABA_CLOUD_PROFILE`` else ``default``; types access_key, ecs_ram_role,
   ram_role_arn, oidc_role_arn;
6. the ECS instance RAM role through the metadata service (IMDSv2), unless
   ``ALIBABA_CLOUD_ECS_METADATA_DISABLED=true``;
7. ``ALIBABA_CLOUD_CREDENTIALS_URI``.

``--ram-role-arn`` then assumes that role with whatever the chain found (cross-account).

Why not the official library at run time (see the README and the branch's note): it reads
the environment once at import, puts answer bodies (secret and token included) into its
exception messages and logs them through a stderr handler it installs itself, takes a
``threading.Lock`` inside its async refresh (blocking the event loop), and fixes the
metadata host (100.100.100.200) and https to STS with no seam. So the same facts are
implemented here, natively async, with seams for tests: ``BULK_ATTACH_STS_ENDPOINT``,
``BULK_ATTACH_ECS_METADATA_ENDPOINT`` and ``BULK_ATTACH_ECS_METADATA_TIMEOUT``.

Resolution (``resolve_credentials``) reads files only; the network is touched on the first
``current()``. A half-given source (an id without a secret) is an error rather than a
fall-through. When nothing works, one ``ConfigError`` lists every source tried. No repr,
str or message here ever contains a secret or a token.
"""

from __future__ import annotations

import asyncio
import configparser
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bulk_attach.errors import ConfigError

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

    from bulk_attach.api.network import Network

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "EXPIRED_TOKEN_CODES",
    "MODES",
    "CredentialOptions",
    "Credentials",
    "CredentialsProvider",
    "FetchError",
    "RefreshingCredentials",
    "mask_access_key_id",
    "open_credentials",
    "refresh_margin",
    "resolve_credentials",
    "resolve_region",
]

log = logging.getLogger("bulk_attach.credentials")

# Shown in messages; the real default is computed from HOME (see ``_config_path``).
DEFAULT_CONFIG_PATH = "~/.aliyun/config.json"

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 - a variable name
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105 - a variable name
ENV_PROFILE = "ALIBABA_CLOUD_PROFILE"
ENV_REGION = "ALIBABA_CLOUD_REGION_ID"
ENV_ROLE_ARN = "ALIBABA_CLOUD_ROLE_ARN"
ENV_OIDC_PROVIDER_ARN = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN"
ENV_OIDC_TOKEN_FILE = "ALIBABA_CLOUD_OIDC_TOKEN_FILE"  # noqa: S105 - a variable name
ENV_ROLE_SESSION_NAME = "ALIBABA_CLOUD_ROLE_SESSION_NAME"
ENV_CLI_PROFILE_DISABLED = "ALIBABA_CLOUD_CLI_PROFILE_DISABLED"
ENV_CREDENTIALS_FILE = "ALIBABA_CLOUD_CREDENTIALS_FILE"
ENV_ECS_METADATA = "ALIBABA_CLOUD_ECS_METADATA"
ENV_ECS_METADATA_DISABLED = "ALIBABA_CLOUD_ECS_METADATA_DISABLED"
ENV_CREDENTIALS_URI = "ALIBABA_CLOUD_CREDENTIALS_URI"
ENV_STS_REGION = "ALIBABA_CLOUD_STS_REGION"
ENV_VPC_ENDPOINT = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED"
# Ours: where STS and the metadata service are (tests point them at the emulator).
ENV_STS_ENDPOINT = "BULK_ATTACH_STS_ENDPOINT"
ENV_METADATA_ENDPOINT = "BULK_ATTACH_ECS_METADATA_ENDPOINT"
ENV_METADATA_TIMEOUT = "BULK_ATTACH_ECS_METADATA_TIMEOUT"
LEGACY_ACCESS_KEY = "ALICLOUD_ACCESS_KEY"
LEGACY_SECRET_KEY = "ALICLOUD_SECRET_KEY"  # noqa: S105 - a variable name
LEGACY_SECURITY_TOKEN = "ALICLOUD_SECURITY_TOKEN"  # noqa: S105 - a variable name
LEGACY_REGION = "ALICLOUD_REGION"

METADATA_HOST = "http://100.100.100.200"
DEFAULT_METADATA_TIMEOUT = 1.0
DEFAULT_DURATION = 3600
MIN_DURATION = 900
# The codes of a request refused because its STS token expired (it was not executed).
EXPIRED_TOKEN_CODES = frozenset(
    {"InvalidSecurityToken.Expired", "SecurityTokenExpired", "InvalidSecurityToken.Expire"}
)
MODES = (
    "AK",
    "StsToken",
    "RamRoleArn",
    "ChainableRamRoleArn",
    "EcsRamRole",
    "OIDC",
    "CredentialsURI",
)
CLI_MODES = ("AK", "StsToken", "RamRoleArn", "EcsRamRole")
_SESSION_NAME = re.compile(r"[A-Za-z0-9.@_-]{2,64}")
_ROLE_ARN = re.compile(r"acs:ram::\d+:role/[^\s/]+")


def _wall_clock() -> float:
    """The clock refresh decisions read; tests that fake the emulator's clock set ``CLOCK``."""
    return CLOCK()


CLOCK: Callable[[], float] = time.time


def mask_access_key_id(access_key_id: str) -> str:
    """First four characters and ``****``; short ids are hidden entirely."""
    if len(access_key_id) <= 8:
        return "****"
    return access_key_id[:4] + "****"


class FetchError(Exception):
    """A source that did not give credentials; the message is safe to print."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """An access key pair (and STS token), plus where it came from. Also a provider that
    always gives itself (fixed credentials: nothing to refresh)."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None
    # Human text such as "environment (ALIBABA_CLOUD_ACCESS_KEY_ID)"; never a secret.
    source: str = "explicit"
    # Epoch seconds when temporary credentials stop working; None: they do not expire.
    expiration: float | None = None

    def __repr__(self) -> str:
        token = ", security_token=****" if self.security_token else ""
        return (
            f"Credentials(access_key_id={mask_access_key_id(self.access_key_id)!r}, "
            f"access_key_secret=****{token}, source={self.source!r})"
        )

    __str__ = __repr__

    @property
    def refreshes(self) -> int:
        return 0

    async def current(self) -> Credentials:
        return self

    async def refreshed(self, stale: Credentials) -> Credentials | None:
        """Fixed credentials cannot be refreshed."""
        return None

    async def aclose(self) -> None:
        return None


@runtime_checkable
class CredentialsProvider(Protocol):
    """What the client signs with: the credentials current when a request leaves."""

    @property
    def source(self) -> str: ...

    @property
    def refreshes(self) -> int: ...

    async def current(self) -> Credentials: ...

    async def refreshed(self, stale: Credentials) -> Credentials | None:
        """Newer credentials than ``stale`` (fetched now if need be), None if there are none."""
        ...

    async def aclose(self) -> None: ...


def refresh_margin(lifetime: float) -> float:
    """How long before expiry to refresh: 5 minutes, or a third of a short lifetime.

    credentials-go refreshes with 180 s left, credentials-python with 15 minutes; 15 minutes
    would refetch a 900-second token on every call, 180 s leaves little room for a slow STS.
    """
    return max(0.0, min(300.0, lifetime / 3))


Fetch = Callable[["aiohttp.ClientSession"], Awaitable[Credentials]]


class RefreshingCredentials:
    """Temporary credentials from ``fetch``, refreshed in the background before they expire.

    ``current()`` answers at once while the credentials have more than the margin left;
    inside the margin it starts one background refresh and still answers with the current
    ones (no request waits); only expired (or absent) credentials make the caller wait for
    the fetch. ``refreshed(stale)`` is the answer to an expired-token error: one fetch
    shared by every request that saw it.
    """

    def __init__(
        self,
        fetch: Fetch,
        source: str,
        *,
        clock: Callable[[], float] = _wall_clock,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
    ) -> None:
        self._fetch = fetch
        self._source = source
        self._clock = clock
        self._timeouts = (connect_timeout, read_timeout)
        self._creds: Credentials | None = None
        self._fetched_at = 0.0
        self._task: asyncio.Task[Credentials] | None = None
        self._retry_after = 0.0
        self._session: aiohttp.ClientSession | None = None
        self.fetches = 0

    def __repr__(self) -> str:
        return f"<RefreshingCredentials from {self._source} fetched {self.fetches}x>"

    @property
    def source(self) -> str:
        return self._creds.source if self._creds is not None else self._source

    @property
    def refreshes(self) -> int:
        """Fetches after the first."""
        return max(0, self.fetches - 1)

    def _client_session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None:
            connect, read = self._timeouts
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(connect=connect, sock_read=read)
            )
        return self._session

    async def _run_fetch(self) -> Credentials:
        creds = await self._fetch(self._client_session())
        self.fetches += 1
        self._creds, self._fetched_at = creds, self._clock()
        if creds.expiration is not None:
            left = creds.expiration - self._fetched_at
            log.info("credentials from %s fetched; they expire in %.0f s", creds.source, left)
        return creds

    def _start(self) -> asyncio.Task[Credentials]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run_fetch())
        return self._task

    async def _wait(self) -> Credentials:
        task = self._start()
        try:
            return await asyncio.shield(task)
        finally:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a failure is raised to every waiter, not logged

    def _left(self, creds: Credentials) -> float:
        return float("inf") if creds.expiration is None else creds.expiration - self._clock()

    async def current(self) -> Credentials:
        creds = self._creds
        if creds is None or self._left(creds) <= 1.0:
            return await self._wait()
        if creds.expiration is not None:
            margin = refresh_margin(creds.expiration - self._fetched_at)
            now = self._clock()
            if self._left(creds) <= margin and now >= self._retry_after:
                task = self._start()
                task.add_done_callback(self._background_done)
        return creds

    def _background_done(self, task: asyncio.Task[Credentials]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._retry_after = self._clock() + 5.0
            log.warning("refreshing credentials from %s failed: %s", self._source, error)

    async def refreshed(self, stale: Credentials) -> Credentials | None:
        creds = self._creds
        if creds is not None and creds.security_token != stale.security_token:
            return creds  # another request already refreshed
        try:
            fresh = await self._wait()
        except FetchError as error:
            log.warning("refreshing credentials from %s failed: %s", self._source, error)
            return None
        return None if fresh.security_token == stale.security_token else fresh

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


@dataclass(frozen=True, slots=True, repr=False)
class CredentialOptions:
    """What the command line said; every field may be absent."""

    access_key_id: str | None = None
    access_key_secret: str | None = None
    security_token: str | None = None
    profile: str | None = None
    config_path: Path | None = None  # None: ~/.aliyun/config.json
    mode: str | None = None
    ram_role_arn: str | None = None
    role_session_name: str | None = None
    external_id: str | None = None
    sts_region: str | None = None
    # How STS is reached: the API calls' proxies and CA bundle (``Link`` sets it); None:
    # directly, with the system's CAs.
    network: Network | None = None

    def __repr__(self) -> str:
        key = mask_access_key_id(self.access_key_id) if self.access_key_id else None
        secret = "****" if self.access_key_secret else None
        token = "****" if self.security_token else None
        external = "****" if self.external_id else None
        return (
            f"CredentialOptions(access_key_id={key!r}, access_key_secret={secret!r}, "
            f"security_token={token!r}, profile={self.profile!r}, "
            f"config_path={self.config_path!r}, mode={self.mode!r}, "
            f"ram_role_arn={self.ram_role_arn!r}, role_session_name={self.role_session_name!r}, "
            f"external_id={external!r}, sts_region={self.sts_region!r})"
        )

    __str__ = __repr__


def _get(env: Mapping[str, str], name: str) -> str | None:
    """An environment value; empty counts as unset (``export X=`` is a common reset)."""
    value = env.get(name)
    return value or None


def _true(env: Mapping[str, str], name: str) -> bool:
    return (_get(env, name) or "").strip().lower() == "true"


def _home(env: Mapping[str, str]) -> Path:
    home = _get(env, "HOME")
    return Path(home) if home else Path.home()


def _config_path(options: CredentialOptions, env: Mapping[str, str]) -> Path:
    if options.config_path is not None:
        return options.config_path
    return _home(env) / ".aliyun" / "config.json"


# --- role assumption ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Role:
    """An AssumeRole (or AssumeRoleWithOIDC) request's parameters; no secret among them
    except the external id, which is never shown."""

    arn: str
    session_name: str
    duration: int = DEFAULT_DURATION
    policy: str | None = None
    external_id: str | None = field(default=None, repr=False)
    sts_region: str | None = None
    vpc: bool = False
    network: Network | None = field(default=None, compare=False)


def _role(
    arn: str,
    label: str,
    env: Mapping[str, str],
    options: CredentialOptions,
    *,
    session_name: Any = None,
    duration: Any = None,
    policy: Any = None,
    external_id: Any = None,
    sts_region: Any = None,
) -> _Role:
    if not _ROLE_ARN.fullmatch(arn):
        raise ConfigError(
            f"{label}: {arn!r} is not a role ARN (acs:ram::<account id>:role/<role name>)"
        )
    name = (
        options.role_session_name
        or (session_name if isinstance(session_name, str) and session_name else None)
        or _get(env, ENV_ROLE_SESSION_NAME)
        or f"bulk-attach-{int(time.time())}"
    )
    if not _SESSION_NAME.fullmatch(name):
        raise ConfigError(
            f"{label}: role session name {name!r} must be 2-64 of letters, digits and .@_-"
        )
    seconds = DEFAULT_DURATION
    if duration not in (None, "", 0):
        try:
            seconds = int(duration)
        except (TypeError, ValueError):
            raise ConfigError(f"{label}: expired_seconds {duration!r} is not a number") from None
        if seconds < MIN_DURATION:
            raise ConfigError(f"{label}: expired_seconds must be at least {MIN_DURATION}")
    region = (
        options.sts_region
        or (sts_region if isinstance(sts_region, str) and sts_region else None)
        or _get(env, ENV_STS_REGION)
    )
    return _Role(
        arn=arn,
        session_name=name,
        duration=seconds,
        policy=policy if isinstance(policy, str) and policy else None,
        external_id=options.external_id
        or (external_id if isinstance(external_id, str) and external_id else None),
        sts_region=region,
        vpc=_true(env, ENV_VPC_ENDPOINT),
        network=options.network,
    )


def _endpoint(text: str, what: str) -> URL:
    from bulk_attach.api.client import parse_endpoint

    try:
        return parse_endpoint(text)
    except ConfigError as error:
        raise ConfigError(f"{what}: {error}") from None


def _sts_endpoint(role: _Role, env: Mapping[str, str]) -> URL:
    from yarl import URL

    override = _get(env, ENV_STS_ENDPOINT)
    if override:
        return _endpoint(override, ENV_STS_ENDPOINT)
    if role.sts_region:
        prefix = "sts-vpc" if role.vpc else "sts"
        return URL.build(scheme="https", host=f"{prefix}.{role.sts_region}.aliyuncs.com")
    return URL.build(scheme="https", host="sts.aliyuncs.com")


def _assuming(
    base: CredentialsProvider, role: _Role, env: Mapping[str, str], label: str
) -> RefreshingCredentials:
    async def fetch(session: aiohttp.ClientSession) -> Credentials:
        from bulk_attach.api import sts

        signer = await base.current()
        return await sts.assume_role(
            session,
            _sts_endpoint(role, env),
            signer,
            role_arn=role.arn,
            session_name=role.session_name,
            duration=role.duration,
            policy=role.policy,
            external_id=role.external_id,
            source=label,
            network=role.network,
        )

    return RefreshingCredentials(fetch, label)


def _oidc(
    role: _Role, provider_arn: str, token_file: str, env: Mapping[str, str], label: str
) -> RefreshingCredentials:
    async def fetch(session: aiohttp.ClientSession) -> Credentials:
        from bulk_attach.api import sts

        path = Path(token_file)
        try:
            # Read on every fetch: the kubelet rotates the projected token.
            token = (await asyncio.to_thread(path.read_text, encoding="utf-8")).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise FetchError(
                f"cannot read the OIDC token file {path}: {type(exc).__name__}"
            ) from None
        if not token:
            raise FetchError(f"the OIDC token file {path} is empty")
        return await sts.assume_role_with_oidc(
            session,
            _sts_endpoint(role, env),
            role_arn=role.arn,
            provider_arn=provider_arn,
            token=token,
            session_name=role.session_name,
            duration=role.duration,
            source=label,
            network=role.network,
        )

    return RefreshingCredentials(fetch, label)


def _metadata_timeout(env: Mapping[str, str]) -> float:
    text = _get(env, ENV_METADATA_TIMEOUT)
    if not text:
        return DEFAULT_METADATA_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{ENV_METADATA_TIMEOUT}={text!r} is not a number of seconds") from None
    if not 0 < value <= 600:
        raise ConfigError(f"{ENV_METADATA_TIMEOUT} must be between 0 and 600 seconds")
    return value


def _metadata(role_name: str | None, env: Mapping[str, str], label: str) -> RefreshingCredentials:
    base = _endpoint(_get(env, ENV_METADATA_ENDPOINT) or METADATA_HOST, ENV_METADATA_ENDPOINT)
    timeout = _metadata_timeout(env)

    async def fetch(session: aiohttp.ClientSession) -> Credentials:
        from bulk_attach.api import sts

        try:
            return await sts.from_metadata(session, base, role_name, limit=timeout, source=label)
        except FetchError as error:
            if "no answer" in str(error) or "cannot connect" in str(error):
                raise FetchError(
                    f"{error} ({timeout:g} s). Not on an ECS instance? Set "
                    f"{ENV_ECS_METADATA_DISABLED}=true to skip this step"
                ) from None
            raise

    return RefreshingCredentials(fetch, label)


def _uri(uri: str, label: str) -> RefreshingCredentials:
    from yarl import URL

    try:
        url = URL(uri)
    except ValueError:
        raise ConfigError(f"{label}: not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"{label}: must be an http:// or https:// URL")

    async def fetch(session: aiohttp.ClientSession) -> Credentials:
        from bulk_attach.api import sts

        return await sts.from_uri(session, url, source=label)

    return RefreshingCredentials(fetch, label)


# --- sources ----------------------------------------------------------------------------


def _from_options(options: CredentialOptions, env: Mapping[str, str]) -> CredentialsProvider | None:
    given = [options.access_key_id, options.access_key_secret, options.security_token]
    mode = options.mode
    if mode is not None and mode not in CLI_MODES:
        raise ConfigError(
            f"--mode {mode} cannot be given on the command line; modes there: "
            f"{', '.join(CLI_MODES)}. Configure a profile (aliyun configure --mode {mode}) "
            "and pass --profile"
        )
    if mode == "EcsRamRole":
        if any(given):
            raise ConfigError("--mode EcsRamRole takes no access key options")
        return _metadata(
            _get(env, ENV_ECS_METADATA), env, "ECS instance RAM role (--mode EcsRamRole)"
        )
    if not any(given):
        if mode is not None:
            raise ConfigError(f"--mode {mode} needs --access-key-id and --access-key-secret")
        return None
    if not options.access_key_id or not options.access_key_secret:
        missing = "--access-key-id" if not options.access_key_id else "--access-key-secret"
        raise ConfigError(f"credentials on the command line are incomplete: {missing} is missing")
    if mode == "StsToken" and not options.security_token:
        raise ConfigError("--mode StsToken needs --security-token")
    if mode == "RamRoleArn" and not options.ram_role_arn:
        raise ConfigError("--mode RamRoleArn needs --ram-role-arn")
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


def _from_oidc_env(
    env: Mapping[str, str], options: CredentialOptions
) -> RefreshingCredentials | None:
    names = (ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE)
    values = [_get(env, name) for name in names]
    if not all(values):
        return None
    role_arn, provider_arn, token_file = (value or "" for value in values)
    label = f"OIDC (RRSA) from the environment ({ENV_ROLE_ARN})"
    return _oidc(_role(role_arn, label, env, options), provider_arn, token_file, env, label)


@dataclass(frozen=True, slots=True)
class _Profile:
    name: str
    data: Mapping[str, Any]
    path: Path
    # Why it was chosen: "--profile", ENV_PROFILE, "current" or "source_profile".
    chosen_by: str
    profiles: tuple[Mapping[str, Any], ...] = ()


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
        if chosen_by == "--profile":
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
    listed = tuple(item for item in profiles if isinstance(item, dict))
    for item in listed:
        if item.get("name") == wanted:
            return _Profile(wanted, item, path, chosen_by, listed), ""
    if chosen_by != "current":
        names = ", ".join(sorted(str(p.get("name")) for p in listed))
        raise ConfigError(
            f"profile {wanted!r} (from {chosen_by}) is not in {path}"
            + (f"; profiles there: {names}" if names else "")
        )
    return None, f"{path} (no profile {wanted!r})"


def _need(data: Mapping[str, Any], label: str, mode: str, *names: str) -> None:
    missing = [name for name in names if not isinstance(data.get(name), str) or not data[name]]
    if missing:
        raise ConfigError(f"{label} (mode {mode}) has no {', '.join(missing)}")


def _from_profile(
    profile: _Profile,
    env: Mapping[str, str],
    options: CredentialOptions,
    seen: tuple[str, ...] = (),
) -> CredentialsProvider:
    data = profile.data
    mode = str(data.get("mode") or "AK")
    label = f"profile {profile.name!r} in {profile.path}"
    source = f"{label} (mode {mode}, chosen by {profile.chosen_by})"
    if mode not in MODES:
        extra = (
            " (CloudSSO needs an interactive sign-in; run `aliyun sso login` elsewhere and "
            "use a RamRoleArn or StsToken profile for scheduled jobs)"
            if mode == "CloudSSO"
            else ""
        )
        raise ConfigError(
            f"{label} uses mode {mode!r}, which bulk-attach does not support{extra}; supported "
            f"modes: {', '.join(MODES)}"
        )
    if mode in ("AK", "StsToken", "RamRoleArn"):
        fields = ["access_key_id", "access_key_secret"]
        if mode == "StsToken":
            fields.append("sts_token")
        if mode == "RamRoleArn":
            fields.append("ram_role_arn")
        _need(data, label, mode, *fields)
        keys = Credentials(
            access_key_id=data["access_key_id"],
            access_key_secret=data["access_key_secret"],
            security_token=(data.get("sts_token") or None) if mode != "AK" else None,
            source=source,
        )
        if mode != "RamRoleArn":
            return keys
        return _assuming(keys, _profile_role(data, label, env, options), env, source)
    if mode == "ChainableRamRoleArn":
        _need(data, label, mode, "source_profile", "ram_role_arn")
        name = str(data["source_profile"])
        if name in (*seen, profile.name):
            raise ConfigError(f"{label}: source_profile {name!r} makes a loop")
        found = next((p for p in profile.profiles if p.get("name") == name), None)
        if found is None:
            raise ConfigError(f"{label}: source_profile {name!r} is not in {profile.path}")
        inner = _Profile(name, found, profile.path, "source_profile", profile.profiles)
        base = _from_profile(
            inner, env, CredentialOptions(network=options.network), (*seen, profile.name)
        )
        return _assuming(base, _profile_role(data, label, env, options), env, source)
    if mode == "EcsRamRole":
        role_name = data.get("ram_role_name")
        return _metadata(
            role_name if isinstance(role_name, str) and role_name else None, env, source
        )
    if mode == "OIDC":
        _need(data, label, mode, "oidc_provider_arn", "oidc_token_file", "ram_role_arn")
        role = _profile_role(data, label, env, options)
        return _oidc(role, data["oidc_provider_arn"], data["oidc_token_file"], env, source)
    _need(data, label, mode, "credentials_uri")
    return _uri(data["credentials_uri"], source)


def _profile_role(
    data: Mapping[str, Any], label: str, env: Mapping[str, str], options: CredentialOptions
) -> _Role:
    return _role(
        str(data["ram_role_arn"]),
        label,
        env,
        options,
        session_name=data.get("ram_session_name"),
        duration=data.get("expired_seconds"),
        policy=data.get("policy"),
        external_id=data.get("external_id"),
        sts_region=data.get("sts_region"),
    )


def _ini_path(env: Mapping[str, str]) -> tuple[Path, bool]:
    named = _get(env, ENV_CREDENTIALS_FILE)
    if named:
        return Path(named), True
    return _home(env) / ".alibabacloud" / "credentials.ini", False


def _from_ini(  # noqa: PLR0911 - one return per type of section
    env: Mapping[str, str], options: CredentialOptions
) -> tuple[CredentialsProvider | None, str]:
    path, named = _ini_path(env)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if named:
            raise ConfigError(
                f"{ENV_CREDENTIALS_FILE} names {path}, which does not exist"
            ) from None
        return None, f"{path} (not found)"
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {type(exc).__name__}") from None
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        line = getattr(exc, "lineno", "?")
        raise ConfigError(f"{path}:{line}: not a valid INI file ({type(exc).__name__})") from None
    name = _get(env, ENV_PROFILE) or "default"
    if not parser.has_section(name):
        return None, f"{path} (no section [{name}])"
    section = dict(parser.items(name))
    if section.get("enable", "true").strip().lower() == "false":
        return None, f"{path} (section [{name}] has enable = false)"
    label = f"[{name}] in {path}"
    kind = section.get("type", "")
    source = f"{label} (type {kind})"

    def need(*fields: str) -> None:
        missing = [f for f in fields if not section.get(f)]
        if missing:
            raise ConfigError(f"{label} (type {kind}) has no {', '.join(missing)}")

    if kind == "access_key":
        need("access_key_id", "access_key_secret")
        return Credentials(section["access_key_id"], section["access_key_secret"], None, source), ""
    if kind == "ecs_ram_role":
        return _metadata(section.get("role_name") or None, env, source), ""
    if kind == "ram_role_arn":
        need("access_key_id", "access_key_secret", "role_arn")
        keys = Credentials(section["access_key_id"], section["access_key_secret"], None, source)
        role = _role(
            section["role_arn"],
            label,
            env,
            options,
            session_name=section.get("role_session_name"),
            policy=section.get("policy"),
        )
        return _assuming(keys, role, env, source), ""
    if kind == "oidc_role_arn":
        need("role_arn", "oidc_provider_arn", "oidc_token_file_path")
        role = _role(
            section["role_arn"], label, env, options, session_name=section.get("role_session_name")
        )
        return _oidc(
            role, section["oidc_provider_arn"], section["oidc_token_file_path"], env, source
        ), ""
    raise ConfigError(
        f"{label} has type {kind!r}, which bulk-attach does not support; supported types: "
        "access_key, ecs_ram_role, ram_role_arn, oidc_role_arn"
    )


class _FirstOf:
    """The chain's last steps, which only the network can settle (the metadata service, a
    credentials URI): the first that answers wins and is kept; when none does, one
    ``ConfigError`` lists every source tried, with each step's reason."""

    def __init__(self, tried: list[str], steps: list[tuple[str, RefreshingCredentials]]) -> None:
        self._tried = tried
        self._steps = steps
        self._chosen: RefreshingCredentials | None = None

    @property
    def source(self) -> str:
        return self._chosen.source if self._chosen else "the ECS metadata service / URI"

    @property
    def refreshes(self) -> int:
        return self._chosen.refreshes if self._chosen else 0

    async def current(self) -> Credentials:
        if self._chosen is not None:
            return await self._chosen.current()
        reasons = []
        for label, step in self._steps:
            try:
                creds = await step.current()
            except FetchError as error:
                reasons.append(f"{label}: {error}")
                await step.aclose()
                continue
            self._chosen = step
            return creds
        raise ConfigError(_nothing_found([*self._tried, *reasons]))

    async def refreshed(self, stale: Credentials) -> Credentials | None:
        return await self._chosen.refreshed(stale) if self._chosen else None

    async def aclose(self) -> None:
        for _, step in self._steps:
            await step.aclose()


def _nothing_found(tried: list[str]) -> str:
    return (
        "no Alibaba Cloud credentials found; tried: " + "; ".join(tried) + ". Set "
        f"{ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}, or configure a profile with "
        "`aliyun configure` (see README, Credentials)."
    )


def _base_chain(options: CredentialOptions, env: Mapping[str, str]) -> CredentialsProvider:
    found = _from_options(options, env)
    if found is not None:
        return found
    found = _from_env(env)
    if found is not None:
        return found
    oidc = _from_oidc_env(env, options)
    if oidc is not None:
        return oidc
    tried = [
        "command-line options (--access-key-id, --access-key-secret)",
        f"environment ({ENV_ACCESS_KEY_ID}, {ENV_ACCESS_KEY_SECRET})",
        f"environment ({LEGACY_ACCESS_KEY}, {LEGACY_SECRET_KEY})",
        f"OIDC ({ENV_ROLE_ARN}, {ENV_OIDC_PROVIDER_ARN}, {ENV_OIDC_TOKEN_FILE}: not all set)",
    ]
    if options.profile or not _true(env, ENV_CLI_PROFILE_DISABLED):
        profile, note = _find_profile(options, env)
        if profile is not None:
            return _from_profile(profile, env, options)
        tried.append(f"aliyun CLI config {note}")
    else:
        tried.append(f"aliyun CLI config (skipped: {ENV_CLI_PROFILE_DISABLED}=true)")
    ini, note = _from_ini(env, options)
    if ini is not None:
        return ini
    tried.append(f"credentials file {note}")
    steps: list[tuple[str, RefreshingCredentials]] = []
    if _true(env, ENV_ECS_METADATA_DISABLED):
        tried.append(f"ECS instance RAM role (skipped: {ENV_ECS_METADATA_DISABLED}=true)")
    else:
        label = "ECS instance RAM role (metadata service)"
        steps.append((label, _metadata(_get(env, ENV_ECS_METADATA), env, label)))
    uri = _get(env, ENV_CREDENTIALS_URI)
    if uri:
        label = f"credentials URI ({ENV_CREDENTIALS_URI})"
        steps.append((label, _uri(uri, label)))
    else:
        tried.append(f"credentials URI ({ENV_CREDENTIALS_URI} not set)")
    if not steps:
        raise ConfigError(_nothing_found(tried))
    return _FirstOf(tried, steps)


def resolve_credentials(options: CredentialOptions, env: Mapping[str, str]) -> CredentialsProvider:
    """The first configured source in order (files read, no network yet); ``ConfigError``
    for a broken source or when nothing is configured. Fixed keys come back as
    ``Credentials``; anything temporary as a provider that fetches on first use.

    ``--ram-role-arn`` assumes that role with whatever the chain found (a role in a profile
    is then chained: the profile's role assumes this one); ``--role-session-name`` and
    ``--external-id`` then belong to that role alone.
    """
    arn = options.ram_role_arn
    if not arn:
        return _base_chain(options, env)
    base = _base_chain(replace(options, role_session_name=None, external_id=None), env)
    label = f"role {arn} (--ram-role-arn), assumed with {base.source}"
    return _assuming(base, _role(arn, "--ram-role-arn", env, options), env, label)


async def open_credentials(
    options: CredentialOptions, env: Mapping[str, str]
) -> CredentialsProvider:
    """``resolve_credentials`` and the first fetch: ``ConfigError`` (exit 3) if it fails."""
    provider = resolve_credentials(options, env)
    try:
        await provider.current()
    except FetchError as error:
        await provider.aclose()
        raise ConfigError(f"credentials from {provider.source}: {error}") from None
    except BaseException:
        await provider.aclose()
        raise
    return provider


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
    if not options.profile and _true(env, ENV_CLI_PROFILE_DISABLED):
        return None
    profile, _ = _find_profile(options, env)
    if profile is None:
        return None
    region = profile.data.get("region_id")
    return region if isinstance(region, str) and region else None
