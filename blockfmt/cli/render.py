"""qemu-img's and qemu-io's exact output texts, as pure functions from values to strings.

Nothing here does I/O or knows a format: the commands in :mod:`blockfmt.cli.img` and
:mod:`blockfmt.cli.io` hand over library values (:class:`~blockfmt.ImageInfo`,
:class:`~blockfmt.CheckResult`, :class:`~blockfmt.Extent`) and print what comes back.

QEMU prints JSON from a ``QDict``, a 512-bucket hash table, so the key order of ``--output=json``
is the bucket order of QEMU's ``tdb_hash`` (keys in one bucket come newest first). That order is
reproduced by :func:`qdict_order` instead of being hard-coded per command, so new keys land where
QEMU would put them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from typing import Any

from ..driver import CheckResult, CreateOption, Extent, FormatSpec
from ..records import FrozenRecord

__all__ = [
    "MAP_HUMAN_HEADER",
    "InfoFacts",
    "check_human",
    "check_json",
    "check_repaired",
    "cvtstr",
    "dump_buffer",
    "formatting_line",
    "info_chain_human",
    "info_chain_json",
    "info_human",
    "info_json",
    "io_report",
    "map_human",
    "map_json",
    "option_help",
    "progress",
    "qdict_order",
    "qobject_json",
    "size_to_str",
]

#: QDICT_BUCKET_MAX in qobject/qdict.c
QDICT_BUCKETS = 512
_U32 = 0xFFFFFFFF

#: how ``-o help`` names each CreateOption type (QEMU's ``opt_type_to_string``)
OPTION_TYPE_NAMES = {"size": "size", "bool": "bool (on/off)", "number": "num", "string": "str"}
#: ``-o help`` pads ``  name=<type>`` to this width before `` - help``
OPTION_HELP_COLUMN = 24
PROTOCOL_OPTIONS_NOTE = (
    "\nThe protocol level may support further options.\n"
    "Specify the target filename to include those options.\n"
)

#: units of ``size_to_str`` (qemu's util/cutils.c), one per power of 1024
_SIZE_UNITS = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
#: units of qemu-io's ``cvtstr``, largest first, with their byte values
_IO_UNITS = (
    ("EiB", 1 << 60),
    ("PiB", 1 << 50),
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
)
#: bytes per line of qemu-io ``read -v``
DUMP_LINE_BYTES = 16
NANOSECONDS = 1_000_000_000
SECONDS_PER_MINUTE = 60
SECONDS_PER_HOUR = 3600


# -------------------------------------------------------------------------
# JSON as QEMU's qobject layer writes it
# -------------------------------------------------------------------------


def _tdb_hash(key: str) -> int:
    """QEMU's ``tdb_hash`` (qobject/qdict.c), with C's 32-bit unsigned wrap-around."""
    raw = key.encode()
    value = (0x238F13AF * len(raw)) & _U32
    for i, byte in enumerate(raw):
        value = (value + (byte << (i * 5 % 24))) & _U32
    return (1103515243 * value + 12345) & _U32


def qdict_order(keys: Sequence[str]) -> list[str]:
    """Return *keys* (given in insertion order) in the order a QEMU ``QDict`` iterates them."""
    position = {key: i for i, key in enumerate(keys)}
    return sorted(keys, key=lambda k: (_tdb_hash(k) % QDICT_BUCKETS, -position[k]))


def qobject_json(fields: dict[str, Any]) -> str:
    """A flat dict as ``qobject_to_json_pretty`` prints it (4-space indent, QDict key order)."""
    import json  # only JSON output needs it: a few ms of every human-readable start

    lines = [f"    {json.dumps(key)}: {_json_scalar(fields[key])}" for key in qdict_order(list(fields))]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _json_scalar(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


# -------------------------------------------------------------------------
# qemu-img create
# -------------------------------------------------------------------------


def option_help(spec: FormatSpec) -> str:
    """``qemu-img create -f fmt -o help`` without a file name: lines sorted as strings."""
    lines = []
    for option in spec.create_options:
        line = f"  {option.name}=<{OPTION_TYPE_NAMES.get(option.type, option.type)}>"
        if option.help:
            line = f"{line:<{OPTION_HELP_COLUMN}} - {option.help}"
        lines.append(line)
    body = "".join(f"{line}\n" for line in sorted(lines, key=lambda s: s.encode()))
    return f"Supported {spec.name} options:\n{body}{PROTOCOL_OPTIONS_NOTE}"


def formatting_line(filename: str, spec: FormatSpec, values: dict[str, Any], given: Iterable[str]) -> str:
    """``Formatting '<file>', fmt=<fmt> size=... opt=...`` as ``bdrv_img_create`` prints it.

    An option appears when the user gave it or when it has a default, in the format's order.

    :param values: typed values of every option (``size`` included).
    :param given: names of the options the user set.
    """
    given = set(given)
    parts = [f"fmt={spec.name}"]
    for option in spec.create_options:
        if option.name in given or option.default is not None:
            parts.append(f"{option.name}={_option_value(option, values[option.name])}")
    return f"Formatting '{filename}', {' '.join(parts)}\n"


def _option_value(option: CreateOption, value: Any) -> str:
    """Bools as ``on``/``off``, sizes and numbers in bytes, strings bare (qemu-img 7.2 quotes none)."""
    if option.type == "bool":
        return "on" if value else "off"
    return str(value)


# -------------------------------------------------------------------------
# qemu-img info
# -------------------------------------------------------------------------


def size_to_str(value: int) -> str:
    """QEMU's ``size_to_str``: three significant digits, switching unit at 1000 of the smaller."""
    _, exponent = math.frexp(value / (1000.0 / 1024.0))
    index = int((exponent - 1) / 10)  # C division truncates toward zero (value 0 gives index 0)
    return f"{value / (1 << (index * 10)):0.3g} {_SIZE_UNITS[index]}B"


