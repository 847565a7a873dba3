"""Side-by-side benchmark of blockfmt against qemu-img / qemu-io 7.2 (``tox -e bench``).

Every case runs the qemu command and the equivalent blockfmt operation in the same run,
interleaved repeat by repeat, after one untimed warm-up of each (warm page cache), and reports
the median of ``--repeat`` runs (default 5).

How the two sides are measured:

* qemu: wall time of the ``qemu-img``/``qemu-io`` process (its start costs about 5 ms).
* blockfmt: ``worker.py`` runs the same requests in a fresh Python process and reports the time
  of the operation itself, plugin loading included but interpreter start and ``import blockfmt``
  excluded (about 100-150 ms that no format work is done in). Workers keep compiled bytecode in
  the scratch directory (``PYTHONPYCACHEPREFIX``), as an installed package would have it. The
  table also shows the worker's whole wall time (``bf proc``), so nothing is hidden; ``ratio`` =
  blockfmt operation / qemu process, ``r proc`` = blockfmt process / qemu process.

Cases (sizes for the full run; ``--quick`` shrinks them):

* ``convert A->B sparse``: 2 GiB disk, 1 GiB of data in 8 MiB runs at random 8 MiB slots;
  ``convert A->B full``: 1 GiB written everywhere. qemu runs ``qemu-img convert -t writeback``,
  which flushes the target before exiting as ``blockfmt.convert.convert`` does by default (the
  Python API's cache mode is ``writeback``; qemu-img's and blockfmt-img's default for convert,
  ``unsafe``, skips that flush: the ``cvt`` rows compare those). Source images of formats other
  than raw are made by ``qemu-img convert`` from the raw sources, so both sides read the same files.
* ``read FMT``: sequential 1 MiB reads of the whole full image: one ``qemu-io -r -c "read OFF 1M"``
  per MiB in one process, against a ``readinto_at`` loop into one buffer.
* ``write4k FMT`` / ``write64k FMT``: allocating writes into a fresh image made by ``qemu-img
  create`` (default options, 64 GiB): ``qemu-img bench -w -t writeback -d 1 -c COUNT -s SIZE -S
  STEP --pattern=0xa5``, STEP the format's block size so every write allocates a new block, and
  the same offsets written with ``write_at`` (queue depth 1: blockfmt is synchronous). Page cache
  on both sides (``-t none`` would be O_DIRECT for qemu only); both flush at close.
* ``open FMT 64T``: ``qemu-img info`` against open + info + close of a 64 TiB image made by
  ``qemu-img create`` (raw: 8 TiB, as ext4 caps a file at 16 TiB); peak RSS of each process as
  GNU time reports it (see :func:`run_process` for why not ``RUSAGE_CHILDREN``).

``r best`` is the ratio of the fastest run of each side. The targets are judged on medians, but
on a virtual machine medians can mislead: where the memory balloon reports free pages to the
host (virtio-balloon free page reporting, as on the machine this was developed on), touching
fresh memory, such as the page cache of a new 1 GiB output, stalls for 2-4 s at random, on
either side, and in bad phases in most runs. When ``ratio`` and ``r best`` disagree, rerun with
more ``--repeat``.

* ``huge-BAT 64T OP``: a 64 TiB VHDX with 1 MiB blocks (a 512 MiB BAT, 64 Mi entries) made by
  ``qemu-img create -o block_size=1M``: ``qemu-img info``/``check``/``convert`` against
  ``blockfmt-img``, both as whole processes, with the peak RSS of each; the target is a ratio at
  most 1 and blockfmt's peak RSS at most 64 MiB. ``cvt->vhdx`` converts into a new VHDX beside it,
  ``cvt->raw`` into a sparse raw file on tmpfs (ext4 caps a file at 16 TiB). QEMU's VHDX convert
  walks every block of the virtual size (many minutes at 64 TiB), so its side of the convert rows
  is cut at :data:`HUGE_QEMU_LIMIT` seconds: that qemu time is a lower bound.
* ``rand4k vhdx vs LIB``: random 4 KiB reads of the full VHDX (aligned offsets from one seed),
  one call per read, ``Image.readinto_at`` against the same offsets read through libvhdi
  (``pyvhdi``, ``read_buffer_at_offset``), dissect.hypervisor (``VHDX``, ``seek`` + ``read``) and
  plain ``os.preadv`` of 4 KiB at as many random offsets of the file (the floor of a call), all
  measured inside worker processes as the CPU time of the read loop (wall time on a loaded
  machine measures the scheduler); the ``qemu s`` column holds the other side's time. Seconds
  per 100,000 reads (10,000 with ``--quick``), so seconds x 10 is microseconds per call (x 100
  with ``--quick``). A library
  that is not installed (``pip install 'blockfmt[bench]'``) is skipped with the reason printed.
  Target: at or below libvhdi.
* ``start-up FMT``: ``qemu-img info`` against ``blockfmt-img info`` of a small (64 MiB) image, both
  as whole processes (interpreter start, imports and plugin loading included: what a script that
  runs the tool hundreds of times, such as qemu-iotests, pays each time). blockfmt's side is the
  installed console script itself, found next to the running interpreter (``sys.executable``,
  else the environment's scripts directory), never a ``PATH`` lookup that could land on a
  launcher such as a pyenv shim (0.1-0.3 s of its own); it runs with compiled bytecode, as an
  installed package has it. ``floor`` is the interpreter the script names on its ``#!`` line
  running ``-c pass``: what any Python tool pays before its first import, so ``bf proc`` minus
  ``floor`` is blockfmt's own share. Target: ``bf proc`` (median wall time) at most
  :data:`MAX_STARTUP_SECONDS`. Run the rows alone with ``--quick --only start-up --repeat 20``.
* ``cvt FMT->FMT MODE FS``: ``qemu-img convert`` against ``blockfmt-img convert`` of the full
  image into its own format, both as whole processes, on ext4 (the work directory) and on tmpfs
  (``--tmpfs``, default ``/dev/shm``: no device, so CPU cost shows undiluted). ``default`` runs
  each tool with its default target cache mode, what a user typing the command gets (qemu-img's
  is ``unsafe``: the target is not flushed); ``flush`` runs both with ``-t writeback`` (one flush
  at the end). ``floor`` is the wall time of ``cp --sparse=always`` of the same source (followed
  by ``sync`` of the copy for ``flush``): what moving those bytes costs at least.
* ``io -c|stdin CACHE FMT``: one ``qemu-io`` / ``blockfmt-io`` process runs N (10,000; 200 with
  ``--quick``) ``write -P 0xa5 OFF 4k`` commands at random 4 KiB offsets of a fresh 64 MiB image,
  given as N ``-c`` options or piped on stdin, with ``-t writeback`` or the default cache
  (writethrough: a flush after every write). Whole processes on both sides, so the ratio is the
  ratio of the time per command, start-up included; target 1.2.

Every row also shows CPU time, user + system of each side's whole process from ``wait4``
(``q cpu``, ``bf cpu``; for worker rows interpreter start and imports included), and ``cpu r``,
their ratio of medians. ``--load N`` keeps N CPU-spinning processes running while the cases run
(not while their sources are built), to see whether a side slows down more than the other on a
busy machine.

``--only REGEX`` runs the cases whose names it matches, and builds only the source images those
read (a 64 TiB image is made only for the huge-BAT rows). Each row is printed as soon as its case
has finished.

``--check`` exits 1 when a target is missed: ratio <= 1.0 for convert and sequential reads, and
for VHDX allocating writes; a CPU ratio <= 1.5 for the ``cvt`` rows; open below 0.2 s (operation
time) and below 100 MiB peak RSS; start-up at most 0.1 s; huge-BAT at most qemu's time and 64 MiB;
random 4 KiB reads at most libvhdi's time; the ``io`` rows at most 1.2 times qemu-io's time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

WORKER = Path(__file__).resolve().with_name("worker.py")
FORMATS = ("raw", "vhdx", "vdi")
#: the request size of the sequential read case
READ_REQUEST = 1 * MiB
#: the size of the data runs scattered over the sparse source
SPARSE_RUN = 8 * MiB
OPEN_SIZE = 64 * TiB
STARTUP_SIZE = 64 * MiB
#: the start-up target: a whole ``blockfmt-img info`` process, median wall time
MAX_STARTUP_SECONDS = 0.1
#: the many-command qemu-io cases: image size, request size, and the blockfmt/qemu time target
IO_COMMANDS_DISK = 64 * MiB
IO_COMMAND_REQUEST = 4 * KiB
MAX_IO_COMMANDS_RATIO = 1.2
#: a raw disk is a file of its size, and ext4 caps files at 16 TiB
OPEN_SIZE_RAW = 8 * TiB
WRITE_DISK_SIZE = 64 * GiB
WRITE_PATTERN = "0xa5"
#: targets checked by ``--check``
MAX_RATIO = 1.0
#: convert may use at most this much CPU time (user + system) per byte relative to qemu-img
MAX_CPU_RATIO = 1.5
MAX_OPEN_SECONDS = 0.2
MAX_OPEN_RSS = 100 * MiB
#: qemu-img info's "cluster_size" gives the allocation unit; raw has none (a file system block)
RAW_WRITE_STEP = 1 * MiB
#: the huge-BAT image: 64 TiB of 1 MiB blocks, and blockfmt's peak RSS allowed on it
HUGE_SIZE = 64 * TiB
HUGE_BLOCK = 1 * MiB
HUGE_MAX_RSS = 64 * MiB
#: seconds after which qemu's side of a huge-BAT convert is stopped (it grows with the virtual size)
HUGE_QEMU_LIMIT = 20
#: the readers the random-read rows compare with: worker operation, module, PyPI package
RANDOM_READ_PEERS = (
    ("libvhdi", "pyvhdi", "libvhdi-python"),
    ("dissect", "dissect.hypervisor", "dissect.hypervisor"),
    ("preadv", "os", ""),
)


@dataclass(frozen=True)
class Sizes:
    """Data volumes of one run."""

    sparse_disk: int
    sparse_data: int
    full_disk: int
    write_count: int
    #: random 4 KiB reads per run of a rand4k row
    random_reads: int
    #: commands per run of an io row
    io_commands: int


FULL_SIZES = Sizes(
    sparse_disk=2 * GiB,
    sparse_data=1 * GiB,
    full_disk=1 * GiB,
    write_count=1000,
    random_reads=100_000,
    io_commands=10_000,
)
QUICK_SIZES = Sizes(
    sparse_disk=128 * MiB,
    sparse_data=64 * MiB,
    full_disk=32 * MiB,
    write_count=32,
    random_reads=10_000,
    io_commands=200,
)


@dataclass(frozen=True)
class Sample:
    """One timed run of one side."""

    seconds: float  # what the ratio uses
    process_seconds: float
    max_rss: int  # bytes
    #: user + system CPU time of the whole process (children it waited for included)
    cpu_seconds: float


@dataclass(frozen=True)
class ProcessRun:
    """What :func:`run_process` measured of one finished process."""

    seconds: float
    max_rss: int  # bytes
    cpu_seconds: float
    stdout: str


@dataclass
class Case:
    """A named workload with its qemu command, its blockfmt worker call and optional target."""

    name: str
    qemu: list[str]
    worker: list[str]
    prepare: Callable[[], object] = lambda: None
    #: builds what the case reads (source images), once, before its first run: only the cases
    #: ``--only`` selects pay for their sources
    setup: Callable[[], object] = lambda: None
    ratio_target: float | None = None
    #: the highest blockfmt/qemu ratio of median CPU time (user + system) that meets the target
    cpu_target: float | None = None
    open_target: bool = False
    #: both sides are timed as whole processes, blockfmt's included (start-up, many commands)
    whole_process: bool = False
    #: blockfmt's whole process must take at most MAX_STARTUP_SECONDS (the start-up case)
    startup_target: bool = False
    #: blockfmt's peak RSS must stay at most this many bytes
    rss_target: int | None = None
    #: the reference side (the ``qemu`` column) is a worker too, timed by its own report
    reference_worker: bool = False
    #: a third command timed beside both sides (as a whole process): the floor moving the same
    #: bytes costs, e.g. ``cp --sparse=always`` of the source (``floor`` column)
    floor: list[str] | None = None
    qemu_samples: list[Sample] = field(default_factory=list)
    blockfmt_samples: list[Sample] = field(default_factory=list)
    floor_samples: list[Sample] = field(default_factory=list)


def run_process(argv: Sequence[str], env_extra: dict[str, str] | None = None) -> ProcessRun:
    """Run *argv*; return its wall time, its own peak RSS, its CPU time and its stdout.

    The peak RSS comes from GNU time when installed: Linux carries a process's peak RSS across
    ``exec``, so a child forked straight from this (larger) Python process would report at least
    this process's RSS; GNU time forks from its own tiny image. Without it, the child's rusage from
    ``os.wait4`` is used, an upper bound. The CPU time is the child's user + system time from
    ``os.wait4``, which includes the descendants it waited for (the command under GNU time, the
    ``cp`` under ``sh``); GNU time's own share is well under a millisecond.
    """
    env = dict(os.environ, LC_ALL="C", LANG="C", **(env_extra or {}))
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile() as rss,
    ):
        command = [gnu_time, "-f", "%M", "-o", rss.name, *argv] if gnu_time else list(argv)
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # reap it ourselves to get this child's own rusage
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            message = err.read().decode(errors="replace")
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {message}")
        max_rss_kib = int(rss.read().split()[-1]) if gnu_time else usage.ru_maxrss
        cpu = usage.ru_utime + usage.ru_stime
        return ProcessRun(elapsed, max_rss_kib * KiB, cpu, out.read().decode())


def run_side(argv: Sequence[str], *, worker_env: dict[str, str] | None, whole: bool = False) -> Sample:
    """Run one side; a worker (*worker_env* given) reports its own operation time on stdout,
    unless the case times *whole* processes."""
    worker = worker_env is not None and not whole
    run = run_process(argv, worker_env)
    seconds = json.loads(run.stdout.strip().splitlines()[-1])["seconds"] if worker else run.seconds
    return Sample(seconds, run.seconds, run.max_rss, run.cpu_seconds)


def quiet_run(argv: Sequence[str]) -> str:
    return run_process(argv).stdout


class Bench:
    """Builds the source images once, then runs every case."""

    def __init__(
        self,
        workdir: Path,
        sizes: Sizes,
        formats: Sequence[str],
        tools: dict[str, str],
        tmpfs: Path | None = None,
    ) -> None:
        self.dir = workdir
        #: a scratch directory on tmpfs for the rows where CPU time shows (no device under it)
        self.tmpfs = tmpfs
        self.sizes = sizes
        self.formats = formats
        self.img, self.io = tools["qemu-img"], tools["qemu-io"]
        self.python = sys.executable
        #: the sources built so far (see :meth:`need`)
        self._built: set[tuple[str, ...]] = set()

    # -- sources --------------------------------------------------------------

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def _once(self, key: tuple[str, ...], build: Callable[[], object]) -> None:
        if key not in self._built:
            build()
            self._built.add(key)

    def need_sources(self, fmt: str) -> None:
        """The sparse and full FMT images (and the raw ones they are made from)."""
        self._once(("raw",), self.make_raw_sources)
        if fmt != "raw":
            self._once(("fmt", fmt), lambda: self.make_format_sources(fmt))

    def need_tmpfs_source(self, fmt: str) -> Path:
        """The full FMT image copied to tmpfs (the tmpfs cvt rows read it there)."""
        assert self.tmpfs is not None
        copy = self.tmpfs / f"full.{fmt}"
        self.need_sources(fmt)
        self._once(("tmpfs", fmt), lambda: shutil.copyfile(self.path(f"full.{fmt}"), copy))
        return copy

    def make_raw_sources(self) -> None:
        """Write the sparse and the full raw source with incompressible data."""
        rng = random.Random(20240601)
        block = bytearray(rng.randbytes(SPARSE_RUN))
        slots = self.sizes.sparse_disk // SPARSE_RUN
        chosen = sorted(rng.sample(range(slots), self.sizes.sparse_data // SPARSE_RUN))
        with open(self.path("sparse.raw"), "wb") as f:
            f.truncate(self.sizes.sparse_disk)
            for slot in chosen:
                block[:8] = slot.to_bytes(8, "little")
                os.pwrite(f.fileno(), block, slot * SPARSE_RUN)
        with open(self.path("full.raw"), "wb") as f:
            for index in range(self.sizes.full_disk // SPARSE_RUN):
                block[:8] = (index | 1 << 63).to_bytes(8, "little")
                f.write(block)

    def make_format_sources(self, fmt: str) -> None:
        for layout in ("sparse", "full"):
            target = self.path(f"{layout}.{fmt}")
            quiet_run([self.img, "convert", "-f", "raw", "-O", fmt, self.path(f"{layout}.raw"), target])

    def block_size(self, fmt: str) -> int:
        """The allocation unit qemu-img reports for a fresh write-case image."""
        info = json.loads(quiet_run([self.img, "info", "--output=json", self.path(f"fresh.{fmt}")]))
        return int(info.get("cluster-size") or RAW_WRITE_STEP)

    # -- cases ----------------------------------------------------------------

    def worker(self, *args: str) -> list[str]:
        return [self.python, str(WORKER), *args]

    def convert_case(self, src_fmt: str, dst_fmt: str, layout: str) -> Case:
        src, dst = self.path(f"{layout}.{src_fmt}"), self.path(f"out-{layout}.{dst_fmt}")
        return Case(
            f"convert {src_fmt}->{dst_fmt} {layout}",
            [self.img, "convert", "-t", "writeback", "-f", src_fmt, "-O", dst_fmt, src, dst],
            self.worker("convert", src, src_fmt, dst, dst_fmt),
            prepare=lambda: Path(dst).unlink(missing_ok=True),
            setup=lambda: self.need_sources(src_fmt),
            ratio_target=MAX_RATIO,
        )

    def cache_convert_case(self, fmt: str, mode: str, where: Path) -> Case:
        """Both tools as whole processes converting the full image into its own format in *where*.

        ``default``: each with its default target cache mode (qemu-img's is ``unsafe``: no flush);
        ``flush``: both with ``-t writeback``, which flushes the target once at the end. The floor
        is ``cp --sparse=always`` of the source (then ``sync`` of the copy for ``flush``).
        """
        on_tmpfs = where == self.tmpfs
        src, dst = str(where / f"full.{fmt}"), str(where / f"cvt-out.{fmt}")
        cache = ["-t", "writeback"] if mode == "flush" else []
        args = ["convert", *cache, "-f", fmt, "-O", fmt, src, dst]
        floor = ["cp", "--sparse=always", src, dst]
        if mode == "flush":
            floor = ["sh", "-c", 'cp --sparse=always "$0" "$1" && sync "$1"', src, dst]
        fs = "tmpfs" if on_tmpfs else "ext4"
        return Case(
            f"cvt {fmt}->{fmt} {mode} {fs}",
            [self.img, *args],
            [str(Path(sys.executable).with_name("blockfmt-img")), *args],
            prepare=lambda: Path(dst).unlink(missing_ok=True),
            setup=lambda: self.need_tmpfs_source(fmt) if on_tmpfs else self.need_sources(fmt),
            ratio_target=MAX_RATIO,
            cpu_target=MAX_CPU_RATIO,
            whole_process=True,
            floor=floor,
        )

    def read_case(self, fmt: str) -> Case:
        src = self.path(f"full.{fmt}")
        commands = [
            arg for off in range(0, self.sizes.full_disk, READ_REQUEST) for arg in ("-c", f"read {off} 1M")
        ]
        return Case(
            f"read {fmt} 1M seq",
            [self.io, "-r", "-f", fmt, *commands, src],
            self.worker("read", src, fmt, str(READ_REQUEST)),
            setup=lambda: self.need_sources(fmt),
            ratio_target=MAX_RATIO,
        )

    def write_case(self, fmt: str, request: int) -> Case:
        path = self.path(f"fresh.{fmt}")
        fresh = [self.img, "create", "-q", "-f", fmt, path, str(WRITE_DISK_SIZE)]
        quiet_run(fresh)
        step = self.block_size(fmt)
        count = min(self.sizes.write_count, WRITE_DISK_SIZE // step)
        bench = [self.img, "bench", "-q", "-w", "-t", "writeback", "-d", "1", "-f", fmt]
        bench += ["-c", str(count), "-s", str(request), "-S", str(step), f"--pattern={WRITE_PATTERN}", path]
        return Case(
            f"write{request // KiB}k {fmt} x{count}",
            bench,
            self.worker("write", path, fmt, str(request), str(step), str(count)),
            prepare=lambda: quiet_run(fresh),
            ratio_target=MAX_RATIO if fmt == "vhdx" else None,
        )

    def open_case(self, fmt: str) -> Case:
        path = self.path(f"open.{fmt}")
        size = OPEN_SIZE_RAW if fmt == "raw" else OPEN_SIZE
        create = [self.img, "create", "-q", "-f", fmt, path, str(size)]
        return Case(
            f"open {fmt} {size // TiB}T",
            [self.img, "info", "-f", fmt, path],
            self.worker("open", path, fmt),
            setup=lambda: quiet_run(create),
            open_target=True,
        )

    def startup_case(self, fmt: str) -> Case:
        """``info`` of a small image, whole processes; the floor is the script's bare interpreter."""
        path = self.path(f"small.{fmt}")
        quiet_run([self.img, "create", "-q", "-f", fmt, path, str(STARTUP_SIZE)])
        script = console_script("blockfmt-img")
        return Case(
            f"start-up {fmt} info",
            [self.img, "info", "-f", fmt, path],
            [str(script), "info", "-f", fmt, path],
            whole_process=True,
            startup_target=True,
            floor=[script_interpreter(script), "-c", "pass"],
        )

    def huge_bat_cases(self) -> list[Case]:
        """info, check and convert of a 64 TiB VHDX with 1 MiB blocks (a 512 MiB BAT)."""
        path = self.path("huge.vhdx")
        options = ["-o", f"block_size={HUGE_BLOCK}"]
        create = [self.img, "create", "-q", "-f", "vhdx", *options, path, str(HUGE_SIZE)]

        def setup() -> None:
            self._once(("huge",), lambda: quiet_run(create))

        blockfmt_img = str(Path(sys.executable).with_name("blockfmt-img"))
        cut = ["sh", "-c", f'timeout {HUGE_QEMU_LIMIT} "$@"; true', "sh"]
        cases = [
            Case(
                f"huge-BAT 64T {op}",
                [self.img, op, "-f", "vhdx", path],
                [blockfmt_img, op, "-f", "vhdx", path],
                setup=setup,
                ratio_target=MAX_RATIO,
                whole_process=True,
                rss_target=HUGE_MAX_RSS,
            )
            for op in ("info", "check")
        ]
        targets = [("vhdx", self.path("huge-out.vhdx"))]
        if self.tmpfs is not None:
            targets.append(("raw", str(self.tmpfs / "huge-out.raw")))
        for fmt, out in targets:
            options = ["-o", f"block_size={HUGE_BLOCK}"] if fmt == "vhdx" else []
            args = ["convert", "-f", "vhdx", "-O", fmt, *options, path, out]
            cases.append(
                Case(
                    f"huge-BAT 64T cvt->{fmt}",
                    [*cut, self.img, *args],
                    [blockfmt_img, *args],
                    prepare=lambda out=out: Path(out).unlink(missing_ok=True),
                    setup=setup,
                    ratio_target=MAX_RATIO,
                    whole_process=True,
                    rss_target=HUGE_MAX_RSS,
                )
            )
        return cases

    def random_read_cases(self, reads: int) -> list[Case]:
        """Random 4 KiB reads of the full VHDX: blockfmt against each installed peer reader."""
        src = self.path("full.vhdx")
        cases = []
        for peer, module, package in RANDOM_READ_PEERS:
            if not _installed(module):
                reason = f"{module} is not installed (pip install {package})"
                print(f"bench: skipping rand4k vhdx vs {peer}: {reason}", file=sys.stderr)
                continue
            cases.append(
                Case(
                    f"rand4k vhdx vs {peer} x{reads // 1000}k",
                    self.worker(f"rand4k-{peer}", src, str(reads)),
                    self.worker("rand4k", src, str(reads)),
                    setup=lambda: self.need_sources("vhdx"),
                    ratio_target=MAX_RATIO if peer == "libvhdi" else None,
                    reference_worker=True,
                )
            )
        return cases

    def io_commands_cases(self, fmt: str) -> list[Case]:
        """qemu-io and blockfmt-io running many small writes in one process, from ``-c`` and stdin,
        with ``-t writeback`` and with the default cache mode."""
        path = self.path(f"commands.{fmt}")
        fresh = [self.img, "create", "-q", "-f", fmt, path, str(IO_COMMANDS_DISK)]
        rng = random.Random(f"io-commands-{fmt}")
        slots = IO_COMMANDS_DISK // IO_COMMAND_REQUEST
        commands = [
            f"write -P 0xa5 {rng.randrange(slots) * IO_COMMAND_REQUEST} {IO_COMMAND_REQUEST}"
            for _ in range(self.sizes.io_commands)
        ]
        script = self.path(f"commands-{fmt}.txt")
        Path(script).write_text("".join(f"{command}\n" for command in commands))
        options = [arg for command in commands for arg in ("-c", command)]
        bf_io = str(Path(sys.executable).with_name("blockfmt-io"))
        cases = []
        for cache, cache_args in (("writeback", ["-t", "writeback"]), ("default", [])):
            for source in ("-c", "stdin"):
                sides = []
                for tool in (self.io, bf_io):
                    argv = [tool, "-f", fmt, *cache_args]
                    if source == "-c":
                        sides.append([*argv, *options, path])
                    else:  # the commands piped in, as a script would feed them
                        sides.append(["sh", "-c", f'exec "$0" "$@" < {shlex.quote(script)}', *argv, path])
                cases.append(
                    Case(
                        f"io {source} {cache} {fmt}",
                        sides[0],
                        sides[1],
                        prepare=lambda: quiet_run(fresh),
                        ratio_target=MAX_IO_COMMANDS_RATIO,
                        whole_process=True,
                    )
                )
        return cases

    def cases(self) -> list[Case]:
        """Every case, its sources not built yet (each case's ``setup`` builds what it reads)."""
        cases = []
        for fmt in self.formats:
            for layout in ("sparse", "full"):
                cases.append(self.convert_case(fmt, "raw", layout))
                if fmt != "raw":
                    cases.append(self.convert_case("raw", fmt, layout))
            for where in (self.dir, self.tmpfs):
                if where is not None:
                    cases.extend(self.cache_convert_case(fmt, mode, where) for mode in ("default", "flush"))
            cases.append(self.read_case(fmt))
            cases.extend(self.write_case(fmt, request) for request in (4 * KiB, 64 * KiB))
            cases.append(self.open_case(fmt))
            cases.append(self.startup_case(fmt))
            if fmt == "vhdx":
                cases.extend(self.huge_bat_cases())
                cases.extend(self.random_read_cases(self.sizes.random_reads))
            cases.extend(self.io_commands_cases(fmt))
        return cases


def console_script(name: str) -> Path:
    """The installed console script *name* of the environment running this benchmark.

    Looked for next to ``sys.executable`` (a virtual environment's ``bin``), then in the scripts
    directory of the interpreter's install scheme; never through ``PATH``, where a launcher such
    as a pyenv shim (a shell script running ``pyenv exec``) would be timed instead of the tool.
    """
    for directory in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        if (directory / name).is_file():
            return directory / name
    raise SystemExit(f"bench: {name} is not installed beside {sys.executable} (pip install .)")


def script_interpreter(script: Path) -> str:
    """The interpreter a console script's ``#!`` line names (what its process starts); the running
    one when the line names something else (pip's ``/bin/sh`` trampoline for long paths)."""
    with script.open("rb") as stream:
        first = stream.readline().decode(errors="replace")
    words = first[2:].split() if first.startswith("#!") else []
    return words[0] if words and os.path.basename(words[0]).startswith("python") else sys.executable


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def run_case(case: Case, repeat: int, worker_env: dict[str, str]) -> None:
    """Warm up each side once, then run qemu, blockfmt (and the floor) *repeat* times each.

    The order rotates from round to round, so every side follows every other equally often: what
    one run leaves behind can cost the next (on a VM with free page reporting, the memory a
    deleted 1 GiB output gave back is slow to touch again), and a fixed order charged it to
    blockfmt every time.
    """
    reference_env = worker_env if case.reference_worker else None
    sides = [(case.qemu, case.qemu_samples, reference_env), (case.worker, case.blockfmt_samples, worker_env)]
    if case.floor is not None:
        sides.append((case.floor, case.floor_samples, None))
    for timed in range(repeat + 1):
        turn = timed % len(sides)
        for argv, samples, env in sides[turn:] + sides[:turn]:
            case.prepare()
            os.sync()  # neither side pays for the other's writeback, journal commits or discards
            sample = run_side(argv, worker_env=env, whole=case.whole_process)
            if timed:
                samples.append(sample)


def median(samples: list[Sample], attr: str) -> float:
    return statistics.median(getattr(s, attr) for s in samples)


def verdict(case: Case) -> str:
    """'' when the case meets its target (or has none), else what it missed."""
    bf, qemu = median(case.blockfmt_samples, "seconds"), median(case.qemu_samples, "seconds")
    if case.ratio_target is not None and bf / qemu > case.ratio_target:
        return f"ratio > {case.ratio_target}"
    if case.cpu_target is not None and cpu_ratio(case) > case.cpu_target:
        return f"CPU ratio > {case.cpu_target}"
    if case.startup_target and bf > MAX_STARTUP_SECONDS:
        return f"> {MAX_STARTUP_SECONDS} s"
    if case.rss_target is not None and max(s.max_rss for s in case.blockfmt_samples) > case.rss_target:
        return f"RSS > {case.rss_target // MiB} MiB"
    if case.open_target:
        misses = []
        if bf >= MAX_OPEN_SECONDS:
            misses.append(f">= {MAX_OPEN_SECONDS} s")
        if max(s.max_rss for s in case.blockfmt_samples) >= MAX_OPEN_RSS:
            misses.append(f"RSS >= {MAX_OPEN_RSS // MiB} MiB")
        return ", ".join(misses)
    return ""


def cpu_ratio(case: Case) -> float:
    """blockfmt's median CPU time over qemu's (floored at 1 ms: a tick is 1-10 ms)."""
    floor = 0.001
    return max(floor, median(case.blockfmt_samples, "cpu_seconds")) / max(
        floor, median(case.qemu_samples, "cpu_seconds")
    )


def render_head(repeat: int) -> str:
    """The lines above the rows."""
    head = (
        f"{'case':<28} {'qemu s':>8} {'bf op s':>8} {'bf proc':>8} {'ratio':>6} {'r proc':>6} "
        f"{'r best':>6} {'qemu RSS':>9} {'bf RSS':>8} {'q cpu':>6} {'bf cpu':>6} {'cpu r':>5} "
        f"{'floor':>6}  target"
    )
    return "\n".join((f"median of {repeat} runs, warm page cache", head, "-" * len(head)))


def render_row(case: Case) -> str:
    """One finished case's row."""
    qemu = median(case.qemu_samples, "seconds")
    bf, bf_proc = median(case.blockfmt_samples, "seconds"), median(case.blockfmt_samples, "process_seconds")
    best = min(s.seconds for s in case.blockfmt_samples) / min(s.seconds for s in case.qemu_samples)
    q_rss = max(s.max_rss for s in case.qemu_samples) // MiB
    b_rss = max(s.max_rss for s in case.blockfmt_samples) // MiB
    missed = verdict(case)
    has_target = case.ratio_target or case.open_target or case.startup_target or case.rss_target
    target = "MISSED: " + missed if missed else ("ok" if has_target else "-")
    q_cpu, b_cpu = median(case.qemu_samples, "cpu_seconds"), median(case.blockfmt_samples, "cpu_seconds")
    floor = f"{median(case.floor_samples, 'seconds'):6.3f}" if case.floor_samples else f"{'-':>6}"
    return (
        f"{case.name:<28} {qemu:8.3f} {bf:8.3f} {bf_proc:8.3f} {bf / qemu:6.2f} {bf_proc / qemu:6.2f} "
        f"{best:6.2f} {q_rss:7d}Mi {b_rss:6d}Mi {q_cpu:6.3f} {b_cpu:6.3f} {cpu_ratio(case):5.2f} "
        f"{floor}  {target}"
    )


@contextlib.contextmanager
def cpu_load(count: int) -> Iterator[None]:
    """Keep *count* processes spinning on the CPU while the block runs (``--load``)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def find_tools() -> dict[str, str]:
    tools = {}
    for name, env in (("qemu-img", "QEMU_IMG_PROG"), ("qemu-io", "QEMU_IO_PROG")):
        found = os.environ.get(env) or shutil.which(name)
        if not found:
            raise SystemExit(f"bench: {name} not found (apt-get install qemu-utils)")
        tools[name] = found
    return tools


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per side (median; default 5)")
    parser.add_argument("--quick", action="store_true", help="small images, a smoke run")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated (default: all)")
    parser.add_argument("--only", default="", help="regular expression: run only the cases it matches")
    parser.add_argument("--workdir", help="where the images go (default: a temporary directory)")
    parser.add_argument(
        "--tmpfs",
        default="/dev/shm" if os.path.isdir("/dev/shm") else "",
        help="a tmpfs directory for the tmpfs convert rows ('' leaves them out; default /dev/shm)",
    )
    parser.add_argument(
        "--load",
        type=int,
        default=0,
        help="keep this many CPU-spinning processes running during the cases (a loaded machine)",
    )
    args = parser.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    unknown = set(formats) - set(FORMATS)
    if unknown or args.repeat < 1:
        parser.error(f"unknown formats {sorted(unknown)}" if unknown else "--repeat must be at least 1")
    tools = find_tools()
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="blockfmt-bench-", dir=args.workdir))
        tmpfs = None
        if args.tmpfs:
            tmpfs = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="blockfmt-bench-", dir=args.tmpfs))
            )
        sizes = QUICK_SIZES if args.quick else FULL_SIZES
        bench = Bench(Path(workdir), sizes, formats, tools, tmpfs)
        cases = [c for c in bench.cases() if re.search(args.only, c.name)]
        # an installed package has its bytecode compiled; this environment may forbid writing it
        # next to the sources, so the workers keep theirs in the scratch directory
        worker_env = {"PYTHONPYCACHEPREFIX": str(Path(workdir) / "pycache"), "PYTHONDONTWRITEBYTECODE": ""}
        print(render_head(args.repeat), flush=True)
        for case in cases:
            case.setup()  # its sources, before the load starts
            with cpu_load(args.load):
                run_case(case, args.repeat, worker_env)
            print(render_row(case), flush=True)
    missed = [c.name for c in cases if verdict(c)]
    if args.check and missed:
        print(f"bench: targets missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
