"""Fixtures of the VHDX plugin tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def dirtylog(sample_image) -> Path:
    """QEMU's iotest 070 image: 10 GiB, 4 MiB blocks, one unplayed log entry."""
    return sample_image("iotest-dirtylog-10G-4M.vhdx")
