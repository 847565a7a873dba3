"""libguestfs reads the real Hyper-V images through blockfmt-nbd (``guestfish --ro -a nbd://...``).

QEMU 7.2 cannot open the DiscUtils log-replay image read-only at all, so this is the only way
libguestfs sees its partitions. The appliance is a whole VM: it needs ``libguestfs-tools`` and a
kernel supermin can use, and boots in minutes under TCG, hence ``slow``. Where it cannot start the
test is skipped with libguestfs's own reason. ``LIBGUESTFS_BACKEND_SETTINGS=force_tcg`` is the
default here because nested KVM often aborts the appliance (``failed to set MSR``).
"""

from __future__ import annotations

import os
import shutil

import pytest

from blockfmt.testing.qemu import run_tool

from .conftest import run_ok

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

APPLIANCE_TIMEOUT = 1200


def test_guestfish_lists_partitions_and_filesystems_of_real_hyperv_images(
    serve, sample_image, nbdinfo, monkeypatch
):
    guestfish = shutil.which("guestfish")
    if guestfish is None:
        pytest.skip("guestfish not installed (Debian package libguestfs-tools)")
    # -t and -e 2: the server outlives the nbdinfo probe and takes guestfish's connection right after it
    replay = serve(
        sample_image("discutils-vhdx-log-replay.vhdx"),
        "-r",
        "-t",
        "-e",
        "2",
        "--open-option=log_replay=memory",
    )
    btrfs = serve(sample_image("discutils-btrfs.vhdx"), "-r", "-t", "-e", "2")
    for server in (replay, btrfs):
        run_ok([nbdinfo, "--size", server.uri])  # the exports work, so a failed launch is the appliance's
    monkeypatch.setenv(
        "LIBGUESTFS_BACKEND_SETTINGS", os.environ.get("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
    )
    result = run_tool(
        [
            guestfish, "--ro", "--format=raw",
            "-a", f"nbd://?socket={replay.socket}",
            "-a", f"nbd://?socket={btrfs.socket}",
            "run", ":", "list-partitions", ":", "list-filesystems",
        ],
        timeout=APPLIANCE_TIMEOUT,
    )  # fmt: skip
    if result.returncode != 0:
        errors = [line for line in result.output.splitlines() if "error" in line.lower()]
        pytest.skip(
            f"the libguestfs appliance did not start here: {' / '.join(errors[-3:]) or result.output}"
        )
    lines = result.stdout.splitlines()
    # list-partitions, then list-filesystems: the log-replay image's two MBR partitions hold no
    # file system libguestfs recognises; the other image's single partition is the btrfs volume
    assert lines[:3] == ["/dev/sda1", "/dev/sda2", "/dev/sdb1"], result.stdout
    assert "/dev/sdb1: btrfs" in lines[3:], result.stdout
