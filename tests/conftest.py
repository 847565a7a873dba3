"""Fixtures shared by the project's own tests."""

from __future__ import annotations

import bz2
import gzip
import os
import shutil
from pathlib import Path

import pytest

from blockfmt.pytest_plugin import require_qemu_tool
from blockfmt.testing.qemu import in_ci

REPO = Path(__file__).resolve().parent.parent
#: QEMU's and Hyper-V's sample images, shared beside the repository (never copied into it);
#: ``SAMPLE_IMG_DIR`` overrides the place, as in qemu-iotests
SHARED_SAMPLES = Path(os.environ.get("SAMPLE_IMG_DIR") or REPO.parent / "shared" / "sample_images")


@pytest.fixture(scope="session")
def qemu_img() -> str:
    """Path of the real qemu-img (skip locally, fail under CI=true when absent)."""
    return require_qemu_tool("qemu-img")


@pytest.fixture(scope="session")
def qemu_io() -> str:
    """Path of the real qemu-io."""
    return require_qemu_tool("qemu-io")


@pytest.fixture(scope="session")
def qemu_storage_daemon() -> str:
    """Path of the real qemu-storage-daemon."""
    return require_qemu_tool("qemu-storage-daemon")


@pytest.fixture
def sample_image(tmp_path: Path):
    """Return a function that decompresses a shared sample image into tmp_path.

    ``sample_image("iotest-dynamic-1G.vhdx")`` finds ``.bz2`` in ../shared/sample_images and
    ``.gz`` in its ``real/`` folder.
    """

    def decompress(name: str) -> Path:
        for source, opener in (
            (SHARED_SAMPLES / f"{name}.bz2", bz2.open),
            (SHARED_SAMPLES / "real" / f"{name}.gz", gzip.open),
        ):
            if source.exists():
                target = tmp_path / name
                with opener(source, "rb") as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                return target
        message = f"sample image {name} not found under {SHARED_SAMPLES}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)

    return decompress
