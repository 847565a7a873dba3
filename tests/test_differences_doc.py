"""docs/differences.md: every deliberate difference names tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "differences.md"
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_every_entry_is_pinned_by_a_test():
    entries = DOC.read_text().split("\n### ")[1:]
    assert entries
    for entry in entries:
        assert TEST_REFERENCE.search(entry.split("**Pinned by:**", 1)[-1]), entry.splitlines()[0]


def test_every_named_test_exists():
    references = TEST_REFERENCE.findall(DOC.read_text())
    missing = [
        f"{path}::{name}"
        for path, name in references
        if not (REPO / path).exists() or f"def {name}(" not in (REPO / path).read_text()
    ]
    assert references and not missing


def test_readme_links_the_page():
    assert "(docs/differences.md)" in (REPO / "README.md").read_text()
