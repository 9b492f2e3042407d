"""The file-free entry and the detach action: rows in, results out, through the one worker.

Against the emulator (the real client, signed requests) and against a fake API (the
detach-specific read-back). No CSV, no report, no file at all.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from bulk_attach.api.credentials import Credentials
from bulk_attach.core.catalog import LocalCode
from bulk_attach.core.outcomes import RowResult, Status
from bulk_attach.core.rows import Row
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import EmulatorSettings, running_emulator
from bulk_attach.engine.actions import ATTACH, DETACH
from bulk_attach.errors import ApiError, ExitCode, TransportError
from bulk_attach.library import attach, detach, pairs
from bulk_attach.settings import AttemptSettings, ClientSettings, EngineSettings

REGION = "cn-hangzhou"
FAST = EngineSettings(
    rate=None, attempts=AttemptSettings(base_delay=0.001, max_delay=0.01, throttle_base_delay=0.001)
)


def world(ids: Sequence[str]) -> EcsModel:
    model = EcsModel()
    model.add_vpc(Vpc("vpc-a", REGION))
    model.add_vpc(Vpc("vpc-b", REGION))
    for instance in ids:
        model.add_instance(Instance(instance, REGION))
    return model


def calls(state: dict[str, object], action: str) -> int:
    by_code = state["calls"]
    assert isinstance(by_code, dict)
    return sum(by_code.get(action, {}).values())


async def test_attach_then_detach_without_a_file(tmp_path: Path) -> None:
    ids = [f"i-lib{n:04d}" for n in range(40)]
    triples = [(REGION, i, "vpc-a" if n % 2 else "vpc-b") for n, i in enumerate(ids)]
    options = EmulatorSettings(host="127.0.0.1", port=0)
    before = os.listdir(tmp_path)
    async with running_emulator(world(ids), options) as emu:
        creds = Credentials(emu.access_key_id, emu.access_key_secret, None, "test")
        client = ClientSettings(endpoint=emu.endpoint)
        seen: list[RowResult] = []
        linked = await attach(
            pairs(triples), credentials=creds, client=client, settings=FAST, on_result=seen.append
        )
        assert linked.exit_code == ExitCode.OK
        assert linked.action == "attach"
        assert linked.summary.count(Status.ATTACHED) == 40
        assert sorted(r.instance_id for r in seen) == ids
        assert dict(emu.model.links) == {i: v for _, i, v in triples}

        again = await attach(pairs(triples), credentials=creds, client=client, settings=FAST)
        assert again.summary.count(Status.ALREADY_LINKED) == 40
        attaches = calls(emu.emulator.state(), "AttachClassicLinkVpc")

        gone = await detach(pairs(triples), credentials=creds, client=client, settings=FAST)
        assert gone.exit_code == ExitCode.OK
        assert gone.summary.count(Status.DETACHED) == 40
        assert dict(emu.model.links) == {}
        detaches = calls(emu.emulator.state(), "DetachClassicLinkVpc")

        # Nothing left to detach: every row is not_linked, and no detach is sent.
        none = await detach(pairs(triples), credentials=creds, client=client, settings=FAST)
        assert none.summary.count(Status.NOT_LINKED) == 40
        assert none.exit_code == ExitCode.OK
        state = emu.emulator.state()
    assert attaches == 40  # the second attach sent nothing
    assert detaches == 40
    assert calls(state, "DetachClassicLinkVpc") == 40
    assert os.listdir(tmp_path) == before  # no file anywhere


async def test_a_bad_row_is_rejected_and_nothing_is_sent_for_it() -> None:
    api = FakeApi()
    results: list[RowResult] = []
    outcome = await attach(
        pairs([(REGION, "i-good", "vpc-a"), (REGION, "x-bad", "vpc-a")]),
        api=api,
        settings=FAST,
        on_result=results.append,
    )
    by_id = {r.instance_id: r for r in results}
    assert by_id["x-bad"].status is Status.INVALID
    assert by_id["x-bad"].line == 2
    assert by_id["i-good"].status is Status.ATTACHED
    assert api.sent == Counter({("attach", "i-good"): 1})
    assert outcome.exit_code == ExitCode.SOME_ROWS_FAILED


def test_credentials_or_api_but_not_both() -> None:
    with pytest.raises(ValueError, match="either credentials"):
        asyncio.run(attach([], settings=FAST))
    with pytest.raises(ValueError, match="either credentials"):
        asyncio.run(attach([], api=FakeApi(), credentials=Credentials("a", "b", None, "t")))


# --- detach's own read-back, with a fake API --------------------------------------------


@dataclass(frozen=True)
class FakeLink:
    instance_id: str
    vpc_id: str


class FakeApi:
    """Links, plus instances whose next mutating call takes effect and then times out."""

    def __init__(self, links: dict[str, str] | None = None) -> None:
        self.links = dict(links or {})
        self.lost_answer: set[str] = set()
        self.sent: Counter[tuple[str, str]] = Counter()

    async def _answer(self, verb: str, instance_id: str) -> str:
        self.sent[(verb, instance_id)] += 1
        await asyncio.sleep(0)
        if instance_id in self.lost_answer:
            self.lost_answer.discard(instance_id)
            raise TransportError(LocalCode.TIMEOUT, "no answer within the read timeout")
        return f"RID-{verb}-{instance_id}"

    async def attach_classic_link_vpc(self, region: str, instance_id: str, vpc_id: str) -> str:
        self.links[instance_id] = vpc_id
        return await self._answer("attach", instance_id)

    async def detach_classic_link_vpc(self, region: str, instance_id: str, vpc_id: str) -> str:
        if self.links.get(instance_id) == vpc_id:
            del self.links[instance_id]
        return await self._answer("detach", instance_id)

    async def describe_classic_link_instances(
        self, region: str, *, vpc_id: str | None = None, instance_ids: Sequence[str] = ()
    ) -> list[FakeLink]:
        await asyncio.sleep(0)
        return [
            FakeLink(i, v)
            for i, v in sorted(self.links.items())
            if (vpc_id is None or v == vpc_id) and (not instance_ids or i in instance_ids)
        ]


async def test_a_detach_whose_answer_was_lost_is_read_back_not_resent() -> None:
    api = FakeApi({"i-1": "vpc-a", "i-2": "vpc-a", "i-3": "vpc-b"})
    api.lost_answer = {"i-1"}
    results: list[RowResult] = []
    rows = [Row(n + 2, REGION, i, "vpc-a") for n, i in enumerate(("i-1", "i-2", "i-3"))]
    outcome = await detach(rows, api=api, settings=FAST, on_result=results.append)
    by_id = {r.instance_id: r for r in results}
    assert by_id["i-1"].status is Status.DETACHED
    assert "confirmed by read-back" in by_id["i-1"].message
    assert by_id["i-2"].status is Status.DETACHED
    # i-3 is linked to another VPC: detaching it from vpc-a has nothing to undo.
    assert by_id["i-3"].status is Status.NOT_LINKED
    assert api.sent == Counter({("detach", "i-1"): 1, ("detach", "i-2"): 1})
    assert api.links == {"i-3": "vpc-b"}
    assert outcome.exit_code == ExitCode.OK


def test_actions_say_what_done_looks_like() -> None:
    assert ATTACH.is_done(linked_to_its_vpc=True)
    assert not ATTACH.is_done(linked_to_its_vpc=False)
    assert DETACH.is_done(linked_to_its_vpc=False)
    assert not DETACH.is_done(linked_to_its_vpc=True)
    assert ATTACH.uses_quota
    assert not DETACH.uses_quota
    assert Status.DETACHED in DETACH.succeeded
    assert Status.ATTACHED not in DETACH.succeeded


class RacedApi(FakeApi):
    """Someone else unlinks the instance between our link read and our detach; the service
    then answers OperationDenied (the emulator's assumption for "not linked")."""

    async def detach_classic_link_vpc(self, region: str, instance_id: str, vpc_id: str) -> str:
        self.sent[("detach", instance_id)] += 1
        self.links.pop(instance_id, None)  # the other tool got there first
        raise ApiError("OperationDenied", "The instance is not linked", http_status=403)


async def test_operation_denied_on_detach_is_read_back_not_final() -> None:
    api = RacedApi({"i-1": "vpc-a"})
    results: list[RowResult] = []
    outcome = await detach(
        [Row(2, REGION, "i-1", "vpc-a")], api=api, settings=FAST, on_result=results.append
    )
    assert results[0].status is Status.DETACHED
    assert "confirmed by read-back after OperationDenied" in results[0].message
    assert api.sent == Counter({("detach", "i-1"): 1})
    assert outcome.exit_code == ExitCode.OK
