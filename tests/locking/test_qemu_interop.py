"""Locking against the real QEMU 7.2 tools: each side refuses the other with QEMU's words.

Holders are a writable qemu-storage-daemon blockdev and an interactive qemu-io kept open on a pipe;
every process is stopped at teardown by the ``start_holder`` fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import blockfmt
from blockfmt.errors import ImageLockedError
from blockfmt.host import Host
from blockfmt.testing.qemu import run_tool

from .conftest import STAND_IN_FORMAT, lock_bytes

pytestmark = pytest.mark.qemu

HINT = "Is another process using the image [{}]?"


@pytest.fixture
def vdi(tmp_path: Path, qemu_img: str) -> Path:
    path = tmp_path / "disk.vdi"
    result = run_tool([qemu_img, "create", "-f", "vdi", str(path), "1M"])
    assert result.returncode == 0, result.output
    return path


def qsd_argv(qsd: str, path: Path, *, read_only: bool) -> list[str]:
    ro = "on" if read_only else "off"
    return [
        qsd,
        "--blockdev",
        f"driver=file,filename={path},node-name=file0,read-only={ro}",
        "--blockdev",
        f"driver=vdi,file=file0,node-name=fmt0,read-only={ro}",
    ]


def qemu_io_argv(qemu_io: str, path: Path, fmt: str, *flags: str) -> list[str]:
    return [qemu_io, *flags, "-f", fmt, str(path)]


@pytest.mark.parametrize(
    ("fmt", "flags", "read_only", "force_share"),
    [
        ("vdi", (), False, False),
        ("vdi", ("-r",), True, False),
        ("vdi", ("-r", "-U"), True, True),
        ("raw", (), False, False),
        ("raw", ("-r",), True, False),
    ],
)
def test_blockfmt_takes_the_bytes_qemu_io_takes(
    vdi: Path,
    host: Host,
    qemu_io: str,
    start_holder,
    fmt: str,
    flags: tuple,
    read_only: bool,
    force_share: bool,
) -> None:
    qemu_locks = start_holder(qemu_io_argv(qemu_io, vdi, fmt, *flags), vdi)
    format = STAND_IN_FORMAT if fmt == "vdi" else "raw"
    other = vdi.with_name("other.img")
    other.write_bytes(vdi.read_bytes())
    with blockfmt.open(other, format, read_only, force_share=force_share, host=host):
        assert lock_bytes(other) == qemu_locks


def test_blockfmt_refused_while_qsd_writes(
    vdi: Path, host: Host, qemu_storage_daemon: str, start_holder
) -> None:
    start_holder(qsd_argv(qemu_storage_daemon, vdi, read_only=False), vdi)
    with pytest.raises(ImageLockedError) as info:
        blockfmt.open(vdi, STAND_IN_FORMAT, read_only=False, host=host)
    assert (str(info.value), info.value.hint) == ('Failed to get "write" lock', HINT.format(vdi))
    with pytest.raises(ImageLockedError, match=r'^Failed to get shared "write" lock$'):
        blockfmt.open(vdi, STAND_IN_FORMAT, host=host)
    with blockfmt.open(vdi, STAND_IN_FORMAT, force_share=True, host=host) as image:
        assert image.size == vdi.stat().st_size
    with pytest.raises(ImageLockedError, match=r'^Failed to get "write" lock$'):
        blockfmt.create(vdi, STAND_IN_FORMAT, 1 << 20, host=host)


def test_blockfmt_reads_beside_a_qemu_io_reader(vdi: Path, host: Host, qemu_io: str, start_holder) -> None:
    start_holder(qemu_io_argv(qemu_io, vdi, "vdi", "-r"), vdi)
    with blockfmt.open(vdi, STAND_IN_FORMAT, host=host):
        pass
    with pytest.raises(ImageLockedError, match=r'^Failed to get "write" lock$'):
        blockfmt.open(vdi, STAND_IN_FORMAT, read_only=False, host=host)


def test_qemu_refused_while_blockfmt_writes(vdi: Path, host: Host, qemu_img: str, qemu_io: str) -> None:
    name = str(vdi)
    with blockfmt.open(vdi, STAND_IN_FORMAT, read_only=False, host=host):
        info = run_tool([qemu_img, "info", name])
        assert (info.returncode, info.output) == (
            1,
            f"qemu-img: Could not open '{name}': Failed to get shared \"write\" lock\n{HINT.format(name)}\n",
        )
        write = run_tool([qemu_io, "-f", "vdi", "-c", "write 0 512", name])
        assert (write.returncode, write.output) == (
            1,
            f'qemu-io: can\'t open device {name}: Failed to get "write" lock\n{HINT.format(name)}\n',
        )
        shared = run_tool([qemu_img, "info", "-U", "--output=json", name])
        assert shared.returncode == 0, shared.output
        assert '"format": "vdi"' in shared.stdout
    after = run_tool([qemu_img, "check", name])
    assert after.returncode == 0, after.output


def test_qemu_reads_beside_a_blockfmt_reader(vdi: Path, host: Host, qemu_img: str, qemu_io: str) -> None:
    name = str(vdi)
    with blockfmt.open(vdi, STAND_IN_FORMAT, host=host):
        check = run_tool([qemu_img, "check", name])
        assert check.returncode == 0, check.output
        write = run_tool([qemu_io, "-f", "vdi", "-c", "write 0 512", name])
        assert write.returncode == 1
        assert write.stderr.startswith(f'qemu-io: can\'t open device {name}: Failed to get "write" lock\n')


def test_qemu_img_create_refused_while_blockfmt_reads(vdi: Path, host: Host, qemu_img: str) -> None:
    name = str(vdi)
    before = vdi.read_bytes()
    with blockfmt.open(vdi, STAND_IN_FORMAT, host=host):
        create = run_tool([qemu_img, "create", "-f", "vdi", name, "2M"])
    assert create.returncode == 1
    assert create.stderr == f'qemu-img: {name}: Failed to get "write" lock\n{HINT.format(name)}\n'
    assert vdi.read_bytes() == before
