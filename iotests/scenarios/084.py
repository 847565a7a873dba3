"""084: VDI header corruption (image too large, too many blocks, bad block size); static create.

qemu-iotests 084, replayed step by step: the header fields are poked at their VDI 1.1 offsets.
"""

from __future__ import annotations

from iotests.context import TestContext

FORMATS = ("vdi",)
GROUPS = ("img", "quick")

SIZE = "64M"
#: VDI 1.1 header field offsets: disk size, block size, blocks in image
DS_OFFSET = 368
BS_OFFSET = 376
BII_OFFSET = 384


def run(t: TestContext) -> None:
    t.echo("QA output created by 084")

    t.echo()
    t.echo("=== Statically allocated image creation ===")
    t.echo()
    t.make_test_img(SIZE, "-o", "static")
    t.img_info()
    t.echo_file_size("disk image file size in bytes: ")
    t.cleanup_test_img()

    t.echo()
    t.echo("=== Testing image size bounds ===")
    t.echo()
    t.make_test_img(SIZE)
    t.img_info()
    t.echo_file_size("disk image file size in bytes: ")

    t.echo("Test 1: Maximum size (512 TB - 128 MB):")
    t.poke_file(DS_OFFSET, b"\x00\x00\x00\xf8\xff\xff\x01\x00")
    t.poke_file(BII_OFFSET, b"\x80\xff\xff\x1f")
    t.img_info()

    t.echo()
    t.echo("Test 2: Size too large (512 TB - 128 MB + 64 kB)")
    t.poke_file(DS_OFFSET, b"\x00\x00\x01\xf8\xff\xff\x01\x00")
    t.img_info()

    t.echo()
    t.echo("Test 3: Size valid (64M), but Blocks In Image too small (63)")
    t.poke_file(DS_OFFSET, b"\x00\x00\x00\x04\x00\x00\x00\x00")
    t.poke_file(BII_OFFSET, b"\x3f\x00\x00\x00")
    t.img_info()

    t.echo()
    t.echo("Test 4: Size valid (64M), but Blocks In Image exceeds max allowed")
    t.poke_file(BII_OFFSET, b"\x81\xff\xff\x1f")
    t.img_info()

    t.echo()
    t.echo("Test 5: Valid Image: 64MB, Blocks In Image 64, Block Size 1MB")
    t.poke_file(BII_OFFSET, b"\x40\x00\x00\x00")
    t.poke_file(BS_OFFSET, b"\x00\x00\x10\x00")
    t.img_info()
    t.echo()
    t.echo("Test 6: Block Size != 1MB; too small test (1MB - 1)")
    t.poke_file(BS_OFFSET, b"\xff\xff\x0f\x00")
    t.img_info()
    t.echo()
    t.echo("Test 7: Block Size != 1MB; too large test (1MB + 64KB)")
    t.poke_file(BS_OFFSET, b"\x00\x00\x11\x00")
    t.img_info()

    t.echo()
    t.echo("*** done")
