"""064: VHDX read/write on a sample image made by Hyper-V (qemu-iotests 064, replayed step by step)."""

from __future__ import annotations

from iotests.context import TestContext

FORMATS = ("vhdx",)
GROUPS = ("rw", "quick")

#: the regions 064 reads back as zeros, before and after its write of 0xc3 at 99M-157M
_ZEROS_BEFORE = (
    "66M 62M",
    "128M 128M",
    "256M 128M",
    "384M 128M",
    "512M 128M",
    "640M 128M",
    "768M 128M",
    "896M 128M",
)
_ZEROS_AFTER = ("157M 99M", "256M 128M", "384M 128M", "512M 128M", "640M 128M", "768M 128M", "896M 128M")


def run(t: TestContext) -> None:
    t.echo("QA output created by 064")
    t.use_sample_img("iotest-dynamic-1G.vhdx")

    t.echo()
    t.echo("=== Verify pattern 0xa5, 0 - 33MB ===")
    t.qemu_io("read -pP 0xa5 0 33M", read_only=True)

    t.echo()
    t.echo("=== Verify pattern 0x96, 33M - 66M ===")
    t.qemu_io("read -pP 0x96 33M 33M", read_only=True)

    t.echo()
    t.echo("=== Verify pattern 0x00, 66M - 1024M ===")
    t.qemu_io(*(f"read -pP 0x00 {r}" for r in _ZEROS_BEFORE), read_only=True)

    t.echo()
    t.echo("=== Verify pattern write, 0xc3 99M-157M ===")
    t.qemu_io("write -pP 0xc3 99M 58M")
    # first verify we didn't write where we should not have
    t.qemu_io("read -pP 0xa5 0 33M")
    t.qemu_io("read -pP 0x96 33M 33M")
    t.qemu_io("read -pP 0x00 66M 33M")
    t.qemu_io(*(f"read -pP 0x00 {r}" for r in _ZEROS_AFTER))
    # now verify what we should have actually written
    t.qemu_io("read -pP 0xc3 99M 58M")

    t.echo("*** done")
