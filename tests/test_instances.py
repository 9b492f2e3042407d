"""The compact index of first rows agrees with the plain dict it replaced."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulk_attach.core.instances import FirstRow, InstanceIndex


def reference(rows: list[tuple[str, int]]) -> tuple[dict[str, FirstRow], int]:
    """The dict-of-strings model: first line and target, the first conflicting row."""
    first: dict[str, tuple[int, int]] = {}
    conflict: dict[str, tuple[int, int]] = {}
    repeats = 0
    for line, (instance, target) in enumerate(rows, start=2):
        if instance not in first:
            first[instance] = (line, target)
            continue
        repeats += 1
        if instance not in conflict and target != first[instance][1]:
            conflict[instance] = (line, target)
    return {i: FirstRow(*first[i], conflict.get(i)) for i in first}, repeats


rows_strategy = st.lists(
    st.tuples(st.sampled_from([f"i-{n}" for n in range(12)]), st.integers(0, 3)), max_size=60
)


@given(rows=rows_strategy)
def test_the_index_answers_as_a_dict_would(rows: list[tuple[str, int]]) -> None:
    index = InstanceIndex()
    for line, (instance, target) in enumerate(rows, start=2):
        index.add(instance, line, target)
    index.freeze()
    expected, repeats = reference(rows)
    assert len(index) == len(expected)
    assert index.repeats == repeats
    assert index.conflicting == sum(1 for f in expected.values() if f.conflict is not None)
    for instance, first in expected.items():
        assert index.first(instance) == first


def test_an_unknown_instance_is_a_key_error_and_a_frozen_index_takes_no_more() -> None:
    index = InstanceIndex()
    index.add("i-1", 2, 0)
    index.freeze()
    with pytest.raises(KeyError):
        index.first("i-2")
    with pytest.raises(RuntimeError):
        index.add("i-3", 3, 0)
    assert "1 frozen" in repr(index)


def test_lines_and_targets_beyond_32_bits_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bits"):
        InstanceIndex().add("i-1", 1 << 32, 0)
