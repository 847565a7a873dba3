"""Serve any image blockfmt can open over NBD, through nbdkit's Python plugin.

nbdkit does the protocol (handshake, structured replies, TLS, filters); blockfmt supplies the
disk. :mod:`.export` maps NBD requests onto an open :class:`blockfmt.Image`, :mod:`.nbdkit_plugin`
exposes that as nbdkit's Python callbacks, :mod:`.nbdkit_script` is the file nbdkit loads, and
:mod:`.launcher` builds the ``nbdkit`` command line that ``blockfmt-nbd`` runs.
"""