class InfoFacts(FrozenRecord):
    """What ``qemu-img info`` shows about an open image.

    :ivar actual_size: bytes on disk, None when unknown (printed as ``unavailable``).
    :ivar cluster_size: None or 0 when the format has none (raw): the line is left out.
    :ivar backing_filename: the parent's name as the image stores it; None without a backing file.
    :ivar full_backing_filename: that name taken from the image's directory (QEMU's combined path).
    """

    _fields = (
        "filename",
        "format",
        "virtual_size",
        "actual_size",
        "cluster_size",
        "dirty",
        "backing_filename",
        "full_backing_filename",
        "backing_format",
    )
    __slots__ = _fields
    filename: str
    format: str
    virtual_size: int
    actual_size: int | None
    cluster_size: int | None
    dirty: bool
    backing_filename: str | None
    full_backing_filename: str | None
    backing_format: str | None

    def __init__(
        self,
        filename: str,
        format: str,
        virtual_size: int,
        actual_size: int | None,
        cluster_size: int | None,
        dirty: bool,
        backing_filename: str | None = None,
        full_backing_filename: str | None = None,
        backing_format: str | None = None,
    ) -> None:
        self._fill(
            filename,
            format,
            virtual_size,
            actual_size,
            cluster_size,
            dirty,
            backing_filename,
            full_backing_filename,
            backing_format,
        )


def info_human(facts: InfoFacts) -> str:
    """``qemu-img info`` human output (``bdrv_image_info_dump``)."""
    disk = "unavailable" if facts.actual_size is None else size_to_str(facts.actual_size)
    text = (
        f"image: {facts.filename}\nfile format: {facts.format}\n"
        f"virtual size: {size_to_str(facts.virtual_size)} ({facts.virtual_size} bytes)\ndisk size: {disk}\n"
    )
    if facts.cluster_size:
        text += f"cluster_size: {facts.cluster_size}\n"
    if facts.dirty:
        text += "cleanly shut down: no\n"
    if facts.backing_filename is not None:
        text += f"backing file: {facts.backing_filename}"
        if facts.full_backing_filename != facts.backing_filename:
            text += f" (actual path: {facts.full_backing_filename})"
        text += "\n"
        if facts.backing_format is not None:
            text += f"backing file format: {facts.backing_format}\n"
    return text


def info_json(facts: InfoFacts) -> str:
    """``qemu-img info --output=json``: ImageInfo members in QAPI insertion order, absent ones left out."""
    fields: dict[str, Any] = {"filename": facts.filename, "format": facts.format, "dirty-flag": facts.dirty}
    if facts.actual_size is not None:
        fields["actual-size"] = facts.actual_size
    fields["virtual-size"] = facts.virtual_size
    if facts.cluster_size:
        fields["cluster-size"] = facts.cluster_size
    if facts.backing_filename is not None:
        fields["backing-filename"] = facts.backing_filename
        fields["full-backing-filename"] = facts.full_backing_filename
        if facts.backing_format is not None:
            fields["backing-filename-format"] = facts.backing_format
    return qobject_json(fields)


