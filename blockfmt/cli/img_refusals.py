"""``snapshot`` and ``bitmap``: command lines checked as qemu-img checks them, then QEMU's refusal.

No format blockfmt ships keeps internal snapshots or persistent dirty bitmaps, and neither do
QEMU's vhdx, vdi and raw drivers: listing finds nothing, every change fails with the text QEMU's
block layer gives. The image is still opened first, so a missing or corrupt file is reported
the same way qemu-img reports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .img_common import Failure, open_image, parse_common, size_option
from .report import EXIT_OK, Reporter, UsageError

if TYPE_CHECKING:
    from ..host import Host

__all__ = ["cmd_bitmap", "cmd_snapshot"]

#: ``qemu-img snapshot`` action -> what its failure message says
_SNAPSHOT_FAILURES = {
    "-c": "Could not create snapshot '{0}': -95 (Operation not supported)",
    "-a": "Could not apply snapshot '{0}': Block driver does not support snapshots",
    "-d": "Could not delete snapshot '{0}': snapshot not found",
}
#: QEMU names an anonymous block node ``#block<N>`` in the bitmap refusal; N is a counter
ANONYMOUS_NODE = "#block100"


def cmd_snapshot(args: list[str], rep: Reporter, host: Host) -> int:
    """``snapshot [--object] [--image-opts] [-U] [-q] [-l | -a s | -c s | -d s] filename``."""
    parsed = parse_common(args, "la:c:d:hqU", ["help", "object=", "image-opts", "force-share"])
    actions = [(opt, value) for opt, value in parsed.rest if opt in ("-l", "-a", "-c", "-d")]
    if len(actions) > 1:
        raise UsageError("Cannot mix '-l', '-a', '-c', '-d'")
    if len(parsed.operands) != 1:
        raise UsageError("Expecting one image file name")
    action, name = actions[0] if actions else ("-l", "")
    listing = action == "-l"
    with open_image(
        rep,
        host,
        parsed.operands[0],
        None,
        read_only=listing,
        force_share=parsed.force_share and listing,
        image_opts=parsed.image_opts,
    ):
        pass
    if listing:
        return EXIT_OK  # no snapshots: qemu-img prints nothing at all
    raise Failure(_SNAPSHOT_FAILURES[action].format(name))


def cmd_bitmap(args: list[str], rep: Reporter, host: Host) -> int:
    """``bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... [-b f [-F fmt]]
    [-g granularity] [--object] [--image-opts | -f fmt] filename bitmap``."""
    parsed = parse_common(
        args,
        "b:f:F:g:h",
        ["help", "object=", "image-opts", "add", "remove", "clear", "enable", "disable", "merge="],
    )
    actions: list[str] = []
    source_file = source_fmt = None
    for opt, value in parsed.rest:
        if opt in ("--add", "--remove", "--clear", "--enable", "--disable", "--merge"):
            actions.append(opt[2:])
        elif opt == "-b":
            source_file = value
        elif opt == "-F":
            source_fmt = value
        elif opt == "-g":
            size_option(value, "granularity")
    if not actions:
        raise Failure("Need at least one of --add, --remove, --clear, --enable, --disable, or --merge")
    if source_file is not None and "merge" not in actions:
        raise Failure("Merge bitmap source file only supported with --merge")
    if source_fmt is not None and source_file is None:
        raise Failure("-F only supported with -b")
    if len(parsed.operands) != 2:
        raise Failure("Expecting filename and bitmap name")
    filename, bitmap = parsed.operands
    with open_image(rep, host, filename, parsed.fmt, read_only=False, image_opts=parsed.image_opts):
        pass
    first = actions[0]
    if first == "add":
        reason = f"Can't store persistent bitmaps to {ANONYMOUS_NODE}: Operation not supported"
    else:
        reason = f"Dirty bitmap '{bitmap}' not found"
    raise Failure(f"Operation {first} on bitmap {bitmap} failed: {reason}")
