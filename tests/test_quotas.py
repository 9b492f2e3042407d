"""The per-VPC quota ledger: linked + in flight never passes the quota."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulk_attach.core.quotas import QuotaLedger, UnknownVpcError


def test_quota_boundary_998_linked_five_rows_two_fit() -> None:
    ledger = QuotaLedger(1000)
    ledger.set_linked("vpc-a", 998)
    granted = [ledger.try_reserve("vpc-a") for _ in range(5)]
    assert granted == [True, True, False, False, False]
    assert ledger.in_flight("vpc-a") == 2
    assert ledger.headroom("vpc-a") == 0
    ledger.commit("vpc-a")
    ledger.release("vpc-a")
    assert ledger.linked("vpc-a") == 999
    assert ledger.in_flight("vpc-a") == 0
    assert ledger.try_reserve("vpc-a")
    assert not ledger.try_reserve("vpc-a")


def test_repr_shows_usage() -> None:
    ledger = QuotaLedger(1000)
    ledger.set_linked("vpc-b", 0)
    ledger.set_linked("vpc-a", 998)
    ledger.try_reserve("vpc-a")
    for _ in range(3):
        ledger.try_reserve("vpc-b")
    assert repr(ledger) == "<QuotaLedger vpc-a 998+1/1000, vpc-b 0+3/1000>"
    assert repr(QuotaLedger(5)) == "<QuotaLedger empty, quota 5>"


def test_unknown_vpc_must_be_read_first() -> None:
    ledger = QuotaLedger(10)
    assert not ledger.is_known("vpc-x")
    with pytest.raises(UnknownVpcError):
        ledger.try_reserve("vpc-x")
    with pytest.raises(KeyError):
        ledger.headroom("vpc-x")


def test_commit_or_release_without_reservation_is_a_bug() -> None:
    ledger = QuotaLedger(10)
    ledger.set_linked("vpc-a", 0)
    with pytest.raises(ValueError, match="commit"):
        ledger.commit("vpc-a")
    with pytest.raises(ValueError, match="release"):
        ledger.release("vpc-a")


def test_mark_full_closes_the_vpc_even_after_releases() -> None:
    ledger = QuotaLedger(1000)
    ledger.set_linked("vpc-a", 10)
    assert ledger.try_reserve("vpc-a")
    assert ledger.try_reserve("vpc-a")
    ledger.mark_full("vpc-a")
    # The count stays what the run knows; the service's quota is what it holds.
    assert ledger.linked("vpc-a") == 10
    assert ledger.quota_of("vpc-a") == 12
    ledger.release("vpc-a")  # the row that met QuotaExceeded gives its slot back
    assert ledger.quota_of("vpc-a") == 11
    assert ledger.headroom("vpc-a") == 0
    assert ledger.is_full("vpc-a")
    assert not ledger.try_reserve("vpc-a")
    ledger.commit("vpc-a")  # the other one still in flight succeeds
    assert ledger.linked("vpc-a") == 11
    assert not ledger.try_reserve("vpc-a")
    assert "full" in repr(ledger)


def test_per_vpc_quota_and_snapshot() -> None:
    ledger = QuotaLedger(1000)
    ledger.set_linked("vpc-small", 1, quota=2)
    assert ledger.try_reserve("vpc-small")
    assert not ledger.try_reserve("vpc-small")
    assert ledger.snapshot() == {
        "vpc-small": {"linked": 1, "in_flight": 1, "quota": 2, "headroom": 0}
    }
    assert ledger.quota_of("vpc-small") == 2
    assert len(ledger) == 1


def test_already_over_quota_reserves_nothing() -> None:
    ledger = QuotaLedger(5)
    ledger.set_linked("vpc-a", 7)
    assert not ledger.try_reserve("vpc-a")
    assert ledger.headroom("vpc-a") == 0


def test_negative_values_are_refused() -> None:
    with pytest.raises(ValueError, match="quota must not be negative"):
        QuotaLedger(-1)
    with pytest.raises(ValueError, match="linked must not be negative"):
        QuotaLedger(1).set_linked("vpc-a", -1)


VPCS = ["vpc-a", "vpc-b", "vpc-c"]
operations = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "commit", "release", "full", "set"]),
        st.sampled_from(VPCS),
        st.integers(0, 12),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(quota=st.integers(0, 10), ops=operations)
def test_never_exceeds_quota_under_any_sequence(
    quota: int, ops: list[tuple[str, str, int]]
) -> None:
    ledger = QuotaLedger(quota)
    model_in_flight = dict.fromkeys(VPCS, 0)
    for vpc in VPCS:
        ledger.set_linked(vpc, 0)
    for op, vpc, n in ops:
        if op == "reserve":
            before = ledger.linked(vpc) + ledger.in_flight(vpc)
            granted = ledger.try_reserve(vpc)
            if granted:
                model_in_flight[vpc] += 1
                # A slot is granted only while linked + in flight < quota.
                assert before < quota
                assert ledger.linked(vpc) + ledger.in_flight(vpc) <= quota
        elif op in ("commit", "release"):
            if model_in_flight[vpc] == 0:
                with pytest.raises(ValueError, match="without a reservation"):
                    getattr(ledger, op)(vpc)
            else:
                getattr(ledger, op)(vpc)
                model_in_flight[vpc] -= 1
        elif op == "full":
            ledger.mark_full(vpc)
            assert not ledger.try_reserve(vpc)
        else:
            ledger.set_linked(vpc, n)
        assert ledger.in_flight(vpc) == model_in_flight[vpc]
        assert 0 <= ledger.headroom(vpc) <= quota
