"""The mutating actions the worker runs: each a small frozen spec, not a copy of the worker.

An action says how to send it, what "already done" looks like in the VPC's links, its
success and no-op statuses, which statuses count as success for the exit code, per-action
overrides of the error catalog, and whether it holds quota. ``engine/worker.py`` runs any
of them with the same safety: read the VPC's links first, journal before sending, classify
the answer, read back after an ambiguous one, try again by class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from bulk_attach.core.catalog import ErrorClass
from bulk_attach.core.outcomes import Status
from bulk_attach.errors import EcsError

__all__ = ["ATTACH", "DETACH", "Action", "MutatingApi"]


class MutatingApi(Protocol):
    """The calls that change a link (``EcsClient`` has both; a fake can stand in)."""

    async def attach_classic_link_vpc(self, region: str, instance_id: str, vpc_id: str) -> str: ...

    async def detach_classic_link_vpc(self, region: str, instance_id: str, vpc_id: str) -> str: ...


Send = Callable[[MutatingApi, str, str, str], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Action:
    name: str  # the verb in messages and the summary: "attach", "detach"
    api_action: str  # the API's action name (the rate gate's key)
    send: Send  # (api, region, instance, VPC) -> RequestId; not idempotent: never re-sent blindly
    # The end state in the VPC's links: attach is done when the instance is linked to its
    # VPC, detach when it is not.
    done_when_linked: bool
    success: Status  # this run did it
    no_op: Status  # found done already; not sent
    no_op_message: str
    done_word: str  # "linked", "detached": what a read-back confirms
    succeeded: frozenset[Status]  # what counts as success for the exit code
    uses_quota: bool  # holds a slot of the VPC's quota while in flight (attach)
    overrides: Mapping[str, ErrorClass] = field(default_factory=lambda: MappingProxyType({}))

    def is_done(self, linked_to_its_vpc: bool) -> bool:
        return linked_to_its_vpc == self.done_when_linked

    def error_class(self, error: EcsError) -> ErrorClass:
        """The catalog's class for this answer, unless this action knows better."""
        return self.overrides.get(error.code, error.error_class)

    def __repr__(self) -> str:
        return f"<Action {self.name} ({self.api_action})>"


async def _attach(api: MutatingApi, region: str, instance: str, vpc: str) -> str:
    return await api.attach_classic_link_vpc(region, instance, vpc)


async def _detach(api: MutatingApi, region: str, instance: str, vpc: str) -> str:
    return await api.detach_classic_link_vpc(region, instance, vpc)


ATTACH = Action(
    name="attach",
    api_action="AttachClassicLinkVpc",
    send=_attach,
    done_when_linked=True,
    success=Status.ATTACHED,
    no_op=Status.ALREADY_LINKED,
    no_op_message="already linked; not sent",
    done_word="linked",
    succeeded=frozenset({Status.ATTACHED, Status.ALREADY_LINKED}),
    uses_quota=True,
)

# Unconfirmed (lifecycle facts): what detach answers for an instance that is not linked,
# or linked to another VPC. The worker reads the VPC's links first, so such a row is not
# sent; when the link went away meanwhile, the emulator's assumption is OperationDenied.
# So that answer is read back instead of taken as final: no link any more is `detached`.
DETACH = Action(
    name="detach",
    api_action="DetachClassicLinkVpc",
    send=_detach,
    done_when_linked=False,
    success=Status.DETACHED,
    no_op=Status.NOT_LINKED,
    no_op_message="not linked to its VPC; not sent",
    done_word="detached",
    succeeded=frozenset({Status.DETACHED, Status.NOT_LINKED}),
    uses_quota=False,
    overrides=MappingProxyType({"OperationDenied": ErrorClass.AMBIGUOUS}),
)
