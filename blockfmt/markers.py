"""pluggy markers: ``hookspec`` for :mod:`blockfmt.hookspecs`, ``hookimpl`` for plugins."""

from __future__ import annotations

import pluggy

PROJECT_NAME = "blockfmt"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
