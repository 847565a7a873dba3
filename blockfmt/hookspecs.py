"""The hooks a format plugin implements. Every hook, and nothing else, is declared here.

A plugin is a module (or object) with functions marked ``@blockfmt.hookimpl`` and named after
these specs, registered through the ``blockfmt.formats`` entry-point group::

    [project.entry-points."blockfmt.formats"]
    myfmt = "myfmt_plugin"

The built-in ``raw`` format and the ``vhdx`` and ``vdi`` plugins are registered by the host
directly and keep to the same contract. An implementation may accept a subset of a spec's
arguments (pluggy passes by keyword).

Dispatch is by format: ``blockfmt_open``, ``blockfmt_create`` and ``blockfmt_check`` are called
only on the plugin whose ``blockfmt_formats`` declared the format, so an implementation never
sees another plugin's format and needs no guard; ``format`` tells a plugin with several formats
which one is meant. ``blockfmt_probe`` goes to every plugin and the best score wins.

Per-request I/O (the *read* and *write* operations) is not a hook call: :func:`blockfmt_open`
returns a :class:`~blockfmt.driver.FormatDriver` whose ``readinto``/``write``/``write_zeroes``/
``discard``/``flush``/``block_status`` methods the image calls directly. Hook dispatch happens once
per open: measured here, one pluggy call over the three built-in plugins took 3.2 us, about half of
a whole 4 KiB VHDX read through the driver (6.1 us), so dispatching every request would slow small
I/O by half; resolved at open, it costs nothing per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .markers import hookspec

if TYPE_CHECKING:
    from .driver import CheckResult, FormatDriver, FormatSpec, RepairMode
    from .fileio import ImageFile

# -------------------------------------------------------------------------
# Registration hooks: called once when the host starts
# -------------------------------------------------------------------------


@hookspec
def blockfmt_formats() -> list[FormatSpec]:
    """Return the formats this plugin provides.

    Called by the host once per plugin, after all plugins are loaded. A plugin returning a format
    name another plugin already provides is skipped and reported (a plugin registered by hand
    raises :class:`~blockfmt.errors.PluginError` instead), naming both plugins.

    :returns: the plugin's :class:`~blockfmt.driver.FormatSpec` list (may be empty).
    """


# -------------------------------------------------------------------------
# Image hooks: called per operation, with the format chosen by the caller or by probing
# -------------------------------------------------------------------------


@hookspec
def blockfmt_probe(head: bytes, filename: str) -> tuple[str, int] | None:
    """Say whether the file that starts with *head* looks like one of this plugin's formats.

    Called by the host when no format was given. Every plugin is asked; the highest score wins,
    as QEMU's ``bdrv_probe`` does. ``raw`` answers 1 to everything, so it only wins when no one
    else claims the file.

    :param head: the first bytes of the file (up to 2048, fewer for short files).
    :param filename: the file name, for formats that look at extensions.
    :returns: ``(format_name, score)`` with score 1..100, or None when not recognised.
    """


@hookspec(firstresult=True)
def blockfmt_open(
    format: str, file: ImageFile, read_only: bool, options: dict[str, Any]
) -> FormatDriver | None:
    """Open an image of *format* stored in *file*.

    Called by :func:`blockfmt.open`, on the plugin that declared *format* only.

    :param format: the format name (one of this plugin's).
    :param file: the opened file; owned by the host, the driver must not close it.
    :param read_only: whether writes will be refused; a plugin must not modify the file then.
    :param options: format-specific open options, already checked by the host against the
        ``open_options`` the format's :class:`~blockfmt.driver.FormatSpec` declares.
    :returns: a :class:`~blockfmt.driver.FormatDriver`; None means the plugin cannot open it
        after all, which the host reports as an unsupported format.
    :raises CorruptImageError: when the image is invalid.
    :raises UnsupportedFeatureError: when it uses a feature not implemented.
    """


@hookspec(firstresult=True)
def blockfmt_create(
    format: str, file: ImageFile, size: int, options: dict[str, Any], exact: bool
) -> bool | None:
    """Write a new, empty image of *format* and virtual *size* into the empty *file*.

    Called by :func:`blockfmt.create` after it parsed *options* against the format's
    :class:`~blockfmt.driver.CreateOption` list, on the plugin that declared *format* only.

    :param format: the format name (one of this plugin's).
    :param file: the empty file to write into; owned by the host, the plugin must not close it.
    :param size: the virtual disk size in bytes, as given (the plugin rounds it where qemu-img does).
    :param options: every create option of the format but ``size``, typed: int sizes and numbers,
        bool flags, str; None where unset and without default.
    :param exact: False for ``qemu-img create`` semantics: options absent from the command line
        hold their defaults and the format may round values silently, as QEMU's
        ``bdrv_co_create_opts`` do. True for QMP ``blockdev-create`` semantics: absent options are
        None and every value is taken as given, so a value qemu-img would round is an error.

    :returns: True once the image is written; None when the format cannot create images.
    :raises InvalidOptionError: with QEMU's message for invalid sizes or option values.
    """


@hookspec(firstresult=True)
def blockfmt_check(format: str, driver: FormatDriver, repair: RepairMode) -> CheckResult | None:
    """Check the consistency of an open image, repairing what *repair* allows.

    Called by :meth:`blockfmt.Image.check`, on the plugin that declared *format* only. The image
    is open read-write when *repair* is not ``RepairMode.NONE``. A check works through the
    driver's public methods, like any other caller.

    :param format: the format name (one of this plugin's).
    :param driver: the driver this plugin's ``blockfmt_open`` returned for the image.
    :param repair: what may be fixed: nothing, leaks, or everything safe (qemu-img ``-r``).
    :returns: a :class:`~blockfmt.driver.CheckResult`; None when the format has no check, which
        the host reports as :class:`~blockfmt.errors.UnsupportedOperationError` as qemu-img does.
    """


# -------------------------------------------------------------------------
# Tooling hooks: called by test and fuzzing tools, never on the I/O path
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def blockfmt_stamp_checksum(format: str, structure: bytearray, field: int) -> bool | None:
    """Recompute, in place, the checksum of one on-disk structure of *format*.

    Called by :mod:`blockfmt.testing.fuzz` on the plugin that declared *format* only: a fuzzer that
    damages a structure on purpose fixes its checksum so the damage gets past the checksum check
    into the logic behind it. The rule (algorithm, byte order, which bytes count, the field taken
    as zero) stays the format's own, so the fuzzer keeps no copy of it.

    :param format: the format name (one of this plugin's).
    :param structure: the bytes the checksum covers, from the structure's first byte on.
    :param field: the offset in *structure* of the checksum field.
    :returns: True once stamped; None when the format keeps no checksums.
    """
