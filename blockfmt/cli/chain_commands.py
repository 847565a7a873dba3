"""The backing-chain side of ``blockfmt-img``: ``commit``, ``rebase``, ``create -b/-F`` and
``info --backing-chain``, as qemu-img 7.2 spells them; the work is done by :mod:`blockfmt.commit`,
:mod:`blockfmt.rebase` and :mod:`blockfmt.chain`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..api import open as open_image
from ..commit import commit
from ..host import Host
from ..image import Image
from ..rebase import rebase
from . import render
from .img_common import Failure, parse_common, size_option
from .opening import image_path
from .report import EXIT_OK, Reporter, UsageError

if TYPE_CHECKING:
    from .img_convert import ProgressPrinter

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
    """``commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit]
    [-d] [-p] filename``: the child keeps its data (``-d`` is how it always works); the rate limit
    is checked and, like the cache mode, changes nothing in the result."""
    parsed = parse_common(args, "f:ht:b:dpqr:", ["help", "object=", "image-opts"])
    base = None
    show_progress = False
    for opt, value in parsed.rest:
        if opt == "-r":
            size_option(value, "rate limit")
        elif opt == "-b":
            base = value
        elif opt == "-p":
            show_progress = True
    filename = _one_operand(parsed.operands)
    path, fmt = image_path(host, filename, parsed.fmt, image_opts=parsed.image_opts)
    if base is not None:
        _check_base(host, path, fmt, base)
    printer = _progress_printer(rep) if show_progress and not parsed.quiet else None
    commit(path, fmt, progress=printer, host=host)
    if printer is not None:
        printer.end()
    if not parsed.quiet:
        rep.out("Image committed.\n")
    return EXIT_OK


def _progress_printer(rep: Reporter) -> ProgressPrinter:
    from .img_convert import ProgressPrinter  # convert's machinery, loaded only for -p

    return ProgressPrinter(rep)


def _one_operand(operands: list[str]) -> str:
    if len(operands) != 1:
        raise UsageError("Expecting one image file name")
    return operands[0]


def _check_base(host: Host, path: str, fmt: str | None, base: str) -> None:
    """``commit -b``: blockfmt commits into the direct parent, so *base* must name it.

    A relative *base* is looked up from the image's directory and from the current one.
    """
    child_dir = os.path.dirname(os.path.abspath(path))
    wanted = {os.path.realpath(os.path.join(child_dir, base)), os.path.realpath(base)}
    with open_image(path, fmt, host=host) as image:
        layers = [os.path.realpath(layer.filename) for layer in image.backing_chain()[1:]]
    if not layers:
        return  # commit itself refuses, with qemu-img's words
    if not wanted.intersection(layers):
        raise Failure(f"Did not find '{base}' in the backing chain of '{path}'")
    if not wanted.intersection(layers[:1]):
        raise Failure(f"blockfmt: commit -b '{base}': only the direct backing file can be the base")


def cmd_rebase(args: list[str], rep: Reporter, host: Host) -> int:
    """``rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p]
    [-u] -b backing_file [-F backing_fmt] filename``."""
    parsed = parse_common(args, "hf:F:b:upt:T:qU", ["help", "object=", "image-opts", "force-share"])
    backing_fmt = backing = None
    unsafe = show_progress = False
    for opt, value in parsed.rest:
        if opt == "-F":
            backing_fmt = value
        elif opt == "-b":
            backing = value
        elif opt == "-u":
            unsafe = True
        elif opt == "-p":
            show_progress = True
    filename = _one_operand(parsed.operands)
    if not backing:
        raise UsageError("Must specify backing file (-b); blockfmt cannot remove a backing file")
    path, fmt = image_path(host, filename, parsed.fmt, image_opts=parsed.image_opts)
    printer = _progress_printer(rep) if show_progress and not parsed.quiet else None
    rebase(path, backing, format=fmt, backing_format=backing_fmt, unsafe=unsafe, progress=printer, host=host)
    if printer is not None:
        printer.end()
    return EXIT_OK