def info_chain_human(chain: Sequence[InfoFacts]) -> str:
    """``qemu-img info --backing-chain``: each image's block, a blank line between them."""
    return "\n".join(info_human(facts) for facts in chain)


def info_chain_json(chain: Sequence[InfoFacts]) -> str:
    """``qemu-img info --backing-chain --output=json``: a list of the images' objects, top first."""
    blocks = ["    " + info_json(facts).rstrip("\n").replace("\n", "\n    ") for facts in chain]
    return "[\n" + ",\n".join(blocks) + "\n]\n"


# -------------------------------------------------------------------------
# qemu-img check
# -------------------------------------------------------------------------


def check_repaired(result: CheckResult) -> str:
    """The block qemu-img prints after a repair, before checking again (070.out)."""
    return (
        "The following inconsistencies were found and repaired:\n\n"
        f"    {result.leaks_fixed} leaked clusters\n"
        f"    {result.corruptions_fixed} corruptions\n\n"
        "Double checking the fixed image now...\n"
    )


def check_human(result: CheckResult) -> str:
    """``dump_human_image_check``."""
    if result.clean:
        text = "No errors were found on the image.\n"
    else:
        text = ""
        if result.corruptions:
            text += (
                f"\n{result.corruptions} errors were found on the image.\n"
                "Data may be corrupted, or further writes to the image may corrupt it.\n"
            )
        if result.leaks:
            text += (
                f"\n{result.leaks} leaked clusters were found on the image.\n"
                "This means waste of disk space, but no harm to data.\n"
            )
        if result.check_errors:
            text += f"\n{result.check_errors} internal errors have occurred during the check.\n"
    if result.total_clusters and result.allocated_clusters:
        allocated = result.allocated_clusters
        text += (
            f"{allocated}/{result.total_clusters} = "
            f"{allocated * 100.0 / result.total_clusters:0.2f}% allocated, "
            f"{(result.fragmented_clusters or 0) * 100.0 / allocated:0.2f}% fragmented, "
            f"{(result.compressed_clusters or 0) * 100.0 / allocated:0.2f}% compressed clusters\n"
        )
    if result.image_end_offset:
        text += f"Image end offset: {result.image_end_offset}\n"
    return text


def check_json(result: CheckResult, filename: str, format: str) -> str:
    """``dump_json_image_check``: optional members only when non-zero (``collect_image_check``)."""
    fields: dict[str, Any] = {"filename": filename, "format": format, "check-errors": result.check_errors}
    optional = (
        ("image-end-offset", result.image_end_offset),
        ("corruptions", result.corruptions),
        ("leaks", result.leaks),
        ("corruptions-fixed", result.corruptions_fixed),
        ("leaks-fixed", result.leaks_fixed),
        ("total-clusters", result.total_clusters),
        ("allocated-clusters", result.allocated_clusters),
        ("fragmented-clusters", result.fragmented_clusters),
        ("compressed-clusters", result.compressed_clusters),
    )
    fields.update((key, value) for key, value in optional if value)
    return qobject_json(fields)


# -------------------------------------------------------------------------
# qemu-img map
# -------------------------------------------------------------------------

MAP_HUMAN_HEADER = f"{'Offset':<16}{'Length':<16}{'Mapped to':<16}File\n"


def _c_hex(value: int) -> str:
    """C's ``%#x``: no ``0x`` prefix for zero."""
    return f"{value:#x}" if value else "0"


def map_human(extents: Iterable[Extent], filename: str, layer_names: Sequence[str] = ()) -> tuple[str, bool]:
    """The data rows of ``qemu-img map`` (no header), and whether every data extent could be shown.

    *layer_names* are the file names of a backing chain, top first; a row names the layer
    (:attr:`Extent.depth`) that holds it, as qemu-img does.

    The human format lists only extents holding data, so zero and unallocated runs never show.
    qemu-img stops at the first data extent without a host offset (it has nothing to print there).
    """
    rows = []
    for ext in extents:
        if not ext.data:
            continue
        if ext.host_offset is None:
            return "".join(rows), False
        if not ext.zero:
            name = layer_names[ext.depth] if ext.depth < len(layer_names) else filename
            rows.append(
                f"{_c_hex(ext.offset):<16}{_c_hex(ext.length):<16}{_c_hex(ext.host_offset):<16}{name}\n"
            )
    return "".join(rows), True


