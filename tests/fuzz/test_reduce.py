"""Reducing a finding to a minimal reproducer, and adopting libFuzzer's own crash artifacts."""

from __future__ import annotations

from blockfmt.testing.atheris_fuzz import (
    FLAG_FIX_CHECKSUMS,
    adopt_artifacts,
    decode_input,
    encode_image,
    encoded_records,
    fix_layout_checksums,
)
from blockfmt.testing.fuzz import Limits, SparseBytes
from blockfmt.testing.reduce import reduce_findings, reduce_input

from .atheris_main import FORMATS
from .layouts import LAYOUTS, vhdx_layout
from .test_harness import DATA_OFFSET, FORMAT, LIMITS, buggy_host, buggy_seed

MiB = 1 << 20


def _noisy(behaviour: int) -> bytes:
    """A buggy image plus bytes that have nothing to do with its bug: the input a fuzzer leaves."""
    store = buggy_seed(behaviour).store.copy()
    for at in range(1, 6):
        store.write(b"noise" * 20, DATA_OFFSET + at * 8192)
    return encode_image(0, store)


def test_a_finding_is_reduced_to_what_breaks_the_invariant() -> None:
    data = _noisy(6)  # a repair that scribbles over guest data
    reduction = reduce_input(data, (FORMAT,), {}, limits=LIMITS, make_host=buggy_host, seconds=60)
    assert reduction.signature == ("reopen after repair", "blockfmt.testing.fuzz.InvariantBroken")
    assert (reduction.records_before, reduction.records_after) == (7, 1)  # header, hello, 5 noise
    assert reduction.bytes_after < 20 < reduction.bytes_before
    ((offset, header),) = encoded_records(reduction.data)
    assert offset == 0 and header.startswith(b"BUGGYFMT\x06")
    again = reduce_input(reduction.data, (FORMAT,), {}, limits=LIMITS, make_host=buggy_host)
    assert again.signature == reduction.signature and again.data == reduction.data


def test_a_hang_is_reduced_as_a_hang() -> None:
    quick = Limits(seconds_per_case=0.3, memory=LIMITS.memory)
    reduction = reduce_input(_noisy(2), (FORMAT,), {}, limits=quick, make_host=buggy_host, seconds=120)
    assert reduction.signature == ("open read-only", "hang")
    assert reduction.records_after == 1


def test_an_input_that_passes_is_not_reduced() -> None:
    data = _noisy(0)
    reduction = reduce_input(data, (FORMAT,), {}, limits=LIMITS, make_host=buggy_host)
    assert reduction.signature is None and reduction.data == data and reduction.tries == 1
    assert reduction.report() == "does not fail under the replay bounds: not reduced"


def test_findings_reduce_once_per_bug(tmp_path) -> None:
    (tmp_path / "a.buggy.in").write_bytes(_noisy(6))
    store = buggy_seed(6).store.copy()
    store.write(b"other noise", DATA_OFFSET + 3 * MiB // 64)
    (tmp_path / "b.buggy.in").write_bytes(encode_image(0, store))
    (tmp_path / "c.buggy.in").write_bytes(_noisy(0))
    names = ["a.buggy.in", "b.buggy.in", "c.buggy.in"]
    lines = reduce_findings(tmp_path, names, (FORMAT,), {}, seconds=120, limits=LIMITS, make_host=buggy_host)
    assert lines[0].endswith("stored as a-min.buggy.in")
    assert lines[1].endswith("the same as a stored reduction")
    assert lines[2] == "c.buggy.in: does not fail under the replay bounds: not reduced"
    assert sorted(p.name for p in tmp_path.glob("*-min*")) == ["a-min.buggy.in", "a-min.txt"]
    assert (tmp_path / "a-min.txt").read_text().startswith("stage: reopen after repair\n")


def test_a_libfuzzer_artifact_becomes_a_stored_input(tmp_path) -> None:
    import blockfmt

    path = tmp_path / "t.vhdx"
    blockfmt.create(path, "vhdx", 8 * MiB, block_size=MiB)
    damaged = bytearray(path.read_bytes())
    damaged[64 * 1024 + 8] ^= 1  # header 1's sequence number: its CRC no longer matches
    raw = encode_image(FORMATS.index("vhdx"), SparseBytes.from_bytes(damaged), fix_checksums=True)
    (tmp_path / "crash-0123abcd").write_bytes(raw)
    names = adopt_artifacts(tmp_path, ["x.vdi.in", "crash-0123abcd"], FORMATS, LAYOUTS)
    assert names[0] == "x.vdi.in" and names[1].startswith("atheris-crash-") and names[1].endswith(".vhdx.in")
    assert not (tmp_path / "crash-0123abcd").exists()
    fmt, store, fix = decode_input((tmp_path / names[1]).read_bytes(), FORMATS)
    expected = SparseBytes.from_bytes(damaged)
    fix_layout_checksums(expected, vhdx_layout(expected), "vhdx")
    assert (fmt, fix) == ("vhdx", False)
    assert store.to_bytes() == expected.to_bytes() != bytes(damaged)
    note = (tmp_path / names[1].replace(".vhdx.in", ".txt")).read_text()
    assert note == "stage: libFuzzer crash (the whole fuzzing process)\n"
    assert raw[1] == FLAG_FIX_CHECKSUMS
