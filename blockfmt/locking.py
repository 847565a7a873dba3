"""QEMU-compatible image locking: open-file-description byte-range locks.

QEMU 7.2 (``block/file-posix.c``) advertises what each user of an image file does and what it
tolerates from others with shared (``F_RDLCK``) OFD locks on single bytes:

* byte ``100 + i`` ("perm" byte) while it *holds* permission *i*;
* byte ``200 + i`` ("shared" byte) while it does *not share* permission *i* with others.

An opener first takes its own bytes, then looks (``F_OFD_GETLK`` with ``F_WRLCK``) for other
descriptions' locks that conflict: a shared byte on a permission it wants (``Failed to get "write"
lock``), or a perm byte on a permission it refuses to share (``Failed to get shared "write"
lock``). Taking before looking means two racing openers can both fail but never both succeed.
Locks of the same open file description never conflict with each other, and closing the
descriptor drops them all, so a crashed process never leaves a stale lock behind.

Measured with ``/proc/locks`` against qemu-io / qemu-storage-daemon 7.2 (there is no graph-mod
permission in 7.2, so only bytes 100-103 and 200-203 are used):

============================  =================  ======================
open                          perm bytes         shared (unshared) bytes
============================  =================  ======================
vhdx/vdi read-write           100 101 103        201 203
vhdx/vdi read-only            100                201 203
vhdx/vdi read-only ``-U``     100                (none)
raw read-write                100 101            (none)
raw read-only                 100                (none)
create (``raw_co_create``)    101 103            203
============================  =================  ======================

Format nodes with metadata forbid others to write or resize their file
(``bdrv_default_perms_for_storage``, ``BDRV_CHILD_METADATA``); the raw format passes its user's
permissions through unchanged.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import os
import struct

from .errors import BlockIOError, ImageLockedError, InvalidOptionError
from .records import FrozenRecord

__all__ = [
    "CREATE_LOCK",
    "LOCK_PERM_BASE",
    "LOCK_SHARED_BASE",
    "ImageLock",
    "LockRequest",
    "Permission",
    "open_lock_request",
]

#: Linux ``fcntl`` commands for open-file-description locks (``<asm-generic/fcntl.h>``); Python's
#: :mod:`fcntl` does not export them.
F_OFD_GETLK = 36
F_OFD_SETLK = 37

#: first "perm" byte, QEMU's ``RAW_LOCK_PERM_BASE``
LOCK_PERM_BASE = 100
#: first "shared" byte, QEMU's ``RAW_LOCK_SHARED_BASE``
LOCK_SHARED_BASE = 200

#: ``struct flock`` on Linux (64-bit ``off_t``); the trailing ``0q`` pads it to its C size, 32 bytes.
_FLOCK = struct.Struct("@hhqqi0q")

_LOCK_BUSY_ERRNOS = (errno.EAGAIN, errno.EACCES)


class Permission(enum.IntFlag):
    """QEMU's ``BLK_PERM_*`` bits (``include/block/block-common.h``, 7.2); bit *i* uses byte base + i."""

    CONSISTENT_READ = 0x01
    WRITE = 0x02
    WRITE_UNCHANGED = 0x04
    RESIZE = 0x08

    @property
    def qemu_name(self) -> str:
        """The name ``bdrv_perm_names`` prints ("consistent read", "write unchanged", ...)."""
        return (self.name or "").lower().replace("_", " ")


ALL_PERMISSIONS = (
    Permission.CONSISTENT_READ | Permission.WRITE | Permission.WRITE_UNCHANGED | Permission.RESIZE
)


class LockRequest(FrozenRecord):
    """What an opener holds (*perm*) and what it lets others hold (*shared*)."""

    _fields = ("perm", "shared")
    __slots__ = _fields
    perm: Permission
    shared: Permission

    def __init__(self, perm: Permission, shared: Permission) -> None:
        self._fill(perm, shared)


#: ``raw_co_create``: write and resize the file, and let nobody resize it meanwhile
CREATE_LOCK = LockRequest(Permission.WRITE | Permission.RESIZE, ALL_PERMISSIONS & ~Permission.RESIZE)


