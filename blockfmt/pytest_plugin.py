"""pytest plugin (``pytest11`` entry point) with fixtures for blockfmt and format-plugin authors.

Fixtures:

``blockfmt_host``
    A :class:`blockfmt.Host` built from the installed entry points, once per session, exactly
    as an application using blockfmt would see the plugins.
``blockfmt_scratch_image``
    A factory ``make(format="raw", size=1 MiB, name=None, **create_options) -> Path`` creating
    an empty image of any installed format in the test's ``tmp_path``.
``blockfmt_qemu_tools``
    The real ``qemu-img``/``qemu-io``/``qemu-storage-daemon`` (:class:`QemuTools`): the test is
    skipped with the reason when one is missing, and fails instead under ``CI=true``.

Markers ``qemu`` (cross-validation against the real QEMU tools) and ``slow`` (long sweeps) are
registered. A failed ``==`` between large byte buffers is explained by its first differing
offset instead of pytest's difflib output, which takes minutes on disk-sized buffers. Importing
this module imports only pytest; blockfmt itself loads on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from blockfmt.host import Host

__all__ = ["QemuTools", "blockfmt_host", "blockfmt_qemu_tools", "blockfmt_scratch_image"]

#: default virtual size of a scratch image
SCRATCH_SIZE = 1 << 20
MARKERS = (
    "qemu: cross-validation against the real qemu-img/qemu-io/qemu-storage-daemon",
    "slow: long sweeps (crash, fuzz) run by their own tox envs",
)


#: buffers up to this size keep pytest's own explanation
_LARGE_BUFFER = 4096


def pytest_assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    """Explain ``a == b`` of large byte buffers by the first difference, in constant output."""
    kinds = (bytes, bytearray, memoryview)
    if op != "==" or not (isinstance(left, kinds) and isinstance(right, kinds)):
        return None
    if max(len(left), len(right)) <= _LARGE_BUFFER:
        return None
    from blockfmt.testing.bytes_diff import describe_byte_difference

    return [f"byte buffers differ: {describe_byte_difference(left, right)}"]


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)


@dataclass(frozen=True)
class QemuTools:
    """Paths of the real QEMU tools."""

    img: str
    io: str
    storage_daemon: str


def require_qemu_tool(name: str) -> str:
    """The path of QEMU tool *name*; skip the test when absent, fail under ``CI=true``."""
    from blockfmt.testing.qemu import find_qemu_tool, in_ci

    path = find_qemu_tool(name)
    if path is None:
        message = f"{name} not found (install QEMU 7.2 tools or set its *_PROG variable)"
        if in_ci():
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def blockfmt_host() -> Host:
    """A host with every plugin of the ``blockfmt.formats`` entry-point group."""
    from blockfmt.host import Host, get_plugin_manager

    return Host(get_plugin_manager())


@pytest.fixture
def blockfmt_scratch_image(tmp_path: Path, blockfmt_host: Host) -> Callable[..., Path]:
    """Return ``make(format="raw", size=SCRATCH_SIZE, name=None, **options)`` -> the new image's path."""
    import blockfmt

    counter = 0

    def make(format: str = "raw", size: int = SCRATCH_SIZE, name: str | None = None, **options: Any) -> Path:
        nonlocal counter
        counter += 1
        path = tmp_path / (name or f"scratch{counter}.{format}")
        blockfmt.create(path, format, size, host=blockfmt_host, **options)
        return path

    return make


@pytest.fixture(scope="session")
def blockfmt_qemu_tools() -> QemuTools:
    """The real QEMU tools (skip locally / fail under ``CI=true`` when one is missing)."""
    return QemuTools(
        require_qemu_tool("qemu-img"), require_qemu_tool("qemu-io"), require_qemu_tool("qemu-storage-daemon")
    )
