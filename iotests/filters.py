"""Output filters, the same normalisations qemu-iotests apply (``common.filter``, ``iotests.py``).

Every filter is a pure ``str -> str`` function, so a scenario composes them per step exactly as
the original shell pipeline or Python ``log(..., filters=[...])`` call did. Both backends go
through the same filters; only then are their outputs compared with each other and with the
stored ``.out`` file.
"""

from __future__ import annotations

import re

__all__ = [
    "filter_img_create",
    "filter_img_info",
    "filter_img_info_py",
    "filter_imgfmt",
    "filter_prog_names",
    "filter_qemu_io",
    "filter_qmp_testfiles",
    "filter_testdir",
]

#: ``_filter_qemu_io``: the timing line of every qemu-io request
_QEMU_IO_TIMING = re.compile(
    r"[0-9]* ops; [0-9/:. sec]* \([0-9/.inf]* [EPTGMKiBbytes]*/sec and [0-9/.inf]* ops/sec\)"
)
_QEMU_IO_TIMING_REPLACEMENT = "X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)"

#: blockfmt's CLIs print their own names where QEMU's print ``qemu-img:`` / ``qemu-io:``
_PROG_NAMES = (
    (re.compile(r"\bblockfmt-img\b"), "qemu-img"),
    (re.compile(r"\bblockfmt-io\b"), "qemu-io"),
)

#: ``_filter_img_create`` keeps only these options of the ``Formatting ...`` line
_CREATE_KEPT_OPTIONS = ("fmt", "size", "backing", "preallocation", "encryption", "data_file")
_CREATE_OPTION = re.compile(r"([a-z_.-]+)=('[^']*'|\S+)")


def filter_testdir(text: str, test_dir: str) -> str:
    """``_filter_testdir``: the scratch directory becomes ``TEST_DIR``."""
    return text.replace(f"{test_dir}/", "TEST_DIR/")


def filter_imgfmt(text: str, imgfmt: str) -> str:
    """Every spelling of the format name becomes ``IMGFMT`` (as ``_img_info``'s sed does)."""
    return text.replace(imgfmt, "IMGFMT")


def filter_qemu_io(text: str) -> str:
    """``_filter_qemu_io``: timing figures vanish, the interactive prompt is dropped."""
    return _QEMU_IO_TIMING.sub(_QEMU_IO_TIMING_REPLACEMENT, text).replace("qemu-io> ", "")


def filter_prog_names(text: str) -> str:
    """Map blockfmt's program names onto QEMU's, so error prefixes and hints compare equal."""
    for pattern, name in _PROG_NAMES:
        text = pattern.sub(name, text)
    return text


def filter_img_create(text: str, test_dir: str, imgfmt: str) -> str:
    """``_filter_img_create``: test paths and format hidden, only generic options kept.

    qemu-img prints every format option it set (``log_size=1048576 block_size=0``); the iotests
    keep ``fmt``, ``size`` and a few generic ones so one ``.out`` fits every format.
    """
    lines = []
    for line in text.splitlines(keepends=True):
        head, sep, options = line.partition(", fmt=")
        if line.startswith("Formatting '") and sep:
            kept = [
                f"{key}={value}"
                for key, value in _CREATE_OPTION.findall("fmt=" + options)
                if key.split("_")[0] in _CREATE_KEPT_OPTIONS or key in _CREATE_KEPT_OPTIONS
            ]
            line = head + ", " + " ".join(kept) + ("\n" if line.endswith("\n") else "")
        lines.append(filter_imgfmt(filter_testdir(line, test_dir), imgfmt))
    return "".join(lines)


def filter_img_info(text: str, test_dir: str, imgfmt: str) -> str:
    """``_img_info`` (common.rc): drop ``disk size`` and the format-specific section.

    The section runs from ``Format specific information:`` to the next empty line, which is kept.
    """
    lines = []
    discarding = False
    for line in text.splitlines():
        if line.startswith("disk size:") or "actual-size" in line:
            continue
        if line == "Format specific information:":
            discarding = True
        if discarding:
            if line:
                continue
            discarding = False
        line = line.replace(test_dir, "TEST_DIR")
        lines.append(filter_imgfmt(line, imgfmt))
    return "".join(f"{line}\n" for line in lines)


def filter_img_info_py(text: str, filename: str, test_dir: str, imgfmt: str) -> str:
    """``iotests.filter_img_info``: the image path becomes ``TEST_IMG``, sizes on disk vanish."""
    lines = []
    for line in text.split("\n"):
        if "disk size" in line or "actual-size" in line:
            continue
        line = line.replace(filename, "TEST_IMG").replace(test_dir, "TEST_DIR")
        line = filter_imgfmt(line, imgfmt)
        line = re.sub(r"uuid: [-a-f0-9]+", "uuid: XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX", line)
        lines.append(line)
    return "\n".join(lines)


def filter_qmp_testfiles(text: str, test_dir: str, pid: int) -> str:
    """``iotests.filter_qmp_testfiles``: ``<test_dir>/<pid>-name`` becomes ``TEST_DIR/PID-name``."""
    return text.replace(f"{test_dir}/{pid}-", "TEST_DIR/PID-").replace(test_dir, "TEST_DIR")
