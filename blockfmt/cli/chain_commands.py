"""The backing-chain side of ``blockfmt-img``: ``commit``, ``rebase``, ``create -b/-F`` and
``info --backing-chain``, as qemu-img 7.2 spells them; the work is done by :mod:`blockfmt.commit`,
:mod:`blockfmt.rebase` and :mod:`blockfmt.chain`.
"""

from __future__ import annotations

import os

from ..api import open as open_image
from ..commit import commit
from ..host import Host
from ..image import Image
from ..rebase import rebase
from . import render
from .args import gnu_getopt
from .img_common import ShowHelp
from .report import EXIT_OK, Reporter, UsageError

__all__ = [
    "backing_facts",
    "cmd_commit",
    "cmd_rebase",
    "info_facts",
    "info_text",
    "layer_names",
]


def _combined(name: str, backing_name: str) -> str:
    """QEMU's ``full-backing-filename``: a stored relative name taken from its child's directory."""
    if os.path.isabs(backing_name):
        return backing_name
    return os.path.join(os.path.dirname(name), backing_name)


def layer_names(image: Image) -> list[str]:
    """The names qemu-img shows for the layers of a chain, top first: the name given for the top,
    then each parent's stored name taken from the directory of the name shown for its child."""
    names = [image.filename]
    for layer in image.backing_chain()[:-1]:
        names.append(_combined(names[-1], layer.backing_name or ""))
    return names


def info_facts(
    image: Image, filename: str | None = None, full_backing: str | None = None
) -> render.InfoFacts:
    """What ``info`` shows about one image of a chain, under the names qemu-img would use."""
    details = image.info()
    backing = image.backing
    name = filename or image.filename
    if image.backing_name is not None and full_backing is None:
        full_backing = _combined(name, image.backing_name)
    return render.InfoFacts(
        name,
        image.format,
        image.size,
        image.actual_size(),
        details.cluster_size,
        details.dirty,
        image.backing_name,
        full_backing,
        None if backing is None else backing.format,
    )


def info_text(image: Image, output: str, backing_chain: bool) -> str:
    """``info``'s output for *image*, or for its whole chain with ``--backing-chain``."""
    if not backing_chain:
        facts = info_facts(image)
        return render.info_json(facts) if output == "json" else render.info_human(facts)
    names = layer_names(image)
    chain = [
        info_facts(layer, names[depth], names[depth + 1] if depth + 1 < len(names) else None)
        for depth, layer in enumerate(image.backing_chain())
    ]
    return render.info_chain_json(chain) if output == "json" else render.info_chain_human(chain)


def backing_facts(filename: str, backing: str, backing_fmt: str | None, host: Host) -> tuple[str, int]:
    """The format and virtual size of the parent ``create -b`` names, found from the new image's
    directory as qemu-img finds it: a child takes both unless given."""
    path = os.path.join(os.path.dirname(filename), backing)  # an absolute *backing* stays as it is
    with open_image(path, backing_fmt, host=host) as parent:
        return parent.format, parent.size


def cmd_commit(args: list[str], rep: Reporter, host: Host) -> int:
    """``commit [-f fmt] [-d] [-q] filename``: the child keeps its data (``-d`` is how it always works)."""
    opts, operands = gnu_getopt(args, "f:hdq", ["help"])
    fmt, quiet = None, False
    for opt, value in opts:
        if opt in ("-h", "--help"):
            raise ShowHelp
        if opt == "-f":
            fmt = value
        elif opt == "-q":
            quiet = True
    if len(operands) != 1:
        raise UsageError("Expecting one image file name")
    commit(operands[0], fmt, host=host)
    if not quiet:
        rep.out("Image committed.\n")
    return EXIT_OK


def cmd_rebase(args: list[str], rep: Reporter, host: Host) -> int:
    """``rebase [-f fmt] [-F backing_fmt] [-u] [-q] -b backing_file filename``."""
    opts, operands = gnu_getopt(args, "f:F:b:hquU", ["help", "force-share"])
    fmt = backing_fmt = backing = None
    unsafe = False
    for opt, value in opts:
        if opt in ("-h", "--help"):
            raise ShowHelp
        if opt == "-f":
            fmt = value
        elif opt == "-F":
            backing_fmt = value
        elif opt == "-b":
            backing = value
        elif opt == "-u":
            unsafe = True
    if len(operands) != 1:
        raise UsageError("Expecting one image file name")
    if not backing:
        raise UsageError("Must specify backing file (-b); blockfmt cannot remove a backing file")
    rebase(operands[0], backing, format=fmt, backing_format=backing_fmt, unsafe=unsafe, host=host)
    return EXIT_OK
