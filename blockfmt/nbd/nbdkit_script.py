"""The script ``nbdkit python`` loads: make blockfmt importable, then expose the plugin callbacks.

nbdkit embeds the system's libpython (Debian: /usr/bin/python3's), whose ``sys.path`` knows
nothing of the virtualenv or prefix blockfmt was installed into. ``blockfmt-nbd`` passes its own
import directories in ``BLOCKFMT_NBD_SYS_PATH``; each is added with :func:`site.addsitedir` so the
``.pth`` files there (editable installs) take effect too. The launcher has already checked that
nbdkit's Python has the same major.minor version as the one blockfmt was installed for, so compiled
dependencies load.

This file is run as ``__main__`` by nbdkit, not imported as part of the package: it may only use
absolute imports.
"""

import os
import site
import sys

for _entry in os.environ.get("BLOCKFMT_NBD_SYS_PATH", "").split(os.pathsep):
    if _entry and _entry not in sys.path:
        site.addsitedir(_entry)

from blockfmt.nbd.nbdkit_plugin import *  # noqa: E402, F403
