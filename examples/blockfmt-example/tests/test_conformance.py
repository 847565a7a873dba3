"""blockfmt's conformance suite against the ``example`` format: all a plugin's tests need.

The fixtures (``blockfmt_host`` and the others) come from the pytest plugin installed with blockfmt.
"""

from __future__ import annotations

import pytest

from blockfmt.testing.conformance import AbstractFormatTests


class TestExampleFormat(AbstractFormatTests):
    @pytest.fixture
    def format_name(self) -> str:
        return "example"
