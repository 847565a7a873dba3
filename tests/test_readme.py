"""The README's commands and CI stay in step."""

from __future__ import annotations

import re

from .conftest import REPO


def readme_commands() -> list[str]:
    return re.findall(r"^    \$ (.+)$", (REPO / "README.md").read_text(), flags=re.M)


def test_readme_has_exactly_two_commands() -> None:
    """One command for the main job, one for the test suite."""
    assert len(readme_commands()) == 2


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run extracts and runs the README's second command, nothing else."""
    script = (REPO / ".ci" / "run").read_text()
    assert "sed -n '2p'" in script
    assert "pytest" in readme_commands()[1]
