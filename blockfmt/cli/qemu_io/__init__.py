"""qemu-io's commands for ``blockfmt-io``: one module per command group.

:mod:`.session` holds what every command shares (the open image, argument parsing, error texts),
:mod:`.rw` the I/O commands, :mod:`.misc` the others, :mod:`.commands` the table ``help`` and the
command loop look commands up in.
"""
