"""The qemu-storage-daemon wrapper: QMP round trips, job errors, and an always-clean shutdown."""

from __future__ import annotations

import pytest

from iotests.qsd import QsdError, StorageDaemon

pytestmark = pytest.mark.qemu


def test_blockdev_create_job_and_error(qemu_storage_daemon, tmp_path):
    target = str(tmp_path / "t.vdi")
    with StorageDaemon(qemu_storage_daemon) as daemon:
        start = {
            "execute": "blockdev-create",
            "arguments": {"job-id": "j", "options": {"driver": "file", "filename": target, "size": 0}},
        }
        assert daemon.run_job("j", start) == ({"return": {}}, None)
        assert daemon.qmp("job-dismiss", {"id": "j"}) == {"return": {}}
        bad = {
            "execute": "blockdev-create",
            "arguments": {"job-id": "j", "options": {"driver": "vdi", "file": "nope", "size": 1 << 20}},
        }
        assert daemon.run_job("j", bad)[1] == "Cannot find device='nope' nor node-name='nope'"
        assert daemon.qmp("no-such-command", {})["error"]["class"] == "CommandNotFound"
    assert (tmp_path / "t.vdi").exists()


def test_daemon_is_gone_after_an_exception(qemu_storage_daemon):
    daemon = StorageDaemon(qemu_storage_daemon)
    with pytest.raises(RuntimeError), daemon:
        proc = daemon._proc
        raise RuntimeError("scenario failed")
    assert proc is not None and proc.poll() is not None
    with pytest.raises(QsdError, match="not running"):
        daemon.qmp("query-jobs")


def test_start_failure_is_reported(qemu_storage_daemon):
    daemon = StorageDaemon(qemu_storage_daemon, ["driver=nonexistent-driver,node-name=x"])
    with pytest.raises(QsdError, match="exited with"):
        daemon.start()
    assert daemon._proc is None
