"""A local ECS (and VPC) API for rehearsals, tests and benchmarks, in the style of moto.

``model.py`` holds the cloud's state and rules (no HTTP); ``world.py`` builds a model from a
JSON world or a pairs CSV; ``http.py`` parses, routes and renders; ``auth.py`` checks
signatures; ``faults.py`` holds flow control and seeded faults; ``server.py`` ties them into
an aiohttp application with a control endpoint.
"""

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
