"""Opening an image from a command line, as QEMU's tools do (shared by blockfmt-img and blockfmt-io)."""

from __future__ import annotations

from ..api import open as open_image
from ..errors import UnsupportedFormatError
from ..host import Host
from ..image import Image
from ..raw import FORMAT_NAME as RAW_FORMAT
from .report import Reporter

__all__ = ["PROBED_RAW_WARNING", "open_from_cli"]

#: block.c prints this when probing fell back to raw on a writable open (raw is the probe fallback)
PROBED_RAW_WARNING = (
    "WARNING: Image format was not specified for '{0}' and probing guessed raw.\n"
    "         Automatically detecting the format is dangerous for raw images, "
    "write operations on block 0 will be restricted.\n"
    "         Specify the 'raw' format explicitly to remove the restrictions.\n"
)


def open_from_cli(
    reporter: Reporter,
    host: Host,
    filename: str,
    format: str | None,
    *,
    read_only: bool,
    force_share: bool = False,
) -> Image:
    """Open *filename*; the caller adds the ``Could not open`` context to errors.

    :raises UnsupportedFormatError: ``Unknown driver '<fmt>'`` for an unknown ``-f`` value.
    """
    if format is not None and format not in host.formats:
        raise UnsupportedFormatError(f"Unknown driver '{format}'")
    image = open_image(filename, format, read_only=read_only, force_share=force_share, host=host)
    if format is None and image.format == RAW_FORMAT and not read_only:
        reporter.err(PROBED_RAW_WARNING.format(filename))
    return image
