"""A local ECS (and VPC) API for rehearsals, tests and benchmarks, in the style of moto.

``model.py`` holds the cloud's state and rules (no HTTP); ``world.py`` builds a model from a
JSON world or a pairs CSV; ``http.py`` parses, routes and renders; ``auth.py`` checks
signatures; ``faults.py`` holds flow control and seeded faults; ``server.py`` ties them into
an aiohttp application with a control endpoint; ``cli.py`` is its command line
(``bulk-attach emulator``).

The names below are imported on first use: the command line imports this package to
register its command, and ``bulk-attach --help`` need not load aiohttp for that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bulk_attach.emulator.model import EcsModel, Instance, ModelError, Vpc
    from bulk_attach.emulator.server import (
        EmulatorSettings,
        RunningEmulator,
        create_app,
        running_emulator,
        serve,
    )

__all__ = [
    "EcsModel",
    "EmulatorSettings",
    "Instance",
    "ModelError",
    "RunningEmulator",
    "Vpc",
    "create_app",
    "running_emulator",
    "serve",
]

_HOMES = {
    "EcsModel": "model",
    "Instance": "model",
    "ModelError": "model",
    "Vpc": "model",
    "EmulatorSettings": "server",
    "RunningEmulator": "server",
    "create_app": "server",
    "running_emulator": "server",
    "serve": "server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # once is enough
    return value
