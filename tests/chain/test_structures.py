"""The pure parts of differencing VHDX: locator paths mapped to this host, and sector bitmap bits."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blockfmt.errors import CorruptImageError
from blockfmt_vhdx.constants import VHDX_PARENT_LOCATOR_TYPE
from blockfmt_vhdx.parent_locator import ParentLink, build_locator, windows_path_candidates
from blockfmt_vhdx.sector_bitmap import bit_runs, set_bits
from blockfmt_vhdx.structs import ParentLocator

CHILD_DIR = "/vms/disk"


@pytest.mark.parametrize(
    ("stored", "candidates"),
    [
        (".\\base.vhdx", ["/vms/disk/base.vhdx"]),
        ("..\\Virtual Hard Disks\\base.vhdx", ["/vms/Virtual Hard Disks/base.vhdx"]),
        ("sub/base.vhdx", ["/vms/disk/sub/base.vhdx"]),
        ("C:\\VMs\\base.vhdx", ["/VMs/base.vhdx", "/vms/disk/base.vhdx"]),
        ("\\\\?\\C:\\VMs\\base.vhdx", ["/VMs/base.vhdx", "/vms/disk/base.vhdx"]),
        (
            "\\\\?\\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\\Hyper-V\\base.vhdx",
            ["/Hyper-V/base.vhdx", "/vms/disk/base.vhdx"],
        ),
        ("\\\\server\\share\\base.vhdx", ["/base.vhdx", "/vms/disk/base.vhdx"]),
        ("", []),
    ],
)
def test_windows_paths_map_to_host_candidates(stored, candidates):
    assert windows_path_candidates(stored, CHILD_DIR) == candidates


def test_locator_round_trip_and_candidate_order():
    guid = uuid.uuid4()
    link = ParentLink.from_locator(ParentLocator.parse(build_locator(guid, "../base.vhdx").pack()))
    assert link.linkages == (guid,)
    assert link.paths == {"relative_path": "..\\base.vhdx"}
    assert link.display_name == "../base.vhdx"
    full = ParentLocator(
        VHDX_PARENT_LOCATOR_TYPE,
        (
            ("parent_linkage", f"{{{guid}}}"),
            ("parent_linkage2", str(uuid.UUID(int=5))),
            ("absolute_win32_path", "D:\\x\\b.vhdx"),
            ("relative_path", ".\\b.vhdx"),
        ),
    )
    link = ParentLink.from_locator(full)
    assert link.linkages == (guid, uuid.UUID(int=5))
    assert link.candidates(CHILD_DIR) == ("/vms/disk/b.vhdx", "/x/b.vhdx")
    assert link.display_name == "b.vhdx"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ((("relative_path", "a.vhdx"),), "VHDX parent locator has no parent_linkage"),
        (
            (("parent_linkage", "{nope}"), ("relative_path", "a")),
            "VHDX parent locator parent_linkage '{nope}' is not a GUID",
        ),
        ((("parent_linkage", str(uuid.UUID(int=1))),), "VHDX parent locator names no parent path"),
    ],
)
def test_bad_locators_are_corrupt(entries, message):
    with pytest.raises(CorruptImageError) as info:
        ParentLink.from_locator(ParentLocator(VHDX_PARENT_LOCATOR_TYPE, entries))
    assert str(info.value) == message
    with pytest.raises(CorruptImageError, match="unknown type"):
        ParentLink.from_locator(ParentLocator(uuid.UUID(int=7), entries))


@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 60)), max_size=6),
    st.integers(0, 250),
    st.integers(1, 40),
)
def test_set_bits_and_bit_runs_agree_with_one_bit_at_a_time(ranges, start, count):
    bitmap = bytearray(40)
    reference = [False] * 320
    for first, n in ranges:
        n = min(n, 320 - first)
        lo, hi = set_bits(bitmap, first, n)
        assert (lo, hi) == (first // 8, -(-(first + n) // 8))
        reference[first : first + n] = [True] * n
    assert all(bool(bitmap[i // 8] >> (i % 8) & 1) == reference[i] for i in range(320))
    count = min(count, 320 - start)
    runs = list(bit_runs(bitmap, start, count))
    assert sum(n for _, _, n in runs) == count
    for is_set, first, n in runs:
        assert reference[first : first + n] == [is_set] * n
