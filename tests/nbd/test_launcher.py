"""``nbdkit_environment``: which import directories reach nbdkit's embedded Python."""

from __future__ import annotations

import os
import sysconfig

import pytest

from blockfmt.nbd import launcher


def test_site_packages_inside_the_standard_library_folder_is_passed_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pyenv or system-wide install keeps site-packages under lib/python3.X, the stdlib's folder:
    it must still be passed (blockfmt and crc32c live there), while the stdlib itself is not."""
    lib = "/opt/py/lib/python3.11"
    paths = {
        "stdlib": lib,
        "platstdlib": lib,
        "purelib": f"{lib}/site-packages",
        "platlib": f"{lib}/site-packages",
    }
    monkeypatch.setattr(sysconfig, "get_path", lambda name: paths[name])
    monkeypatch.setattr(
        launcher.sys,
        "path",
        ["", lib, f"{lib}/lib-dynload", f"{lib}/site-packages", "/src/blockfmt", "/x.zip"],
    )
    env = launcher.nbdkit_environment({})
    assert env[launcher.SYS_PATH_ENV].split(os.pathsep) == [f"{lib}/site-packages", "/src/blockfmt"]
