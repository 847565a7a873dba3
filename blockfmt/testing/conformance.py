"""A conformance suite every format plugin can run against itself.

Like fsspec's abstract tests: subclass :class:`AbstractFormatTests` in your test suite, override
the required fixture ``format_name``, and override capability fixtures where your format differs
from the defaults. Tests consult the capabilities instead of skipping blindly, so a format that
says it cannot write is still checked to *refuse* writes properly::

    import pytest
    from blockfmt.testing.conformance import AbstractFormatTests

    class TestMyFormat(AbstractFormatTests):
        @pytest.fixture
        def format_name(self):
            return "myfmt"

        @pytest.fixture
        def supports_check(self):
            return False

The plugins are found through the ``blockfmt.formats`` entry points (the ``blockfmt_host``
fixture of :mod:`blockfmt.pytest_plugin`), exactly as an application sees them. What is checked:
the hook contract (probe claims the format's own images and no other format's; open, read, write,
create and check through the host; a sane :class:`~blockfmt.driver.FormatSpec`; block status
covering a range exactly), hostile input (truncated files, garbage headers: only
:class:`~blockfmt.errors.BlockFormatError` may escape), and round trips through raw and, for
formats QEMU knows, through ``qemu-img``/``qemu-io`` (tests marked ``qemu``). A test that cannot
run for the format (no writes, unknown to QEMU) is reported as skipped, with the reason.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import blockfmt
from blockfmt.driver import FormatSpec
from blockfmt.errors import (
    BlockFormatError,
    OutOfRangeError,
    ReadOnlyError,
    UnsupportedOperationError,
)
from blockfmt.host import PROBE_SIZE, Host
from blockfmt.testing.bytes_diff import describe_byte_difference

__all__ = ["AbstractFormatTests", "FormatFixtures", "assert_same_bytes"]

MiB = 1 << 20
#: create-option types a FormatSpec may use (QEMU's QemuOptType names)
OPTION_TYPES = frozenset({"size", "bool", "number", "string"})
#: file lengths a truncated image is cut to (beyond these, every quarter of the file)
TRUNCATION_POINTS = (0, 1, 511, 512, 4096, 65536, 1 * MiB)
#: seeds of the garbage written over image headers
GARBAGE_SEEDS = (1, 2, 3)
_MUST_OVERRIDE = "This fixture must be overridden in derived classes"

ImageFactory = Callable[[Path, int], Path]


class FormatFixtures:
    """The fixtures the suite needs; override ``format_name`` and any capability that differs."""

    # -- required ------------------------------------------------------------------

    @pytest.fixture
    def format_name(self) -> str:
        """The format under test, as the plugin's FormatSpec names it."""
        raise NotImplementedError(_MUST_OVERRIDE)

    # -- how to make images ------------------------------------------------------------

    @pytest.fixture
    def host(self, blockfmt_host: Host) -> Host:
        """The host the suite goes through; by default every installed entry-point plugin."""
        return blockfmt_host

    @pytest.fixture
    def create_options(self) -> dict[str, Any]:
        """Create options used for every image the suite makes."""
        return {}

    @pytest.fixture
    def create_image(
        self, format_name: str, host: Host, create_options: dict[str, Any], supports_create: bool
    ) -> ImageFactory:
        """``create_image(path, size) -> path``: a new, empty image. Override for formats without create."""
        if not supports_create:
            raise NotImplementedError("formats without create must override the create_image fixture")

        def create(path: Path, size: int) -> Path:
            blockfmt.create(path, format_name, size, host=host, **create_options)
            return path

        return create

    @pytest.fixture
    def image_size(self) -> int:
        """Virtual size of the suite's images: a few blocks of most formats."""
        return 4 * MiB

    @pytest.fixture
    def image(self, create_image: ImageFactory, tmp_path: Path, format_name: str, image_size: int) -> Path:
        """One fresh image of the format."""
        return create_image(tmp_path / f"conformance.{format_name}", image_size)

    # -- capabilities --------------------------------------------------------------------

    @pytest.fixture
    def supports_create(self) -> bool:
        return True

    @pytest.fixture
    def supports_write(self) -> bool:
        return True

    @pytest.fixture
    def supports_check(self) -> bool:
        return True

    @pytest.fixture
    def probe_fallback(self) -> bool:
        """True for a catch-all format (raw) that claims every file at the lowest score."""
        return False

    @pytest.fixture
    def sector_size(self) -> int:
        """The request granularity the format is tested at (unaligned requests are tested too)."""
        return 512

    @pytest.fixture
    def qemu_format(self, format_name: str) -> str | None:
        """The format's name in QEMU, or None when QEMU does not know it (skips the qemu round trip)."""
        return format_name if format_name in ("raw", "vhdx", "vdi", "qcow2", "vpc", "vmdk") else None


