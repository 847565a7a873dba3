"""211: VDI and file image creation over QMP ``blockdev-create`` (qemu-iotests 211)."""

from __future__ import annotations

from iotests.context import VM, TestContext

FORMATS = ("vdi",)
GROUPS = ("rw", "quick", "qmp")

MiB = 1 << 20
#: 512 TiB - 128 MiB, the largest VDI QEMU makes (0x1fffff8000000)
MAX_SIZE = 562949819203584
#: 2^64 - 512, 2^63 (qemu-img's own limit), and one byte past the VDI maximum
INVALID_SIZES = (18446744073709551104, 9223372036854775808, 562949819203585)


def _create(t: TestContext, vm: VM, options: dict[str, object]) -> None:
    error = t.blockdev_create(vm, options)
    if error and "Could not allocate bmap" in error:
        t.notrun("Insufficient memory")


def _new_file(t: TestContext, vm: VM, path: str) -> None:
    _create(t, vm, {"driver": "file", "filename": path, "size": 0})


def run(t: TestContext) -> None:
    disk_path = t.file_path("t.vdi")
    inline_file = {"driver": "file", "filename": disk_path}
    with t.vm() as vm:
        t.echo("=== Successful image creation (defaults) ===")
        t.echo()
        vm.launch()
        _new_file(t, vm, disk_path)
        t.qmp_log(vm, "blockdev-add", driver="file", filename=disk_path, node_name="imgfile")
        _create(t, vm, {"driver": t.imgfmt, "file": "imgfile", "size": 128 * MiB})
        vm.shutdown()
        t.img_info_log(disk_path)
        t.img_map_log(disk_path)

        t.echo("=== Successful image creation (explicit defaults) ===")
        t.echo()
        vm.launch()
        _new_file(t, vm, disk_path)
        _create(t, vm, {"driver": t.imgfmt, "file": inline_file, "size": 64 * MiB, "preallocation": "off"})
        vm.shutdown()
        t.img_info_log(disk_path)
        t.img_map_log(disk_path)

        t.echo("=== Successful image creation (with non-default options) ===")
        t.echo()
        vm.launch()
        _new_file(t, vm, disk_path)
        _create(
            t, vm, {"driver": t.imgfmt, "file": inline_file, "size": 32 * MiB, "preallocation": "metadata"}
        )
        vm.shutdown()
        t.img_info_log(disk_path)
        t.img_map_log(disk_path)

        t.echo("=== Invalid BlockdevRef ===")
        t.echo()
        vm.launch()
        _create(t, vm, {"driver": t.imgfmt, "file": "this doesn't exist", "size": 32 * MiB})
        vm.shutdown()

        t.echo("=== Zero size ===")
        t.echo()
        vm.add_blockdev(f"driver=file,filename={disk_path},node-name=node0")
        vm.launch()
        _create(t, vm, {"driver": t.imgfmt, "file": "node0", "size": 0})
        vm.shutdown()
        t.img_info_log(disk_path)

        t.echo("=== Maximum size ===")
        t.echo()
        vm.launch()
        _create(t, vm, {"driver": t.imgfmt, "file": "node0", "size": MAX_SIZE})
        vm.shutdown()
        t.img_info_log(disk_path)

        t.echo("=== Invalid sizes ===")
        t.echo()
        vm.launch()
        for size in INVALID_SIZES:
            _create(t, vm, {"driver": t.imgfmt, "file": "node0", "size": size})
        vm.shutdown()
