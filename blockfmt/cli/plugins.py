"""What both CLIs say about plugins: load errors once per run, and ``--list-plugins``."""

from __future__ import annotations

from ..host import Host, default_host
from .report import Reporter

__all__ = ["cli_host", "list_plugins"]


def cli_host(rep: Reporter) -> Host:
    """The process-wide host; each plugin that failed to load is reported as one warning line.

    The run goes on with the plugins that did load, so a broken third-party plugin costs its own
    formats and nothing else.
    """
    host = default_host()
    for line in host.load_errors:
        rep.error(f"warning: {line}")
    return host


def list_plugins(rep: Reporter, host: Host) -> int:
    """Print one line per plugin: its name, where it comes from, its formats or why it did not load.

    :returns: the exit code: 0, or 1 when a plugin failed to load.
    """
    for record in host.plugins:
        origin = f"{record.name} ({record.source})" if record.source else record.name
        if record.error is None:
            rep.out(f"{origin}: {' '.join(host.plugin_formats(record.name)) or '(no formats)'}\n")
        else:
            rep.out(f"{origin}: not loaded: {record.error}\n")
    return 1 if host.load_errors else 0