def assert_same_bytes(actual: bytes, expected: bytes, what: str) -> None:
    """Fail with *what* and the first differing offset, never with a diff of the whole buffers."""
    if actual != expected:
        pytest.fail(f"{what}: {describe_byte_difference(actual, expected)}", pytrace=False)


def _pattern(length: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(length)


def _requests(size: int, sector: int) -> list[tuple[int, int]]:
    """Requests that are aligned, unaligned, cross the middle, and touch both ends of the disk."""
    middle = size // 2
    return [
        (0, sector),
        (sector + 3, 2 * sector + 5),
        (middle - sector - 7, 2 * sector + 11),
        (middle - MiB // 2 + 1, MiB + 3),
        (size - sector, sector),
        (size - 1, 1),
    ]


class AbstractFormatTests(FormatFixtures):
    """The conformance tests. Every assertion names the contract it checks."""

    # -- the FormatSpec -----------------------------------------------------------------

    def test_spec_is_registered_and_sane(self, host: Host, format_name: str) -> None:
        assert format_name in host.formats, (
            f"no installed plugin provides format {format_name!r} (known: {sorted(host.formats)}): "
            "is blockfmt_formats implemented and the entry point registered?"
        )
        spec: FormatSpec = host.formats[format_name]
        assert spec.name == format_name
        assert spec.plugin_name, "FormatSpec has no plugin name: it was not registered through the host"
        assert spec.description.strip(), f"FormatSpec of {format_name!r} has no description"
        names = [o.name for o in spec.create_options]
        assert len(names) == len(set(names)), f"duplicate create options in {names}"
        if names:
            assert names[0] == "size", f"create options must start with 'size' (qemu-img order), got {names}"
        blockdev = [o.blockdev_name for o in spec.create_options if o.blockdev_name]
        assert len(blockdev) == len(set(blockdev)), f"duplicate blockdev names in {blockdev}"
        for option in spec.create_options:
            assert option.type in OPTION_TYPES, f"option {option.name!r} has unknown type {option.type!r}"

    # -- probing ------------------------------------------------------------------------

    def test_probe_claims_its_own_image(self, host: Host, image: Path, format_name: str) -> None:
        got = blockfmt.probe(image, host=host)
        assert got == format_name, f"probe of a fresh {format_name} image answered {got!r}"

    def test_probe_leaves_other_formats_alone(
        self, host: Host, tmp_path: Path, format_name: str, probe_fallback: bool
    ) -> None:
        """Images of every other installed format, and plain data, are not claimed."""
        foreign: dict[str, bytes] = {"random data": _pattern(PROBE_SIZE, 7)}
        for other in sorted(host.formats):
            if other == format_name:
                continue
            path = tmp_path / f"foreign.{other}"
            try:
                blockfmt.create(path, other, 4 * MiB, host=host)
            except BlockFormatError:
                continue  # that format cannot create; nothing to probe
            foreign[f"a {other} image"] = path.read_bytes()[:PROBE_SIZE]
        for what, head in foreign.items():
            answers = [a for a in host.pm.hook.blockfmt_probe(head=head, filename="x") if a]
            ours = [score for name, score in answers if name == format_name]
            if probe_fallback:
                assert all(score == 1 for score in ours), f"fallback format claims {what} with score {ours}"
            else:
                assert not ours, f"probe claims {what} as {format_name} (score {ours}): it is not its image"

    def test_probe_answers_are_well_formed(self, host: Host, image: Path) -> None:
        head = image.read_bytes()[:PROBE_SIZE]
        for answer in host.pm.hook.blockfmt_probe(head=head, filename=str(image)):
            if answer is None:
                continue
            name, score = answer
            assert name in host.formats, f"probe answered unknown format {name!r}"
            assert isinstance(score, int) and 1 <= score <= 100, f"probe score {score!r} is not in 1..100"

    # -- open and read ------------------------------------------------------------------

    def test_fresh_image_has_its_size_and_reads_zeros(
        self, host: Host, image: Path, format_name: str, image_size: int
    ) -> None:
        with blockfmt.open(image, format_name, host=host) as img:
            assert img.size == image_size, f"created {image_size} bytes, open reports {img.size}"
            assert_same_bytes(
                img.read_at(0, image_size), bytes(image_size), "a fresh image must read as zeros"
            )

    def test_out_of_range_requests_are_refused(self, host: Host, image: Path, format_name: str) -> None:
        with blockfmt.open(image, format_name, host=host) as img:
            with pytest.raises(OutOfRangeError):
                img.read_at(img.size - 1, 2)

    def test_read_only_image_refuses_writes(self, host: Host, image: Path, format_name: str) -> None:
        with blockfmt.open(image, format_name, host=host) as img, pytest.raises(ReadOnlyError):
            img.write_at(0, b"x")

    # -- write ----------------------------------------------------------------------------

    def test_write_read_back_and_after_reopen(
        self, host: Host, image: Path, format_name: str, supports_write: bool, sector_size: int
    ) -> None:
        with blockfmt.open(image, format_name, read_only=False, host=host) as img:
            size = img.size
            if not supports_write:
                with pytest.raises(BlockFormatError):
                    img.write_at(0, b"x" * sector_size)
                return
            expected = bytearray(size)
            for seed, (offset, length) in enumerate(_requests(size, sector_size)):
                data = _pattern(length, seed)
                img.write_at(offset, data)
                expected[offset : offset + length] = data
                assert_same_bytes(
                    img.read_at(offset, length), data, f"read after write at {offset}+{length} differs"
                )
            assert_same_bytes(img.read_at(0, size), expected, "the whole disk differs from what was written")
        with blockfmt.open(image, format_name, host=host) as img:
            assert_same_bytes(img.read_at(0, size), expected, "data written did not survive close and reopen")

    def test_write_zeroes_reads_zeros(
        self, host: Host, image: Path, format_name: str, supports_write: bool, sector_size: int
    ) -> None:
        if not supports_write:
            pytest.skip(f"{format_name} does not write (supports_write is False)")
        with blockfmt.open(image, format_name, read_only=False, host=host) as img:
            img.write_at(0, _pattern(img.size, 11))
            for unmap in (False, True):
                offset, length = (sector_size + 1, MiB) if unmap else (img.size // 2 - 5, MiB + 9)
                img.write_zeroes(offset, length, unmap=unmap)
                assert_same_bytes(
                    img.read_at(offset, length), bytes(length), f"write_zeroes(unmap={unmap}) left data"
                )

    # -- block status ------------------------------------------------------------------------

    def test_block_status_covers_the_range_exactly(
        self, host: Host, image: Path, format_name: str, supports_write: bool, sector_size: int
    ) -> None:
        with blockfmt.open(image, format_name, read_only=not supports_write, host=host) as img:
            if supports_write:
                img.write_at(img.size // 2 + 3, b"\x01" * (sector_size * 3))
            for offset, length in [(0, img.size), *_requests(img.size, sector_size)]:
                extents = list(img.driver.block_status(offset, length))
                assert extents, f"block_status({offset}, {length}) returned nothing"
                position = offset
                for ext in extents:
                    assert ext.offset == position, (
                        f"block_status({offset}, {length}): extent at {ext.offset}, expected {position} "
                        f"(gap or overlap) in {extents}"
                    )
                    assert ext.length > 0, f"empty extent in {extents}"
                    position += ext.length
                assert position == offset + length, (
                    f"block_status({offset}, {length}) covers up to {position}, not {offset + length}"
                )

    def test_zero_extents_read_as_zeros(self, host: Host, image: Path, format_name: str) -> None:
        with blockfmt.open(image, format_name, host=host) as img:
            for ext in img.map():
                if ext.zero:
                    assert_same_bytes(
                        img.read_at(ext.offset, ext.length), bytes(ext.length), f"{ext} is not zero"
                    )

    # -- check -----------------------------------------------------------------------------

    def test_check_of_a_fresh_image(
        self, host: Host, image: Path, format_name: str, supports_check: bool
    ) -> None:
        with blockfmt.open(image, format_name, host=host) as img:
            if not supports_check:
                with pytest.raises(UnsupportedOperationError):
                    img.check()
                return
            result = img.check()
            assert result.clean, f"check of a fresh image found problems: {result}"

    # -- hostile input ---------------------------------------------------------------------

    def _open_and_read_all(self, host: Host, path: Path, format_name: str) -> None:
        """Open and read everything; only BlockFormatError may escape."""
        try:
            with blockfmt.open(path, format_name, host=host) as img:
                img.info()
                step = max(img.size // 8, 1)
                for offset in range(0, img.size, step):
                    img.read_at(offset, min(step, img.size - offset, MiB))
                list(img.map())
        except BlockFormatError:
            pass

    def test_truncated_file_gives_block_format_error_only(
        self, host: Host, image: Path, format_name: str, tmp_path: Path
    ) -> None:
        original = image.read_bytes()
        points = {p for p in TRUNCATION_POINTS if p < len(original)}
        points |= {len(original) * q // 4 for q in (1, 2, 3)}
        for length in sorted(points):
            cut = tmp_path / f"cut{length}.{format_name}"
            cut.write_bytes(original[:length])
            try:
                self._open_and_read_all(host, cut, format_name)
            except Exception as err:
                pytest.fail(f"image truncated to {length} bytes raised {type(err).__name__}: {err}")

    def test_garbage_header_gives_block_format_error_only(
        self, host: Host, image: Path, format_name: str, tmp_path: Path
    ) -> None:
        original = image.read_bytes()
        for seed in GARBAGE_SEEDS:
            for start, length in ((0, 512), (0, 4096), (64, 64 * 1024)):
                data = bytearray(original)
                garbage = _pattern(min(length, max(len(data) - start, 0)), seed)
                data[start : start + len(garbage)] = garbage
                bad = tmp_path / f"garbage{seed}-{start}.{format_name}"
                bad.write_bytes(bytes(data))
                try:
                    self._open_and_read_all(host, bad, format_name)
                except Exception as err:
                    pytest.fail(
                        f"garbage at {start}+{length} (seed {seed}) raised {type(err).__name__}: {err}"
                    )

    # -- round trips -----------------------------------------------------------------------

    def test_round_trip_through_raw(
        self,
        host: Host,
        create_image: ImageFactory,
        tmp_path: Path,
        format_name: str,
        image_size: int,
        supports_write: bool,
    ) -> None:
        if not supports_write:
            pytest.skip(f"{format_name} does not write (supports_write is False)")
        content = _pattern(image_size, 5)
        raw = tmp_path / "content.raw"
        blockfmt.create(raw, "raw", image_size, host=host)
        with blockfmt.open(raw, "raw", read_only=False, host=host) as img:
            img.write_at(0, content)
        ours = create_image(tmp_path / f"copy.{format_name}", image_size)
        with (
            blockfmt.open(raw, "raw", host=host) as src,
            blockfmt.open(ours, format_name, False, host=host) as dst,
        ):
            dst.write_at(0, src.read_at(0, image_size))
        back = tmp_path / "back.raw"
        blockfmt.create(back, "raw", image_size, host=host)
        with (
            blockfmt.open(ours, format_name, host=host) as src,
            blockfmt.open(back, "raw", False, host=host) as dst,
        ):
            dst.write_at(0, src.read_at(0, image_size))
        assert_same_bytes(back.read_bytes(), content, f"raw -> {format_name} -> raw changed the data")

    @pytest.mark.qemu
    def test_round_trip_through_qemu(
        self,
        host: Host,
        image: Path,
        format_name: str,
        qemu_format: str | None,
        supports_write: bool,
        supports_check: bool,
        blockfmt_qemu_tools: Any,
        tmp_path: Path,
    ) -> None:
        """QEMU reads what we wrote, we read what QEMU wrote, and ``qemu-img check`` agrees."""
        from blockfmt.testing.qemu import run_tool

        if qemu_format is None:
            pytest.skip(f"QEMU does not know the format {format_name!r} (the qemu_format fixture is None)")
        if not supports_write:
            pytest.skip(f"{format_name} does not write (supports_write is False)")
        ours = _pattern(MiB + 512, 9)
        with blockfmt.open(image, format_name, read_only=False, host=host) as img:
            img.write_at(512, ours)
        qemu_img, qemu_io = blockfmt_qemu_tools.img, blockfmt_qemu_tools.io
        run = run_tool([qemu_io, "-f", qemu_format, "-c", "write -P 0x5a 3M 4097", str(image)])
        assert run.returncode == 0, f"qemu-io could not write our image: {run.output}"
        with blockfmt.open(image, format_name, host=host) as img:
            assert_same_bytes(
                img.read_at(512, len(ours)), ours, "our data changed after qemu-io wrote elsewhere"
            )
            assert_same_bytes(img.read_at(3 * MiB, 4097), b"\x5a" * 4097, "we do not read what qemu-io wrote")
            size = img.size
        raw = tmp_path / "qemu.raw"
        run = run_tool([qemu_img, "convert", "-f", qemu_format, "-O", "raw", str(image), str(raw)])
        assert run.returncode == 0, f"qemu-img convert failed: {run.output}"
        data = raw.read_bytes()
        assert len(data) == size, f"qemu converts {len(data)} bytes of a {size}-byte disk"
        assert_same_bytes(data[512 : 512 + len(ours)], ours, "qemu reads other data than ours")
        if supports_check:
            run = run_tool([qemu_img, "check", "-f", qemu_format, str(image)])
            assert run.returncode == 0, f"qemu-img check disagrees: {run.output}"
