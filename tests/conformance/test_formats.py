"""The conformance suite on raw, vhdx and vdi, loaded through the entry points as a third party would."""

from __future__ import annotations

import pytest

from blockfmt.testing.conformance import AbstractFormatTests


class TestRaw(AbstractFormatTests):
    @pytest.fixture
    def format_name(self) -> str:
        return "raw"

    @pytest.fixture
    def supports_check(self) -> bool:
        return False

    @pytest.fixture
    def probe_fallback(self) -> bool:
        return True


class TestVhdx(AbstractFormatTests):
    @pytest.fixture
    def format_name(self) -> str:
        return "vhdx"

    @pytest.fixture
    def create_options(self) -> dict[str, int]:
        """1 MiB blocks: the 4 MiB test disk spans several blocks."""
        return {"block_size": 1 << 20}


class TestVdi(AbstractFormatTests):
    @pytest.fixture
    def format_name(self) -> str:
        return "vdi"
