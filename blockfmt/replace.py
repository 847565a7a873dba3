"""Writing a new file whole or not at all: build it under a temporary name, then rename it into place.

``create`` and ``convert`` both promise that a failure leaves an existing file at the target path
untouched and no half-written file that could pass for complete. A device (anything but a regular
file) cannot be renamed over, so it is written in place.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator

from .errors import BlockFormatError, BlockIOError

__all__ = ["replaced_atomically", "written_in_place"]

#: permissions of a new image, as QEMU's file-posix creates it (before the umask)
NEW_FILE_MODE = 0o644


def written_in_place(target: str) -> bool:
    """True for an existing *target* that is not a regular file (a device): it is written in place.

    :raises BlockIOError: when *target* cannot be examined (``Could not create '<target>'``).
    """
    try:
        return not stat.S_ISREG(os.stat(target).st_mode)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise BlockIOError.from_os_error(err, f"Could not create '{target}'") from err


@contextlib.contextmanager
def replaced_atomically(target: str, shown: str | None = None) -> Iterator[str]:
    """Yield a new, empty temporary file beside *target*; when the block succeeds, rename it to *target*.

    On any failure the temporary file is removed and *target* stays as it was. The temporary
    file lies in *target*'s directory, so the rename never crosses file systems.

    :param shown: the target as the caller named it, for error messages (as qemu-img names it).
    :raises BlockIOError: for an OS error, as ``Could not create '<shown>'``.
    """
    import tempfile  # only here: it pulls in random and shutil, which a plain open never needs

    shown = target if shown is None else shown
    directory, name = os.path.split(os.path.abspath(target))
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{name}.blockfmt-", dir=directory)
    except OSError as err:
        raise BlockIOError.from_os_error(err, f"Could not create '{shown}'") from err
    os.close(fd)
    try:
        yield temp
        os.chmod(temp, NEW_FILE_MODE & ~_umask())
        os.replace(temp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(err, OSError) and not isinstance(err, BlockFormatError):
            raise BlockIOError.from_os_error(err, f"Could not create '{shown}'") from err
        raise


def _umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
