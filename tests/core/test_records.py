"""blockfmt.records: the dataclass behaviour the start-up path's value classes keep."""

from __future__ import annotations

import copy
import pickle

import pytest

from blockfmt.driver import CheckResult, Extent, FormatSpec


def test_frozen_record_equality_hash_and_repr_follow_the_fields() -> None:
    extent = Extent(0, 512, True, False)
    assert extent == Extent(0, 512, data=True, zero=False, host_offset=None, present=True, depth=0)
    assert extent != Extent(0, 512, True, False, depth=1)
    assert extent != (0, 512, True, False, None, True, 0)  # a record is not a tuple
    assert hash(extent) == hash(Extent(0, 512, True, False))
    assert len({extent, Extent(0, 512, True, False)}) == 1
    assert repr(extent) == (
        "Extent(offset=0, length=512, data=True, zero=False, host_offset=None, present=True, depth=0)"
    )


def test_frozen_record_refuses_assignment_and_deletion() -> None:
    spec = FormatSpec("x", "a format")
    with pytest.raises(AttributeError, match="cannot assign to field 'name'"):
        spec.name = "y"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="cannot delete field 'name'"):
        del spec.name  # type: ignore[misc]
    with pytest.raises(AttributeError):
        spec.extra = 1  # type: ignore[attr-defined]
    assert spec.name == "x"


def test_replace_makes_a_changed_copy_and_rejects_unknown_fields() -> None:
    spec = FormatSpec("x", "a format", data_only=True)
    named = spec.replace(plugin_name="p")
    assert named == FormatSpec("x", "a format", data_only=True, plugin_name="p")
    assert spec.plugin_name == ""
    with pytest.raises(TypeError):
        spec.replace(colour="red")


def test_records_survive_copy_and_pickle() -> None:
    extent = Extent(4096, 512, False, True, None, False, 2)
    result = CheckResult(corruptions=1, messages=["ERROR x"])
    for value in (extent, result):
        assert copy.copy(value) == value
        assert copy.deepcopy(value) == value
        assert pickle.loads(pickle.dumps(value)) == value


def test_mutable_record_is_unhashable_and_gets_fresh_defaults() -> None:
    first, second = CheckResult(), CheckResult()
    first.messages.append("ERROR x")
    first.leaks += 1
    assert second.messages == [] and second.leaks == 0
    assert first != second
    with pytest.raises(TypeError):
        hash(first)