def open_lock_request(*, data_only: bool, read_only: bool, force_share: bool) -> LockRequest:
    """Return the permissions qemu-img / qemu-io take when they open an image this way.

    :param data_only: the format has no metadata of its own (:attr:`FormatSpec.data_only`, raw),
        so, as QEMU's raw node, it neither resizes nor refuses other writers.

    :param force_share: qemu-img ``-U``: share every permission (still hold consistent read).
    :raises InvalidOptionError: for *force_share* on a writable open, with QEMU's message.
    """
    if force_share and not read_only:
        raise InvalidOptionError("force-share=on can only be used with read-only images")
    perm = Permission.CONSISTENT_READ
    if not read_only:
        perm |= Permission.WRITE
    shared = ALL_PERMISSIONS
    if not data_only:
        if not read_only:
            perm |= Permission.RESIZE
        if not force_share:
            shared &= ~(Permission.WRITE | Permission.RESIZE)
    return LockRequest(perm, shared)


def _flock(lock_type: int, offset: int) -> bytes:
    return _FLOCK.pack(lock_type, os.SEEK_SET, offset, 1, 0)


class ImageLock:
    """The lock bytes one open file description holds on an image file.

    Closing the descriptor releases them; :meth:`release` does it explicitly.

    :param fd: a descriptor opened for reading (``F_RDLCK`` needs read access).
    :param filename: the name the hint shows, as the user gave it.
    """

    def __init__(self, fd: int, filename: str) -> None:
        self._fd = fd
        self._filename = filename
        self._held: list[int] = []

    def acquire(self, request: LockRequest) -> None:
        """Take the bytes of *request*, then fail if another description conflicts.

        On failure every byte this call took is released again.

        :raises ImageLockedError: when another process conflicts (QEMU's message and hint).
        :raises BlockIOError: when the file system refuses the lock for another reason.
        """
        wanted = [LOCK_PERM_BASE + bit for bit in _bit_indexes(request.perm)]
        wanted += [LOCK_SHARED_BASE + bit for bit in _bit_indexes(ALL_PERMISSIONS & ~request.shared)]
        try:
            for offset in wanted:
                if offset not in self._held:
                    self._set(fcntl.F_RDLCK, offset, f"Failed to lock byte {offset}")
                    self._held.append(offset)
            self._check(request)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Drop every byte held (best effort: the descriptor's close drops them anyway)."""
        held, self._held = self._held, []
        for offset in held:
            try:
                fcntl.fcntl(self._fd, F_OFD_SETLK, _flock(fcntl.F_UNLCK, offset))
            except OSError:
                pass

    def _check(self, request: LockRequest) -> None:
        """QEMU's ``raw_check_lock_bytes``: shared bytes of our perms, then perm bytes we refuse."""
        for bit in _bit_indexes(request.perm):
            if self._is_locked_by_other(LOCK_SHARED_BASE + bit):
                self._refuse(f'Failed to get "{Permission(1 << bit).qemu_name}" lock')
        for bit in _bit_indexes(ALL_PERMISSIONS & ~request.shared):
            if self._is_locked_by_other(LOCK_PERM_BASE + bit):
                self._refuse(f'Failed to get shared "{Permission(1 << bit).qemu_name}" lock')

    def _is_locked_by_other(self, offset: int) -> bool:
        """Would an exclusive lock on *offset* conflict? (Our own description never conflicts.)"""
        try:
            answer = fcntl.fcntl(self._fd, F_OFD_GETLK, _flock(fcntl.F_WRLCK, offset))
        except OSError as err:
            raise BlockIOError.from_os_error(err, f"Failed to get lock byte {offset}") from err
        return _FLOCK.unpack(answer)[0] != fcntl.F_UNLCK

    def _set(self, lock_type: int, offset: int, what: str) -> None:
        try:
            fcntl.fcntl(self._fd, F_OFD_SETLK, _flock(lock_type, offset))
        except OSError as err:
            if err.errno in _LOCK_BUSY_ERRNOS:
                self._refuse(what)
            raise BlockIOError.from_os_error(err, what) from err

    def _refuse(self, message: str) -> None:
        raise ImageLockedError(message, hint=f"Is another process using the image [{self._filename}]?")


def _bit_indexes(perms: Permission) -> list[int]:
    return [bit for bit in range(ALL_PERMISSIONS.bit_length()) if perms & (1 << bit)]
