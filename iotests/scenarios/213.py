"""213: VHDX and file image creation over QMP ``blockdev-create`` (qemu-iotests 213).

Every VHDX blockdev-create option appears: ``log-size``, ``block-size``, ``subformat``,
``block-state-zero``, with valid and invalid values.
"""

from __future__ import annotations

from iotests.context import TestContext

FORMATS = ("vhdx",)
GROUPS = ("rw", "quick", "qmp")

MiB = 1 << 20
#: 64 TiB, VHDX's maximum virtual size
MAX_SIZE = 70368744177664
#: 2^64 - 512, 2^63, 2^63 - 512 (the file would exceed 63 bits), and 64 TiB + 1
INVALID_SIZES = (18446744073709551104, 9223372036854775808, 9223372036854775296, 70368744177665)
INVALID_BLOCK_SIZES = (1234567, 128, 3145728, 536870912, 0)
INVALID_LOG_SIZES = (1234567, 128, 4294967296, 0)


def run(t: TestContext) -> None:
    disk_path = t.file_path("t.vhdx")
    inline_file = {"driver": "file", "filename": disk_path}
    with t.vm() as vm:
        t.echo("=== Successful image creation (defaults) ===")
        t.echo()
        vm.launch()
        t.blockdev_create(vm, {"driver": "file", "filename": disk_path, "size": 0})
        t.qmp_log(vm, "blockdev-add", driver="file", filename=disk_path, node_name="imgfile")
        t.blockdev_create(vm, {"driver": t.imgfmt, "file": "imgfile", "size": 128 * MiB})
        vm.shutdown()
        t.img_info_log(disk_path)

        t.echo("=== Successful image creation (explicit defaults) ===")
        t.echo()
        vm.launch()
        t.blockdev_create(vm, {"driver": "file", "filename": disk_path, "size": 0})
        t.blockdev_create(
            vm,
            {
                "driver": t.imgfmt,
                "file": inline_file,
                "size": 64 * MiB,
                "log-size": 1 * MiB,
                "block-size": 8 * MiB,
                "subformat": "dynamic",
                "block-state-zero": True,
            },
        )
        vm.shutdown()
        t.img_info_log(disk_path)

        t.echo("=== Successful image creation (with non-default options) ===")
        t.echo()
        vm.launch()
        t.blockdev_create(vm, {"driver": "file", "filename": disk_path, "size": 0})
        t.blockdev_create(
            vm,
            {
                "driver": t.imgfmt,
                "file": inline_file,
                "size": 32 * MiB,
                "log-size": 8 * MiB,
                "block-size": 256 * MiB,
                "subformat": "fixed",
                "block-state-zero": False,
            },
        )
        vm.shutdown()
        t.img_info_log(disk_path)

        t.echo("=== Invalid BlockdevRef ===")
        t.echo()
        vm.launch()
        t.blockdev_create(vm, {"driver": t.imgfmt, "file": "this doesn't exist", "size": 32 * MiB})
        vm.shutdown()

        t.echo("=== Zero size ===")
        t.echo()
        vm.add_blockdev(f"driver=file,filename={disk_path},node-name=node0")
        vm.launch()
        t.blockdev_create(vm, {"driver": t.imgfmt, "file": "node0", "size": 0})
        vm.shutdown()
        t.img_info_log(disk_path)

        t.echo("=== Maximum size ===")
        t.echo()
        vm.launch()
        t.blockdev_create(vm, {"driver": t.imgfmt, "file": "node0", "size": MAX_SIZE})
        vm.shutdown()
        t.img_info_log(disk_path)

        t.echo("=== Invalid sizes ===")
        t.echo()
        vm.launch()
        for size in INVALID_SIZES:
            t.blockdev_create(vm, {"driver": t.imgfmt, "file": "node0", "size": size})
        vm.shutdown()

        t.echo("=== Invalid block size ===")
        t.echo()
        vm.launch()
        for block_size in INVALID_BLOCK_SIZES:
            t.blockdev_create(
                vm, {"driver": t.imgfmt, "file": "node0", "size": 64 * MiB, "block-size": block_size}
            )
        vm.shutdown()

        t.echo("=== Invalid log size ===")
        t.echo()
        vm.launch()
        for log_size in INVALID_LOG_SIZES:
            t.blockdev_create(
                vm, {"driver": t.imgfmt, "file": "node0", "size": 64 * MiB, "log-size": log_size}
            )
        vm.shutdown()