def map_json(extents: Sequence[Extent], *, empty_at: int = 0) -> str:
    """``qemu-img map --output=json``: one extent per line, with the layer that holds it (``depth``).

    An empty range still prints one zero-length, absent extent at *empty_at*, as qemu-img does.
    """
    if not extents:
        extents = [Extent(empty_at, 0, data=False, zero=False, present=False)]
    rows = []
    for ext in extents:
        row = (
            f'{{ "start": {ext.offset}, "length": {ext.length}, "depth": {ext.depth}, '
            f'"present": {_json_scalar(ext.present)}, "zero": {_json_scalar(ext.zero)}, '
            f'"data": {_json_scalar(ext.data)}'
        )
        if ext.host_offset is not None:
            row += f', "offset": {ext.host_offset}'
        rows.append(row + "}")
    return "[" + ",\n".join(rows) + "]\n"


# -------------------------------------------------------------------------
# qemu-img convert -p
# -------------------------------------------------------------------------


def progress(percent: float) -> str:
    """One progress update (``qemu_progress_print``), ended by a carriage return."""
    return f"    ({percent:3.2f}/100%)\r"


# -------------------------------------------------------------------------
# qemu-io
# -------------------------------------------------------------------------


def cvtstr(value: float) -> str:
    """qemu-io's ``cvtstr``: three decimals and a binary unit; ``.000`` is dropped.

    The unit comes from the bit length (qemu-io prints this twice per request: a loop over
    the units showed in the cost of a 4 KiB write)."""
    if value >= _IO_UNITS[0][1]:
        power = len(_IO_UNITS)  # infinity included (a request that took no measurable time)
    else:
        power = (int(value).bit_length() - 1) // 10 if value >= 1 else 0
    if power:
        text, suffix = f"{value / (1 << 10 * power):.3f}", _IO_UNITS[-power][0]
    else:
        text, suffix = f"{value:f}", "bytes"
    head, dot_zeros, _ = text.partition(".000")
    return f"{head} {suffix}" if dot_zeros else f"{text} {suffix}"


def _timestr(seconds: float) -> str:
    """qemu-io's ``timestr`` without flags: ``SS.ss sec`` under a second, ``H:MM:SS.ss`` after."""
    whole = int(seconds)
    if not whole:
        return f"{seconds:05.2f} sec"
    return (
        f"{whole // SECONDS_PER_HOUR}:{whole % SECONDS_PER_HOUR // SECONDS_PER_MINUTE:02d}:"
        f"{whole % SECONDS_PER_MINUTE + (seconds - whole):05.2f}"
    )


#: elapsed times below this print as 00.00 seconds (half a hundredth, with room for rounding)
_ROUNDS_TO_ZERO_NS = 4_000_000
#: cvtstr of request sizes, which a qemu-io script repeats
_cvtstr_of_size = functools.lru_cache(maxsize=64)(cvtstr)


def io_report(op: str, offset: int, count: int, total: int, ops: int, elapsed_ns: int) -> str:
    """qemu-io's ``print_report``: ``<op> N/N bytes at offset X`` and the timing line."""
    seconds = elapsed_ns / NANOSECONDS
    rate = total / seconds if seconds else math.inf
    op_rate = ops / seconds if seconds else math.inf
    # _timestr without a call or a float format for the common request of a few milliseconds at
    # most (what rounds to 00.00): qemu-io prints this after every request
    if elapsed_ns < _ROUNDS_TO_ZERO_NS:
        elapsed = "00.00 sec"
    else:
        elapsed = f"{seconds:05.2f} sec" if seconds < 1 else _timestr(seconds)
    return (
        f"{op} {total}/{count} bytes at offset {offset}\n"
        f"{_cvtstr_of_size(total)}, {ops} ops; {elapsed} "
        f"({cvtstr(rate)}/sec and {op_rate:.4f} ops/sec)\n"
    )


def dump_buffer(data: bytes, offset: int) -> str:
    """qemu-io ``read -v``: 16 hex bytes a line and the alphanumeric ones as text."""
    lines = []
    for start in range(0, len(data), DUMP_LINE_BYTES):
        chunk = data[start : start + DUMP_LINE_BYTES]
        hex_part = "".join(f"{b:02x} " for b in chunk)
        text = "".join(chr(b) if chr(b).isascii() and chr(b).isalnum() else "." for b in chunk)
        lines.append(f"{offset + start:08x}:  {hex_part} {text}\n")
    return "".join(lines)
