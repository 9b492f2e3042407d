"""The emulator's model and worlds: every AttachClassicLinkVpc rule, both variants, no HTTP."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from bulk_attach.core.catalog import CATALOG, DETACH_CODES
from bulk_attach.core.rows import Row
from bulk_attach.emulator.http import http_status
from bulk_attach.emulator.model import (
    DEFAULT_LOCK_REASON,
    DETACH_WHEN_NOT_LINKED,
    VARIANTS,
    EcsModel,
    Instance,
    ModelError,
    Vpc,
    owner_id,
)
from bulk_attach.emulator.world import (
    WorldSpec,
    build_world,
    dump_world,
    load_world,
    save_world,
    world_from_dict,
    world_from_pairs,
)
from bulk_attach.errors import InputError
from bulk_attach.files.csv_input import read_pairs

HZ, SH = "cn-hangzhou", "cn-shanghai"
ME, OTHER = "default", "another-account"
VPC, VPC2, VPC_SH = "vpc-bp1aaaa", "vpc-bp1bbbb", "vpc-uf6cccc"
INST = "i-bp1ok"
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def make_model(variant: str = "2018", quota: int = 1000) -> EcsModel:
    m = EcsModel(regions=[HZ, SH, "cn-beijing"], default_quota=quota, variant=variant)
    m.add_vpc(Vpc(VPC, HZ))
    m.add_vpc(Vpc(VPC2, HZ))
    m.add_vpc(Vpc(VPC_SH, SH))
    m.add_vpc(Vpc("vpc-bp1off", HZ, classic_link_enabled=False))
    m.add_vpc(Vpc("vpc-bp1theirs", HZ, owner=OTHER))
    m.add_instance(Instance(INST, HZ))
    m.add_instance(Instance("i-bp1stopped", HZ, status="Stopped"))
    m.add_instance(Instance("i-bp1starting", HZ, status="Starting"))
    m.add_instance(Instance("i-bp1stopping", HZ, status="Stopping"))
    m.add_instance(Instance("i-bp1pending", HZ, status="Pending"))
    m.add_instance(Instance("i-bp1locked", HZ, locked=True))
    m.add_instance(Instance("i-bp1vpc", HZ, network_type="vpc"))
    m.add_instance(Instance("i-bp1theirs", HZ, owner=OTHER))
    m.add_instance(Instance("i-uf6sh", SH))
    m.add_instance(Instance("i-bp1elsewhere", HZ))
    m.link("i-bp1elsewhere", VPC2)
    return m


def code_of(m: EcsModel, region: str, instance_id: str, vpc_id: str, account: str = ME) -> str:
    with pytest.raises(ModelError) as info:
        m.attach(account, region, instance_id, vpc_id)
    return info.value.code


# ---------------------------------------------------------------------------- attach rules
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("instance_id", [INST, "i-bp1stopped"])
def test_attach_running_or_stopped_classic_instance_links_it(
    variant: str, instance_id: str
) -> None:
    m = make_model(variant)
    m.attach(ME, HZ, instance_id, VPC)
    assert m.links[instance_id] == VPC
    assert m.link_count(VPC) == 1
    assert m.describe_links(ME, HZ, vpc_id=VPC) == [(instance_id, VPC)]


RULES = [
    # (case, region, instance, vpc, account, 2018 code, current code)
    ("unknown region", "cn-nowhere", INST, VPC, ME,
     "InvalidRegionId.Malformed", "InvalidRegionId.NotFound"),
    ("malformed vpc id", HZ, INST, "vp-bp1aaaa", ME,
     "InvalidVpcId.Malformed", "InvalidVpcId.Malformed"),
    ("unknown vpc", HZ, INST, "vpc-bp1nothere", ME,
     "InvalidVpcId.Malformed", "InvalidVpcId.Malformed"),
    ("vpc of another account", HZ, INST, "vpc-bp1theirs", ME,
     "InvalidVpcId.Malformed", "InvalidVpcId.Malformed"),
    ("unknown instance", HZ, "i-bp1nothere", VPC, ME,
     "InvalidInstanceId.NotFound", "InvalidInstanceId.NotFound"),
    ("instance of another account", HZ, "i-bp1theirs", VPC, ME,
     "InvalidInstanceId.NotBelong", "InvalidInstanceId.NotBelong"),
    ("not a classic instance", HZ, "i-bp1vpc", VPC, ME,
     "InvalidInstanceId.MalFormed", "InvalidInstanceId.MalFormed"),
    ("instance and vpc in different regions", HZ, INST, VPC_SH, ME,
     "InvalidRegionId.Malformed", "InvalidInstanceId.LimitedRegion"),
    ("request region is not the instance's", SH, INST, VPC, ME,
     "InvalidRegionId.Malformed", "InvalidInstanceId.LimitedRegion"),
    ("locked", HZ, "i-bp1locked", VPC, ME,
     "InvalidStatus.InstanceLocked", "InvalidStatus.InstanceLocked"),
    ("starting", HZ, "i-bp1starting", VPC, ME,
     "InvalidStatus.InstanceStatus", "InvalidStatus.InstanceStatus"),
    ("stopping", HZ, "i-bp1stopping", VPC, ME,
     "InvalidStatus.InstanceStatus", "InvalidStatus.InstanceStatus"),
    ("pending", HZ, "i-bp1pending", VPC, ME,
     "InvalidStatus.InstanceStatus", "InvalidStatus.InstanceStatus"),
    ("classiclink disabled", HZ, INST, "vpc-bp1off", ME,
     "OperationDenied", "OperationDenied"),
    ("linked to another vpc", HZ, "i-bp1elsewhere", VPC, ME,
     "Abs.InvalidInstanceId.MalFormed", "OperationDenied"),
    ("caller is another account", HZ, "i-bp1theirs", "vpc-bp1theirs", "a-third-account",
     "InvalidVpcId.Malformed", "InvalidVpcId.Malformed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "region", "instance_id", "vpc_id", "account", "code_2018", "code_current"),
    RULES,
    ids=[r[0] for r in RULES],
)
@pytest.mark.parametrize("variant", VARIANTS)
def test_attach_rule_answers_its_code_and_changes_nothing(
    *,
    variant: str,
    case: str,
    region: str,
    instance_id: str,
    vpc_id: str,
    account: str,
    code_2018: str,
    code_current: str,
) -> None:
    m = make_model(variant)
    before = dict(m.links)
    code = code_of(m, region, instance_id, vpc_id, account)
    assert code == (code_2018 if variant == "2018" else code_current), case
    assert code in CATALOG
    assert dict(m.links) == before
    assert m.attach_attempts[instance_id] == 1


def test_the_other_account_can_attach_its_own_resources() -> None:
    m = make_model()
    m.attach(OTHER, HZ, "i-bp1theirs", "vpc-bp1theirs")
    assert m.links["i-bp1theirs"] == "vpc-bp1theirs"
    assert m.describe_links(ME, HZ) == [("i-bp1elsewhere", VPC2)]
    assert m.describe_links(OTHER, HZ) == [("i-bp1theirs", "vpc-bp1theirs")]


@pytest.mark.parametrize(
    ("setup", "instance_id", "vpc_id", "expected"),
    [
        # region first, even before a malformed VPC id
        ("none", "i-bp1nothere", "bad", "InvalidRegionId.Malformed"),
        # VPC before instance
        ("none", "i-bp1nothere", "vpc-bp1nothere", "InvalidVpcId.Malformed"),
        # owner before network type
        ("vpc-theirs", "i-bp1theirs", VPC, "InvalidInstanceId.NotBelong"),
        # network type before region mismatch
        ("none", "i-bp1vpc", VPC_SH, "InvalidInstanceId.MalFormed"),
        # region mismatch before lock
        ("none", "i-bp1locked", VPC_SH, "InvalidRegionId.Malformed"),
        # lock before status
        ("locked-starting", "i-bp1locked", VPC, "InvalidStatus.InstanceLocked"),
        # status before ClassicLink switch
        ("none", "i-bp1starting", "vpc-bp1off", "InvalidStatus.InstanceStatus"),
        # ClassicLink switch before "linked elsewhere"
        ("none", "i-bp1elsewhere", "vpc-bp1off", "OperationDenied"),
        # "linked elsewhere" before quota
        ("vpc-full", "i-bp1elsewhere", VPC, "Abs.InvalidInstanceId.MalFormed"),
    ],
)
def test_check_order_is_the_documented_one(
    setup: str, instance_id: str, vpc_id: str, expected: str
) -> None:
    m = make_model()
    if setup == "locked-starting":
        m.instances["i-bp1locked"].status = "Starting"
    if setup == "vpc-full":
        m.vpcs[VPC].quota = 0
    region = "cn-nowhere" if vpc_id == "bad" else HZ
    assert code_of(m, region, instance_id, vpc_id) == expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_attach_to_the_same_vpc_again_succeeds_and_is_counted(variant: str) -> None:
    m = make_model(variant)
    m.attach(ME, HZ, INST, VPC)
    m.attach(ME, HZ, INST, VPC)
    m.attach(ME, HZ, INST, VPC)
    assert m.links[INST] == VPC
    assert m.link_count(VPC) == 1
    assert m.repeat_attaches == {INST: 2}
    assert m.attach_attempts[INST] == 3
    snap = m.snapshot()
    assert snap["repeat_attaches"] == {INST: 2}
    assert snap["total_repeat_attaches"] == 2


def test_repeat_attach_succeeds_even_when_the_vpc_is_full() -> None:
    m = make_model(quota=1)
    m.attach(ME, HZ, INST, VPC)
    m.attach(ME, HZ, INST, VPC)  # already linked: no quota needed
    assert code_of(m, HZ, "i-bp1stopped", VPC) == "QuotaExceeded"


def test_attach_attempts_count_failures_too() -> None:
    m = make_model()
    code_of(m, HZ, "i-bp1starting", VPC)
    code_of(m, HZ, "i-bp1starting", VPC)
    m.attach(ME, HZ, INST, VPC)
    assert m.attach_attempts == {"i-bp1starting": 2, INST: 1}
    assert max(m.attach_attempts.values()) == 2
    m.reset_counters()
    assert not m.attach_attempts
    assert not m.repeat_attaches
    assert m.links[INST] == VPC


# ---------------------------------------------------------------------------- quota
def seeded_links(count: int, variant: str = "2018") -> EcsModel:
    m = make_model(variant)
    for k in range(count):
        iid = f"i-bp1seed{k:05d}"
        m.add_instance(Instance(iid, HZ))
        m.link(iid, VPC)
    return m


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    ("existing", "allowed"), [(998, True), (999, True), (1000, False), (1001, False)]
)
def test_quota_of_1000_links(variant: str, existing: int, allowed: bool) -> None:
    m = seeded_links(existing, variant)
    assert m.link_count(VPC) == existing
    if allowed:
        m.attach(ME, HZ, INST, VPC)
        assert m.link_count(VPC) == existing + 1
    else:
        assert code_of(m, HZ, INST, VPC) == "QuotaExceeded"
        assert m.link_count(VPC) == existing
        assert INST not in m.links


def test_quota_999_takes_exactly_one_more() -> None:
    m = seeded_links(999)
    m.attach(ME, HZ, INST, VPC)
    assert code_of(m, HZ, "i-bp1stopped", VPC) == "QuotaExceeded"
    m.detach(ME, HZ, INST, VPC)
    m.attach(ME, HZ, "i-bp1stopped", VPC)
    assert m.link_count(VPC) == 1000


def test_vpc_quota_override_and_model_default() -> None:
    m = make_model(quota=5)
    assert m.quota_of(VPC) == 5
    m.vpcs[VPC].quota = 1
    assert m.quota_of(VPC) == 1
    m.attach(ME, HZ, INST, VPC)
    assert code_of(m, HZ, "i-bp1stopped", VPC) == "QuotaExceeded"
    m.attach(ME, HZ, "i-bp1stopped", VPC2)  # VPC2 uses the default of 5 and holds 1
    assert m.link_count(VPC2) == 2


def test_quota_counts_links_of_every_account() -> None:
    m = make_model(quota=1)
    m.add_instance(Instance("i-bp1x", HZ, owner=OTHER))
    m.vpcs[VPC].owner = OTHER
    m.link("i-bp1x", VPC)
    m.vpcs[VPC].owner = ME
    assert code_of(m, HZ, INST, VPC) == "QuotaExceeded"


# ---------------------------------------------------------------------------- detach
def test_detach_removes_the_link() -> None:
    m = make_model()
    m.attach(ME, HZ, INST, VPC)
    m.detach(ME, HZ, INST, VPC)
    assert INST not in m.links
    assert m.link_count(VPC) == 0
    assert m.detach_attempts[INST] == 1
    m.attach(ME, HZ, INST, VPC2)
    assert m.links[INST] == VPC2


DETACH_RULES = [
    # (case, region, instance, vpc, account, 2018 code, current code)
    ("unknown region", "cn-nowhere", "i-bp1elsewhere", VPC2, ME,
     "InvalidRegionId.Malformed", "InvalidRegionId.Malformed"),
    ("malformed vpc id", HZ, "i-bp1elsewhere", "bad", ME,
     "InvalidVpcId.Malformed", "InvalidVpcId.Malformed"),
    ("unknown vpc", HZ, "i-bp1elsewhere", "vpc-bp1nothere", ME,
     "InvalidVpcId.Malformed", "InvalidVpcId.Malformed"),
    ("vpc of another account", HZ, "i-bp1elsewhere", "vpc-bp1theirs", ME,
     "InvalidVpcId.Malformed", "InvalidVpcId.Malformed"),
    ("unknown instance", HZ, "i-bp1nothere", VPC2, ME,
     "InvalidInstanceId.NotFound", "InvalidInstanceId.NotFound"),
    ("instance of another account", HZ, "i-bp1theirs", VPC2, ME,
     "InvalidInstanceId.NotBelong", "InvalidInstanceId.NotFound"),
    ("not a classic instance", HZ, "i-bp1vpc", VPC2, ME,
     "InvalidInstanceId.MalFormed", "InvalidInstanceId.MalFormed"),
    ("request region is not the instance's", SH, "i-bp1elsewhere", VPC2, ME,
     "InvalidRegionId.Malformed", "InvalidRegionId.Malformed"),
    ("instance and vpc in different regions", HZ, "i-bp1elsewhere", VPC_SH, ME,
     "InvalidRegionId.Malformed", "InvalidRegionId.Malformed"),
    ("locked", HZ, "i-bp1locked", VPC2, ME,
     "InvalidStatus.InstanceLocked", "InvalidStatus.InstanceLocked"),
    ("starting", HZ, "i-bp1starting", VPC2, ME,
     "InvalidStatus.InstanceStatus", "InvalidStatus.InstanceStatus"),
    ("pending", HZ, "i-bp1pending", VPC2, ME,
     "InvalidStatus.InstanceStatus", "InvalidStatus.InstanceStatus"),
    ("linked to another vpc", HZ, "i-bp1elsewhere", VPC, ME,
     "OperationDenied", "OperationDenied"),
    ("not linked", HZ, INST, VPC2, ME, "OperationDenied", "OperationDenied"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "region", "instance_id", "vpc_id", "account", "code_2018", "code_current"),
    DETACH_RULES,
    ids=[r[0] for r in DETACH_RULES],
)
@pytest.mark.parametrize("variant", VARIANTS)
def test_detach_rule_answers_its_code_and_changes_nothing(
    *,
    variant: str,
    case: str,
    region: str,
    instance_id: str,
    vpc_id: str,
    account: str,
    code_2018: str,
    code_current: str,
) -> None:
    m = make_model(variant)
    m.instances["i-bp1locked"].status = "Starting"  # the lock is checked before the status
    with pytest.raises(ModelError) as info:
        m.detach(account, region, instance_id, vpc_id)
    code = info.value.code
    assert code == (code_2018 if variant == "2018" else code_current), case
    assert code in CATALOG
    own = DETACH_CODES[code]  # every detach code has the detach page's message and status
    assert info.value.message == own.message or code == "OperationDenied"
    assert own.status_for(variant) is not None
    assert m.links == {"i-bp1elsewhere": VPC2}
    assert m.detach_attempts[instance_id] == 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_detach_statuses_follow_the_detach_pages(variant: str) -> None:
    statuses = {code: DETACH_CODES[code].status_for(variant) for code in DETACH_CODES}
    malformed = {
        "InvalidRegionId.Malformed",
        "InvalidVpcId.Malformed",
        "InvalidInstanceId.MalFormed",
    }
    if variant == "current":
        assert set(statuses.values()) - {None} == {403}
        assert statuses["InvalidInstanceId.NotBelong"] is None  # not on the current page
    else:
        assert {statuses[code] for code in malformed} == {400}
        assert {s for code, s in statuses.items() if code not in malformed} == {403}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("instance_id", ["i-bp1elsewhere", "i-bp1stopped"])
def test_detach_from_a_running_or_stopped_instance(variant: str, instance_id: str) -> None:
    m = make_model(variant)
    m.link("i-bp1stopped", VPC2)
    m.detach(ME, HZ, instance_id, VPC2)
    assert instance_id not in m.links
    assert m.link_count(VPC2) == 1


def test_detach_not_linked_messages_tell_the_two_cases_apart() -> None:
    m = make_model()
    with pytest.raises(ModelError) as not_linked:
        m.detach(ME, HZ, INST, VPC)
    with pytest.raises(ModelError) as elsewhere:
        m.detach(ME, HZ, "i-bp1elsewhere", VPC)
    assert "not linked" in not_linked.value.message
    assert "another VPC" in elsewhere.value.message
    assert DETACH_WHEN_NOT_LINKED["not_linked"] == ("OperationDenied", not_linked.value.message)


def test_detach_when_not_linked_is_one_changeable_assumption() -> None:
    table = {"not_linked": None, "linked_elsewhere": ("InvalidParameter", "elsewhere")}
    m = EcsModel(regions=[HZ], detach_when_not_linked=table)
    m.add_vpc(Vpc(VPC, HZ))
    m.add_vpc(Vpc(VPC2, HZ))
    m.add_instance(Instance(INST, HZ))
    m.add_instance(Instance("i-bp1elsewhere", HZ))
    m.link("i-bp1elsewhere", VPC2)
    m.detach(ME, HZ, INST, VPC)  # succeeds, changes nothing, and is counted
    assert m.noop_detaches == {INST: 1}
    assert m.snapshot()["noop_detaches"] == {INST: 1}
    with pytest.raises(ModelError, match="InvalidParameter: elsewhere"):
        m.detach(ME, HZ, "i-bp1elsewhere", VPC)
    assert m.links == {"i-bp1elsewhere": VPC2}
    with pytest.raises(ValueError, match="detach_when_not_linked"):
        EcsModel(detach_when_not_linked={"not_linked": None})


@pytest.mark.parametrize("reason", ["financial", "security", "Recycling"])
def test_any_lock_reason_blocks_attach_and_detach(reason: str) -> None:
    m = make_model()
    m.add_instance(Instance("i-bp1held", HZ, lock_reasons=[reason]))
    m.link("i-bp1held", VPC2)
    assert code_of(m, HZ, "i-bp1held", VPC) == "InvalidStatus.InstanceLocked"
    with pytest.raises(ModelError, match="InstanceLocked"):
        m.detach(ME, HZ, "i-bp1held", VPC2)


def test_locked_is_a_view_of_the_lock_reasons() -> None:
    inst = Instance("i-a", HZ, locked=True)
    assert (inst.locked, inst.lock_reasons) == (True, (DEFAULT_LOCK_REASON,))
    held = Instance("i-b", HZ, lock_reasons=("financial", "refunded"))
    assert held.locked is True
    held.locked = True  # keeps the reasons it has
    assert held.lock_reasons == ("financial", "refunded")
    held.locked = False
    assert (held.locked, held.lock_reasons) == (False, ())
    assert Instance("i-c", HZ) == Instance("i-c", HZ, locked=False, zone_id=f"{HZ}-a")


# ---------------------------------------------------------------------------- describes
def test_describe_links_filters_and_sorts() -> None:
    m = make_model()
    for iid in ("i-bp1z", "i-bp1a", "i-bp1m"):
        m.add_instance(Instance(iid, HZ))
        m.attach(ME, HZ, iid, VPC)
    m.attach(ME, SH, "i-uf6sh", VPC_SH)
    assert m.describe_links(ME, HZ, vpc_id=VPC) == [
        ("i-bp1a", VPC),
        ("i-bp1m", VPC),
        ("i-bp1z", VPC),
    ]
    assert m.describe_links(ME, HZ, instance_ids=["i-bp1z", "i-bp1elsewhere", "i-nope"]) == [
        ("i-bp1elsewhere", VPC2),
        ("i-bp1z", VPC),
    ]
    assert m.describe_links(ME, HZ, vpc_id=VPC, instance_ids=["i-bp1z", "i-bp1elsewhere"]) == [
        ("i-bp1z", VPC)
    ]
    assert m.describe_links(ME, HZ, vpc_id="vpc-bp1nothere") == []
    assert m.describe_links(ME, SH) == [("i-uf6sh", VPC_SH)]
    assert m.describe_links(ME, HZ, instance_ids=["i-uf6sh"]) == []  # another region
    assert len(m.describe_links(ME, HZ)) == 4
    with pytest.raises(ModelError, match=r"InvalidRegionId\.Malformed"):
        m.describe_links(ME, "cn-nowhere", vpc_id=VPC)


def test_describe_instances_leaves_out_unknown_foreign_and_other_region() -> None:
    m = make_model()
    found = m.describe_instances(ME, HZ, ["i-bp1vpc", INST, "i-bp1theirs", "i-uf6sh", "i-x", INST])
    assert [(i.instance_id, i.network_type) for i in found] == [
        (INST, "classic"),
        ("i-bp1vpc", "vpc"),
    ]
    assert m.describe_instances(ME, HZ, []) == []  # an empty filter matches nothing
    every = [i.instance_id for i in m.describe_instances(ME, HZ)]  # no filter: all of mine
    assert every == sorted(every)
    assert INST in every
    assert "i-bp1theirs" not in every
    assert "i-uf6sh" not in every
    with pytest.raises(ModelError):
        m.describe_instances(ME, "cn-nowhere", [INST])


@pytest.mark.parametrize("variant", VARIANTS)
def test_describe_vpc(variant: str) -> None:
    m = make_model(variant)
    assert m.describe_vpc(ME, HZ, "vpc-bp1off").classic_link_enabled is False
    assert m.describe_vpc(ME, HZ, VPC).classic_link_enabled is True
    for region, vpc_id in ((HZ, "vpc-bp1theirs"), (HZ, "vpc-bp1nothere"), (SH, VPC)):
        with pytest.raises(ModelError) as info:
            m.describe_vpc(ME, region, vpc_id)
        assert info.value.code == "InvalidVpcID.NotFound"  # an assumption: VPC_NOT_FOUND
    with pytest.raises(ModelError) as info:
        m.describe_vpc(ME, "cn-nowhere", VPC)
    expected = "InvalidRegionId.Malformed" if variant == "2018" else "InvalidRegionId.NotFound"
    assert info.value.code == expected


def test_owner_id_is_a_stable_number() -> None:
    assert owner_id("1234567890123456") == 1234567890123456
    assert owner_id("default") == owner_id("default") != owner_id(OTHER)
    assert len(str(owner_id("default"))) == 16


def test_snapshot_is_json_and_matches_the_links() -> None:
    m = make_model()
    m.attach(ME, HZ, INST, VPC)
    snap = json.loads(json.dumps(m.snapshot()))
    assert snap["links"] == [
        {"InstanceId": "i-bp1elsewhere", "VpcId": VPC2},
        {"InstanceId": INST, "VpcId": VPC},
    ]
    assert snap["link_counts"][VPC] == 1
    assert snap["link_counts"]["vpc-bp1off"] == 0
    assert snap["attach_attempts"] == {INST: 1}
    assert snap["variant"] == "2018"
    assert "links=2" in repr(m)


# ---------------------------------------------------------------------------- errors, seeding
def test_model_error_message_and_status_come_from_the_catalog() -> None:
    # The model picks codes and messages; the HTTP layer picks the status per variant.
    err = ModelError("Abs.InvalidInstanceId.MalFormed")
    assert err.message == "The specified instance has already been linked to another VPC."
    assert http_status(err.code, "2018") == 400
    assert http_status(err.code, "current") == 403
    assert http_status("InvalidInstanceId.NotFound", "2018") == 404
    quota = ModelError("QuotaExceeded")
    assert (http_status(quota.code, "2018"), http_status(quota.code, "current")) == (403, 403)
    assert quota.message == "The maximum number of links in the specified VPC exceeds."
    custom = ModelError("Made.Up", "text")
    assert (custom.code, custom.message, http_status(custom.code, "2018")) == (
        "Made.Up",
        "text",
        400,
    )
    assert ModelError("Made.Up").message == "Made.Up"


def test_current_variant_explains_linked_elsewhere() -> None:
    m = make_model("current")
    with pytest.raises(ModelError) as info:
        m.attach(ME, HZ, "i-bp1elsewhere", VPC)
    assert "another VPC" in info.value.message


def test_constructor_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="variant"):
        EcsModel(variant="2019")
    with pytest.raises(ValueError, match="default_quota"):
        EcsModel(default_quota=-1)


def test_seeding_link_keeps_one_vpc_per_instance() -> None:
    m = make_model()
    with pytest.raises(ValueError, match="already linked"):
        m.link("i-bp1elsewhere", VPC)
    with pytest.raises(ValueError, match="unknown instance"):
        m.link("i-nope", VPC)
    with pytest.raises(ValueError, match="unknown VPC"):
        m.link(INST, "vpc-nope")
    m.link("i-bp1elsewhere", VPC2)  # the same link again is harmless
    assert m.link_count(VPC2) == 1


def test_views_are_read_only_and_regions_follow_entries() -> None:
    m = EcsModel()
    m.add_instance(Instance("i-a", "ap-southeast-1"))
    assert m.regions == {"ap-southeast-1"}
    with pytest.raises(TypeError):
        m.links["i-a"] = "vpc-x"  # type: ignore[index]


# ---------------------------------------------------------------------------- world files
def write_world(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "world.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


MINIMAL: dict[str, Any] = {
    "quota": 3,
    "regions": ["cn-beijing"],
    "instances": [
        {"InstanceId": "i-a", "RegionId": HZ},
        {"InstanceId": "i-b", "RegionId": HZ, "Status": "Stopped", "Owner": OTHER},
        {"InstanceId": "i-c", "RegionId": HZ, "InstanceNetworkType": "vpc", "Locked": True},
    ],
    "vpcs": [
        {"VpcId": "vpc-a", "RegionId": HZ, "Quota": 7},
        {"VpcId": "vpc-b", "RegionId": HZ, "ClassicLinkEnabled": False, "Comment": "off"},
    ],
    "links": [{"InstanceId": "i-a", "VpcId": "vpc-a"}],
}


def test_load_world_reads_every_field(tmp_path: Path) -> None:
    m = load_world(write_world(tmp_path, MINIMAL), variant="current")
    assert m.variant == "current"
    assert m.default_quota == 3
    assert m.regions == {"cn-beijing", HZ}
    assert m.instances["i-b"] == Instance("i-b", HZ, status="Stopped", owner=OTHER)
    assert m.instances["i-c"] == Instance("i-c", HZ, network_type="vpc", locked=True)
    assert m.vpcs["vpc-a"].quota == 7
    assert m.vpcs["vpc-b"].classic_link_enabled is False
    assert m.links == {"i-a": "vpc-a"}
    assert load_world(write_world(tmp_path, MINIMAL), default_quota=9).default_quota == 9
    assert load_world(write_world(tmp_path, {})).default_quota == 1000


def test_dump_and_save_round_trip(tmp_path: Path) -> None:
    m = load_world(write_world(tmp_path, MINIMAL))
    out = tmp_path / "out.json"
    save_world(m, out)
    again = load_world(out)
    assert dump_world(again) == dump_world(m)
    assert dump_world(m)["instances"][0] == {"InstanceId": "i-a", "RegionId": HZ}
    save_world(EcsModel(), out)
    assert dump_world(load_world(out)) == dump_world(EcsModel())


LIFECYCLE_WORLD: dict[str, Any] = {
    "instances": [
        {"InstanceId": "i-fin", "RegionId": HZ, "LockReasons": ["financial", "security"]},
        {"InstanceId": "i-old", "RegionId": HZ, "Locked": True},
        {"InstanceId": "i-zone", "RegionId": HZ, "ZoneId": "cn-hangzhou-h", "Status": "Stopped"},
        {"InstanceId": "i-inner", "RegionId": HZ, "InstanceNetworkType": "vpc", "VpcId": "vpc-b"},
        {"InstanceId": "i-theirs", "RegionId": HZ, "Owner": "1234567890123456"},
    ],
    "vpcs": [
        {"VpcId": "vpc-a", "RegionId": HZ, "ClassicLinkEnabled": False, "Quota": 2},
        {"VpcId": "vpc-b", "RegionId": HZ, "Status": "Pending", "CidrBlock": "10.0.0.0/8"},
    ],
}


def test_world_describes_the_lifecycle_fields(tmp_path: Path) -> None:
    m = load_world(write_world(tmp_path, LIFECYCLE_WORLD))
    inst = m.instances
    assert inst["i-fin"].lock_reasons == ("financial", "security")
    assert inst["i-old"].lock_reasons == (DEFAULT_LOCK_REASON,)
    assert (inst["i-zone"].zone_id, inst["i-zone"].status) == ("cn-hangzhou-h", "Stopped")
    assert (inst["i-fin"].zone_id, inst["i-inner"].vpc_id) == (f"{HZ}-a", "vpc-b")
    assert inst["i-theirs"].owner == "1234567890123456"
    vpc_a, vpc_b = m.vpcs["vpc-a"], m.vpcs["vpc-b"]
    assert (vpc_a.classic_link_enabled, vpc_a.quota, vpc_a.status) == (False, 2, "Available")
    assert (vpc_b.status, vpc_b.cidr_block) == ("Pending", "10.0.0.0/8")
    out = tmp_path / "out.json"
    save_world(m, out)
    assert dump_world(load_world(out)) == dump_world(m)
    dumped = {e["InstanceId"]: e for e in dump_world(m)["instances"]}
    assert dumped["i-old"]["LockReasons"] == ["security"]
    assert dumped["i-zone"]["ZoneId"] == "cn-hangzhou-h"


def broken(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(MINIMAL))
    for key, value in changes.items():
        data[key] = value
    return data


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([1, 2], "must be a JSON object"),
        (broken(instance=[]), "unknown top-level key(s) ['instance']"),
        (broken(quota=-1), "quota: quota must be a whole number"),
        (broken(quota=True), "quota must be a whole number"),
        (broken(regions="cn-hangzhou"), "regions: must be a list"),
        (broken(regions=[5]), "regions[0]: must be a string"),
        (broken(regions=["Hangzhou"]), "does not look like a region"),
        (broken(instances={}), "instances: must be a list"),
        (broken(instances=["i-a"]), "instances[0]: must be an object"),
        (broken(instances=[{"RegionId": HZ}]), "instances[0]: missing InstanceId"),
        (broken(instances=[{"InstanceId": "x-a", "RegionId": HZ}]), "must start with 'i-'"),
        (broken(instances=[{"InstanceId": "i-a"}]), "instances[0] (i-a): missing RegionId"),
        (
            broken(instances=[{"InstanceId": "i-a", "RegionId": HZ, "Status": "Runing"}]),
            "instances[0] (i-a): Status 'Runing' is not one of",
        ),
        (
            broken(instances=[{"InstanceId": "i-a", "RegionId": HZ, "InstanceNetworkType": "x"}]),
            "InstanceNetworkType 'x'",
        ),
        (
            broken(instances=[{"InstanceId": "i-a", "RegionId": HZ, "Locked": "yes"}]),
            "Locked must be true or false",
        ),
        (
            broken(instances=[{"InstanceId": "i-a", "RegionId": HZ, "Owner": ""}]),
            "Owner must be a non-empty string",
        ),
        (
            broken(instances=[{"InstanceId": "i-a", "RegionId": HZ, "status": "Running"}]),
            "instances[0] (i-a): unknown key(s) ['status']",
        ),
        (
            broken(instances=[MINIMAL["instances"][0], MINIMAL["instances"][0]]),
            "instances[1] (i-a): duplicate InstanceId",
        ),
        (broken(vpcs=[{"VpcId": "v-a", "RegionId": HZ}]), "vpcs[0] (v-a): VpcId 'v-a' must"),
        (broken(vpcs=[{"VpcId": "vpc-a", "RegionId": HZ, "Quota": 1.5}]), "Quota must be"),
        (
            broken(vpcs=[MINIMAL["vpcs"][0], MINIMAL["vpcs"][0]]),
            "vpcs[1] (vpc-a): duplicate VpcId",
        ),
        (broken(links=[{"InstanceId": "i-z", "VpcId": "vpc-a"}]), "links[0] (i-z): InstanceId"),
        (broken(links=[{"InstanceId": "i-a", "VpcId": "vpc-z"}]), "'vpc-z' is not in 'vpcs'"),
        (
            broken(links=[{"InstanceId": "i-a", "VpcId": "vpc-a"}] * 2),
            "links[1] (i-a): i-a is already linked to vpc-a",
        ),
        (broken(links=[{"InstanceId": "i-c", "VpcId": "vpc-a"}]), "not a classic instance"),
        (broken(links=[{"InstanceId": "i-b", "VpcId": "vpc-a"}]), "different accounts"),
        (broken(links=[{"InstanceId": "i-a"}]), "links[0] (i-a): missing VpcId"),
        (
            broken(instances=[{"InstanceId": "i-a", "RegionId": HZ, "LockReasons": "security"}]),
            "LockReasons must be a list of strings",
        ),
        (
            broken(instances=[{"InstanceId": "i-a", "RegionId": HZ, "LockReasons": ["Security"]}]),
            "LockReason 'Security' is not one of",
        ),
        (
            broken(
                instances=[{"InstanceId": "i-a", "RegionId": HZ, "LockReasons": ["refunded"] * 2}]
            ),
            "lists a reason twice",
        ),
        (
            broken(
                instances=[
                    {
                        "InstanceId": "i-a",
                        "RegionId": HZ,
                        "Locked": False,
                        "LockReasons": ["refunded"],
                    }
                ]
            ),
            "Locked is false but LockReasons are given",
        ),
        (
            broken(instances=[{"InstanceId": "i-a", "RegionId": HZ, "VpcId": "vpc-a"}]),
            "VpcId is for a VPC-type instance",
        ),
        (
            broken(vpcs=[{"VpcId": "vpc-a", "RegionId": HZ, "Status": "Gone"}]),
            "vpcs[0] (vpc-a): Status 'Gone' is not one of ['Available', 'Pending']",
        ),
        (
            broken(vpcs=[{"VpcId": "vpc-a", "RegionId": HZ, "CidrBlock": ""}]),
            "CidrBlock must be a non-empty string",
        ),
    ],
)
def test_world_errors_name_the_file_and_the_entry(tmp_path: Path, data: Any, fragment: str) -> None:
    path = write_world(tmp_path, data)
    with pytest.raises(InputError) as info:
        load_world(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)


def test_world_link_across_regions_is_refused() -> None:
    data = broken(
        vpcs=[{"VpcId": "vpc-a", "RegionId": SH}], links=[{"InstanceId": "i-a", "VpcId": "vpc-a"}]
    )
    with pytest.raises(InputError, match=r"<world>: links\[0\] \(i-a\): .* differ"):
        world_from_dict(data)


def test_world_file_not_json_or_missing(tmp_path: Path) -> None:
    path = write_world(tmp_path, '{\n  "quota": 3,\n  oops\n}')
    with pytest.raises(InputError) as info:
        load_world(path)
    assert (info.value.line, info.value.column) == (3, 3)
    assert str(info.value).startswith(f"{path}:3:3: not valid JSON")
    with pytest.raises(InputError, match="cannot read world file"):
        load_world(tmp_path / "absent.json")
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"comment": "\xe9"}')
    with pytest.raises(InputError, match="not UTF-8"):
        load_world(latin)


# ---------------------------------------------------------------------------- pairs CSV
def write_csv(tmp_path: Path, text: str, name: str = "pairs.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_world_from_pairs_makes_every_pair_attachable(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        f"RegionId,InstanceId,VpcId,Note\n{HZ},i-aa,vpc-a,x\n\n{SH},i-bb,vpc-b,y\n"
        f"{HZ},i-cc,vpc-a,z\n",
    )
    m = world_from_pairs(path, variant="current", default_quota=5)
    assert (m.variant, m.default_quota) == ("current", 5)
    assert m.instances["i-bb"] == Instance("i-bb", SH)
    assert m.vpcs["vpc-a"] == Vpc("vpc-a", HZ)
    assert m.regions == {HZ, SH}
    assert not m.links
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            m.attach(ME, row["RegionId"], row["InstanceId"], row["VpcId"])
    assert m.link_count("vpc-a") == 2


@pytest.mark.parametrize(
    "header", ["region_id,instance_id,vpc_id", " REGIONID , InstanceID ,VPCID"]
)
def test_world_from_pairs_takes_the_headers_a_run_takes(tmp_path: Path, header: str) -> None:
    m = world_from_pairs(write_csv(tmp_path, f"\ufeff{header}\n{HZ},i-aa,vpc-a\n"))
    assert set(m.instances) == {"i-aa"}
    assert m.instances["i-aa"].region_id == HZ


def test_world_from_pairs_holds_exactly_the_rows_a_run_sends(tmp_path: Path) -> None:
    """Malformed rows, and every row of an instance listed for two VPCs, add nothing."""
    path = write_csv(
        tmp_path,
        "VpcId,InstanceId,Extra\nvpc-a,i-aa,1\nvpc-a,bad,2\nnot-a-vpc,i-bb,3\n,,\n"
        "vpc-b,i-cc,4\nvpc-a,i-aa,dup\nvpc-c,i-dd,5\nvpc-d,i-dd,6\nvpc-a,i-a,short id\n",
    )
    m = world_from_pairs(path, default_region=SH)
    sent = {row.instance_id for row in read_pairs(path, SH) if isinstance(row, Row)}
    assert set(m.instances) == sent == {"i-aa", "i-cc"}
    assert set(m.vpcs) == {"vpc-a", "vpc-b"}
    assert m.vpcs["vpc-a"].region_id == SH
    assert m.regions == {SH}


def test_world_from_pairs_region_cell_overrides_default(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"RegionId,InstanceId,VpcId\n,i-aa,vpc-a\n{HZ},i-bb,vpc-b\n")
    m = world_from_pairs(path, default_region=SH)
    assert (m.instances["i-aa"].region_id, m.instances["i-bb"].region_id) == (SH, HZ)
    assert world_from_pairs(path).instances.keys() == {"i-bb"}  # no region for i-aa: skipped


def test_world_from_pairs_takes_every_region_a_run_takes(tmp_path: Path) -> None:
    # The world's own region pattern once wanted two letters before the first dash.
    path = write_csv(tmp_path, "RegionId,InstanceId,VpcId\nx9-lab-1,i-aa,vpc-a\n")
    assert world_from_pairs(path).instances["i-aa"].region_id == "x9-lab-1"
    world = broken(regions=["x9-lab-1"], instances=[], vpcs=[], links=[])
    assert load_world(write_world(tmp_path, world)).regions == {"x9-lab-1"}


# Files a run refuses (exit 2 before anything is sent); a world must refuse them alike.
REFUSED_PAIRS = {
    "names-without-id": "Region,Instance,Vpc\ncn-hangzhou,i-aa,vpc-a\n",
    "no-instance-column": "RegionId,VpcId\ncn-hangzhou,vpc-a\n",
    "no-region-column": "InstanceId,VpcId\ni-aa,vpc-a\n",
    "column-twice": "RegionId,InstanceId,VpcId,VpcId\ncn-hangzhou,i-aa,vpc-a,vpc-b\n",
    "no-header": "cn-hangzhou,i-aa,vpc-a\ncn-hangzhou,i-bb,vpc-b\n",
    "empty": "",
    "blank-lines": "\n \n",
    "quote-never-closed": (
        'RegionId,InstanceId,VpcId\ncn-hangzhou,"i-aa,vpc-a\ncn-hangzhou,i-bb,vpc-b\n'
    ),
    "nul-byte": "RegionId,InstanceId,VpcId\ncn-hangzhou,i-aa,vpc-a\x00\n",
}


@pytest.mark.parametrize("text", REFUSED_PAIRS.values(), ids=REFUSED_PAIRS.keys())
def test_world_from_pairs_refuses_what_a_run_refuses(tmp_path: Path, text: str) -> None:
    path = write_csv(tmp_path, text)
    with pytest.raises(InputError) as run_refusal:
        read_pairs(path)
    with pytest.raises(InputError) as world_refusal:
        world_from_pairs(path)
    assert str(world_refusal.value) == str(run_refusal.value)
    with pytest.raises(InputError) as built:
        build_world(WorldSpec(pairs=path))
    assert str(built.value) == str(run_refusal.value)


def test_world_from_pairs_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        world_from_pairs(tmp_path / "absent.csv")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"InstanceId,VpcId\n\xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        world_from_pairs(binary, default_region=HZ)


def test_build_world_from_a_file_a_csv_both_or_neither(tmp_path: Path) -> None:
    file = write_world(tmp_path, MINIMAL)
    pairs = write_csv(tmp_path, f"RegionId,InstanceId,VpcId\n{HZ},i-new,vpc-new\n")
    empty = build_world(WorldSpec(variant="current", quota=7))
    assert (empty.variant, empty.default_quota, empty.instances) == ("current", 7, {})
    from_file = build_world(WorldSpec(world=file))
    assert dump_world(from_file) == dump_world(load_world(file))
    from_csv = build_world(WorldSpec(pairs=pairs, quota=3))
    assert (set(from_csv.instances), from_csv.default_quota) == ({"i-new"}, 3)
    both = build_world(WorldSpec(world=file, pairs=pairs))
    assert set(both.instances) == set(from_file.instances) | {"i-new"}
    assert both.links == from_file.links


def test_the_file_comes_first_and_the_csv_fills_gaps(tmp_path: Path) -> None:
    # IDs a run accepts (two characters at least), so that the CSV rows are really read.
    world = load_world(
        write_world(
            tmp_path,
            {
                "instances": [
                    {"InstanceId": "i-aa", "RegionId": HZ},
                    {"InstanceId": "i-cc", "RegionId": HZ, "Locked": True},
                ],
                "vpcs": [
                    {"VpcId": "vpc-a", "RegionId": HZ},
                    {"VpcId": "vpc-b", "RegionId": HZ, "ClassicLinkEnabled": False},
                ],
                "links": [{"InstanceId": "i-aa", "VpcId": "vpc-a"}],
            },
        )
    )
    path = write_csv(
        tmp_path,
        f"RegionId,InstanceId,VpcId\n{HZ},i-cc,vpc-b\n{HZ},i-new,vpc-new\n{SH},i-aa,vpc-a\n",
    )
    m = world_from_pairs(path, world)
    assert m is world
    assert m.instances["i-cc"].locked is True  # the file's entry wins
    assert m.vpcs["vpc-b"].classic_link_enabled is False
    assert m.instances["i-aa"].region_id == HZ  # not moved to the CSV's region
    assert m.vpcs["vpc-a"].region_id == HZ
    assert m.instances["i-new"] == Instance("i-new", HZ)
    assert m.vpcs["vpc-new"] == Vpc("vpc-new", HZ)
    assert m.links == {"i-aa": "vpc-a"}


# ---------------------------------------------------------------------------- the samples
SAMPLE_ERRORS_2018 = {
    13: "InvalidInstanceId.NotBelong",
    24: "InvalidStatus.InstanceStatus",
    70: "InvalidStatus.InstanceLocked",
    86: "InvalidInstanceId.MalFormed",
    99: "QuotaExceeded",
    104: "QuotaExceeded",
    130: "QuotaExceeded",
    142: "QuotaExceeded",
    177: "OperationDenied",
    194: "Abs.InvalidInstanceId.MalFormed",
    206: "InvalidInstanceId.NotFound",
    208: "OperationDenied",
    221: "OperationDenied",
    243: "OperationDenied",
}


def run_sample(m: EcsModel) -> dict[int, str]:
    errors: dict[int, str] = {}
    with (SAMPLES / "pairs.csv").open(encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                m.attach(ME, row["RegionId"], row["InstanceId"], row["VpcId"])
            except ModelError as exc:
                errors[line] = exc.code
    return errors


def test_sample_pairs_shape() -> None:
    with (SAMPLES / "pairs.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["RegionId", "InstanceId", "VpcId", "Note"]
    assert len(rows) == 300
    assert {r["RegionId"] for r in rows} == {HZ, SH}
    assert len({r["VpcId"] for r in rows}) == 6
    assert len({r["InstanceId"] for r in rows}) == 300
    prefixes = {HZ: ("i-bp1", "vpc-bp1"), SH: ("i-uf6", "vpc-uf6")}
    for r in rows:
        inst, vpc = prefixes[r["RegionId"]]
        assert r["InstanceId"].startswith(inst)
        assert r["VpcId"].startswith(vpc)


@pytest.mark.parametrize("variant", VARIANTS)
def test_sample_world_hits_the_documented_errors(variant: str) -> None:
    m = load_world(SAMPLES / "world.json", variant=variant)
    expected = dict(SAMPLE_ERRORS_2018)
    if variant == "current":
        expected[194] = "OperationDenied"
    assert run_sample(m) == expected
    assert sum(m.repeat_attaches.values()) == 1  # line 266 was linked already
    assert m.link_count("vpc-bp1on8j1dybv7zxg02vdh") == 30


def test_sample_pairs_alone_all_succeed() -> None:
    m = world_from_pairs(SAMPLES / "pairs.csv")
    assert run_sample(m) == {}
    assert len(m.links) == 300


# ---------------------------------------------------------------------------- properties
ACCOUNTS = [ME, OTHER]
REGIONS = [HZ, SH, "cn-nowhere"]
INSTANCES = [f"i-h{k}" for k in range(8)] + ["i-s0", "i-s1", "i-vpc", "i-lock", "i-other", "i-x"]
VPCS = ["vpc-h1", "vpc-h2", "vpc-s1", "vpc-off", "vpc-other", "vpc-none", "bad-id"]


class LinkStateMachine(RuleBasedStateMachine):
    """Any sequence of attach and detach keeps the link state consistent and within quota."""

    def __init__(self) -> None:
        super().__init__()
        self.model = EcsModel()
        self.expected: dict[str, str] = {}

    @initialize(variant=st.sampled_from(VARIANTS), quota=st.integers(0, 4))
    def build(self, variant: str, quota: int) -> None:
        m = EcsModel(regions=[HZ, SH], default_quota=quota, variant=variant)
        for k in range(8):
            m.add_instance(Instance(f"i-h{k}", HZ, status="Stopped" if k % 3 == 0 else "Running"))
        m.add_instance(Instance("i-s0", SH))
        m.add_instance(Instance("i-s1", SH))
        m.add_instance(Instance("i-vpc", HZ, network_type="vpc"))
        m.add_instance(Instance("i-lock", HZ, locked=True))
        m.add_instance(Instance("i-other", HZ, owner=OTHER))
        m.add_vpc(Vpc("vpc-h1", HZ))
        m.add_vpc(Vpc("vpc-h2", HZ, quota=2))
        m.add_vpc(Vpc("vpc-s1", SH))
        m.add_vpc(Vpc("vpc-off", HZ, classic_link_enabled=False))
        m.add_vpc(Vpc("vpc-other", HZ, owner=OTHER))
        self.model = m

    @rule(
        account=st.sampled_from(ACCOUNTS),
        region=st.sampled_from(REGIONS),
        instance_id=st.sampled_from(INSTANCES),
        vpc_id=st.sampled_from(VPCS),
    )
    def attach(self, account: str, region: str, instance_id: str, vpc_id: str) -> None:
        before = dict(self.model.links)
        code = ""
        try:
            self.model.attach(account, region, instance_id, vpc_id)
        except ModelError as exc:
            code = exc.code
        if code:
            assert code in CATALOG
            assert dict(self.model.links) == before
            return
        self.expected[instance_id] = vpc_id
        assert before.get(instance_id) in (None, vpc_id)

    @rule(
        account=st.sampled_from(ACCOUNTS),
        region=st.sampled_from(REGIONS),
        instance_id=st.sampled_from(INSTANCES),
        vpc_id=st.sampled_from(VPCS),
    )
    def detach(self, account: str, region: str, instance_id: str, vpc_id: str) -> None:
        code = ""
        try:
            self.model.detach(account, region, instance_id, vpc_id)
        except ModelError as exc:
            code = exc.code
        if code:
            assert code in CATALOG
            return
        assert self.expected.pop(instance_id) == vpc_id

    @rule(instance_id=st.sampled_from(INSTANCES[:8]), vpc_id=st.sampled_from(["vpc-h1", "vpc-h2"]))
    def attach_likely(self, instance_id: str, vpc_id: str) -> None:
        """Random arguments rarely succeed; this rule keeps the VPCs near their quotas."""
        self.attach(ME, HZ, instance_id, vpc_id)

    @rule(data=st.data())
    def detach_linked(self, data: st.DataObject) -> None:
        """Detach a real link (random detaches almost never name one)."""
        if not self.expected:
            return
        instance_id = data.draw(st.sampled_from(sorted(self.expected)))
        inst = self.model.instances[instance_id]
        self.detach(inst.owner, inst.region_id, instance_id, self.expected[instance_id])

    @rule(instance_id=st.sampled_from(INSTANCES[:8]))
    def lock_toggle(self, instance_id: str) -> None:
        inst = self.model.instances[instance_id]
        inst.locked = not inst.locked

    @invariant()
    def links_match_the_oracle(self) -> None:
        assert dict(self.model.links) == self.expected

    @invariant()
    def counts_equal_links_and_stay_within_quota(self) -> None:
        m = self.model
        seen: set[str] = set()
        for vpc_id, vpc in m.vpcs.items():
            members = [i for i, v in m.links.items() if v == vpc_id]
            described = m.describe_links(vpc.owner, vpc.region_id, vpc_id=vpc_id)
            assert m.link_count(vpc_id) == len(members) == len(described)
            assert m.link_count(vpc_id) <= m.quota_of(vpc_id)
            ids = {i for i, _ in described}
            assert not ids & seen  # no instance in two VPCs
            seen |= ids
            for iid in ids:
                inst = m.instances[iid]
                assert inst.network_type == "classic"
                assert inst.region_id == vpc.region_id
                assert inst.owner == vpc.owner
        assert sum(m.snapshot()["link_counts"].values()) == len(m.links)


LinkStateMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
TestLinkState = LinkStateMachine.TestCase
