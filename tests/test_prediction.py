"""core/prediction.py alone: each check, the ledger replay, and properties (Hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bulk_attach.core.outcomes import Status
from bulk_attach.core.prediction import (
    ATTACHABLE_STATUSES,
    Forecast,
    ReadFailure,
    RowFacts,
    SeenInstance,
    SeenVpc,
    Variant,
)
from bulk_attach.core.rows import Row
from bulk_attach.emulator import model as emulator_model

HZ = "cn-hangzhou"


def row(n: int = 0, vpc: str = "vpc-a") -> Row:
    return Row(line=n + 2, region_id=HZ, instance_id=f"i-p{n}", vpc_id=vpc)


def facts(n: int = 0, **changes: object) -> RowFacts:
    base: dict[str, object] = {
        "searched": (HZ,),
        "instance": SeenInstance(f"i-p{n}", HZ, "Running", "classic"),
        "vpc": SeenVpc("vpc-a", HZ, True),
        "vpc_links": frozenset(),
        "linked_to": (),
    }
    base.update(changes)
    return RowFacts(**base)  # type: ignore[arg-type]


def test_attachable_statuses_are_the_emulators() -> None:
    assert emulator_model.ATTACHABLE_STATUSES == ATTACHABLE_STATUSES


def test_each_check_names_its_code_and_evidence() -> None:
    forecast = Forecast(variant=Variant.CURRENT)
    cases = {
        "vpc missing": (facts(vpc=None), Status.WOULD_FAIL, "InvalidVpcId.Malformed"),
        "absent": (facts(instance=None), Status.UNDETERMINED, ""),
        "vpc-type": (
            facts(instance=SeenInstance("i-p0", HZ, "Running", "vpc")),
            Status.WOULD_FAIL,
            "InvalidInstanceId.MalFormed",
        ),
        "regions": (
            facts(vpc=SeenVpc("vpc-a", "cn-shanghai", True)),
            Status.WOULD_FAIL,
            "InvalidInstanceId.LimitedRegion",
        ),
        "locked": (
            facts(instance=SeenInstance("i-p0", HZ, "Running", "classic", ("financial",))),
            Status.WOULD_FAIL,
            "InvalidStatus.InstanceLocked",
        ),
        "status": (
            facts(instance=SeenInstance("i-p0", HZ, "Starting", "classic")),
            Status.WOULD_FAIL,
            "InvalidStatus.InstanceStatus",
        ),
        "disabled": (facts(vpc=SeenVpc("vpc-a", HZ, False)), Status.WOULD_FAIL, "OperationDenied"),
        "elsewhere": (facts(linked_to=("vpc-z",)), Status.WOULD_FAIL, "OperationDenied"),
        "here already": (facts(vpc_links=frozenset({"i-p0"})), Status.ALREADY_LINKED, ""),
        "read failed": (
            facts(vpc_links=ReadFailure("InvalidRegionId.Malformed", "bad", permanent=True)),
            Status.WOULD_FAIL,
            "InvalidRegionId.Malformed",
        ),
        "read throttled": (
            facts(vpc_links=ReadFailure("Throttling", "slow down", permanent=False)),
            Status.UNDETERMINED,
            "",
        ),
        "fine": (facts(), Status.WOULD_ATTACH, ""),
    }
    for name, (given_facts, status, code) in cases.items():
        prediction = forecast.predict(row(), given_facts)
        assert (prediction.status, prediction.code) == (status, code), name
        assert prediction.message, name
    locked = forecast.predict(
        row(), facts(instance=SeenInstance("i-p0", HZ, "Running", "classic", ("financial",)))
    )
    assert "financial" in locked.message
    assert "vpc-z" in forecast.predict(row(), facts(linked_to=("vpc-z",))).message


def test_the_2018_codes_and_the_unread_lock_state_are_said() -> None:
    forecast = Forecast(variant=Variant.V2018)
    elsewhere = forecast.predict(row(), facts(linked_to=("vpc-z",)))
    assert elsewhere.code == "Abs.InvalidInstanceId.MalFormed"
    assert "OperationDenied" in elsewhere.message  # the other variant's code is named
    unread = forecast.predict(
        row(1), facts(1, instance=SeenInstance("i-p1", HZ, "Stopped", "classic", None))
    )
    assert unread.status is Status.WOULD_ATTACH
    assert "lock state not read" in unread.message


def test_the_ledger_and_the_service_quota_are_replayed() -> None:
    forecast = Forecast(vpc_quota=5, service_quota=3)
    got = [forecast.predict(row(n), facts(n)) for n in range(5)]
    assert [(p.status, p.code) for p in got] == [
        (Status.WOULD_ATTACH, ""),
        (Status.WOULD_ATTACH, ""),
        (Status.WOULD_ATTACH, ""),
        (Status.WOULD_FAIL, "QuotaExceeded"),  # the service answers; the VPC is then closed
        (Status.WOULD_SKIP, "QuotaExceeded"),
    ]
    assert forecast.headroom()["vpc-a"] == {
        "linked": 0,
        "linked_after": 3,
        "quota": 3,
        "headroom": 0,
    }


def test_a_vpc_named_under_two_regions_is_undetermined() -> None:
    prediction = Forecast().predict(row(), facts(vpc_regions=2))
    assert prediction.status is Status.UNDETERMINED
    assert "named under 2 regions" in prediction.message


def test_concurrency_contests_the_last_slots() -> None:
    failing = SeenInstance("i-p0", HZ, "Stopping", "classic")
    serial, parallel = Forecast(vpc_quota=1), Forecast(vpc_quota=1, concurrency=4)
    for forecast in (serial, parallel):
        assert forecast.predict(row(0), facts(0, instance=failing)).status is Status.WOULD_FAIL
    assert serial.predict(row(1), facts(1)).status is Status.WOULD_ATTACH
    contested = parallel.predict(row(1), facts(1))
    assert contested.status is Status.UNDETERMINED
    assert "in flight" in contested.message


outcomes = st.sampled_from(["fine", "failing", "absent", "linked"])


@given(
    st.lists(outcomes, max_size=30),
    st.integers(0, 5),
    st.integers(0, 6),
    st.integers(1, 4),
)
def test_never_more_attaches_than_room(
    kinds: list[str], linked: int, quota: int, concurrency: int
) -> None:
    """Whatever the rows, the plan never has more rows attach than the quota leaves room
    for, every row gets exactly one prediction, and the same input gives the same plan."""
    links = frozenset(f"i-l{n}" for n in range(linked)) | {
        f"i-p{n}" for n, kind in enumerate(kinds) if kind == "linked"
    }

    def plan() -> list[tuple[Status, str]]:
        forecast = Forecast(vpc_quota=quota, concurrency=concurrency)
        out = []
        for n, kind in enumerate(kinds):
            instance = {
                "fine": SeenInstance(f"i-p{n}", HZ, "Running", "classic"),
                "failing": SeenInstance(f"i-p{n}", HZ, "Pending", "classic"),
                "absent": None,
                "linked": SeenInstance(f"i-p{n}", HZ, "Running", "classic"),
            }[kind]
            prediction = forecast.predict(row(n), facts(n, instance=instance, vpc_links=links))
            out.append((prediction.status, prediction.code))
        room = forecast.headroom().get("vpc-a", {"headroom": 0})["headroom"]
        assert room >= 0
        return out

    first = plan()
    assert first == plan()
    assert len(first) == len(kinds)
    attached = sum(status is Status.WOULD_ATTACH for status, _ in first)
    assert attached <= max(0, quota - len(links))
    for (status, _), kind in zip(first, kinds, strict=True):
        if kind == "linked":
            assert status is Status.ALREADY_LINKED
