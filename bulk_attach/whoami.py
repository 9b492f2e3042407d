"""``bulk-attach whoami``: the credentials' source, the caller's identity, and whether a
region's ECS and VPC endpoints answer them. Exit 0 when all of it works, 3 otherwise."""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from dataclasses import replace

from bulk_attach.api.client import EcsClient
from bulk_attach.api.credentials import (
    Credentials,
    CredentialsProvider,
    FetchError,
    open_credentials,
)
from bulk_attach.api.identity import caller_identity, check_endpoint
from bulk_attach.commands import Link
from bulk_attach.errors import ConfigError, ExitCode

__all__ = ["whoami_main"]


async def whoami_main(link: Link, *, quiet: bool) -> int:
    def say(text: str) -> None:
        if not quiet:
            sys.stdout.write(text + "\n")

    region = link.region() or "cn-hangzhou"
    client_settings, env = link.client, link.env
    async with AsyncExitStack() as stack:
        credentials: CredentialsProvider
        if link.emulator:
            from bulk_attach.emulator.model import EcsModel
            from bulk_attach.emulator.server import EmulatorSettings, running_emulator

            emu = await stack.enter_async_context(running_emulator(EcsModel(), EmulatorSettings()))
            credentials = Credentials(
                emu.access_key_id, emu.access_key_secret, source="the embedded emulator"
            )
            client_settings = replace(client_settings, endpoint=emu.endpoint)
        else:
            credentials = await open_credentials(link.credential_options(), env)  # exit 3
            stack.push_async_callback(credentials.aclose)
        say(f"source:   {credentials.source}")
        ok = True
        try:
            identity = await caller_identity(credentials, env, client_settings)
            say(f"identity: {identity}")
        except (FetchError, ConfigError) as error:
            ok = False
            sys.stderr.write(f"bulk-attach: identity: {error}\n")
        client = await stack.enter_async_context(EcsClient(client_settings, credentials))
        for product in ("ecs", "vpc"):
            check = await check_endpoint(client, product, region)
            ok = ok and check.ok
            say(f"{product}:      {region}: {check.detail}")
    return ExitCode.OK if ok else ExitCode.CONFIG
