"""070: VHDX log replay from an image whose journal needs replaying (qemu-iotests 070).

The image is 10 GiB, 4 MiB blocks, with one unplayed data sector in the log: replayed, pattern
0xa5 reaches 0xc025000; not replayed, only 0xc000000. (The original series numbered it 065.)
"""

from __future__ import annotations

from iotests.context import TestContext

FORMATS = ("vhdx",)
GROUPS = ("rw", "quick")

DIRTY = "iotest-dirtylog-10G-4M.vhdx"


def run(t: TestContext) -> None:
    t.echo("QA output created by 070")
    t.use_sample_img(DIRTY)

    t.echo()
    t.echo("=== Verify open image read-only fails, due to dirty log ===")
    t.qemu_io("read -pP 0xa5 0 18M", read_only=True)

    t.echo("=== Verify open image replays log  ===")
    t.qemu_io("read -pP 0xa5 0 18M")

    # extract fresh sample image again
    t.use_sample_img(DIRTY)

    t.echo("=== Verify qemu-img check -r all replays log  ===")
    t.qemu_img("check", "-f", t.imgfmt, "-r", "all", t.test_img)

    t.echo("=== Verify open image read-only succeeds after log replay ===")
    t.qemu_io("read -pP 0xa5 0 18M", read_only=True)

    t.cleanup_test_img()
    t.use_sample_img("test-disk2vhd.vhdx")

    t.echo()
    t.echo("=== Verify image created by Disk2VHD can be opened ===")
    t.img_info()

    t.echo("*** done")
