"""NBD export benchmark: blockfmt-nbd (nbdkit + blockfmt) against QEMU on the same VHDX.

One run, every number printed beside its reference as a ratio (``python benchmarks/nbd_bench.py``;
``--quick`` shrinks the image). All servers are started and stopped here, on unix sockets in a
scratch directory; the page cache is warm for every case (one untimed read of the image first).

* Throughput: a dynamic VHDX (1 MiB blocks; 2 GiB with 512 MiB of data in 8 MiB runs, holes
  between them) copied to a raw file by ``qemu-img convert`` straight from the file (the
  reference), by ``qemu-img convert`` and ``nbdcopy`` from blockfmt-nbd, and by the same two
  clients from ``qemu-nbd -r -f vhdx``. ``ratio`` = reference time / case time (above 1: faster
  than qemu-img on the file). QEMU 7.2's VHDX driver has no block status, so qemu-img on the file
  and everything through qemu-nbd read the holes too; blockfmt-nbd reports them and clients skip
  them.
* Latency: ``qemu-img bench -d 1 -s 4k`` (one 4 KiB read in flight) over NBD, per request, against
  blockfmt-nbd and against qemu-nbd.
* Thread model: ``--clients`` concurrent ``qemu-img bench -d 8 -s 4k`` processes against one
  blockfmt-nbd started with each of nbdkit's ``parallel`` and ``serialize_all_requests`` models
  (the choice :data:`blockfmt.nbd.params.DEFAULT_THREAD_MODEL` rests on), and ``nbdcopy`` with
  four connections against each, alternated for ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import blockfmt
from blockfmt.nbd.export import ExportSettings
from blockfmt.nbd.launcher import ServerOptions, nbdkit_command, nbdkit_environment
from blockfmt.nbd.params import PluginParams, ThreadModel

MiB = 1 << 20
RUN = 8 * MiB
START_TIMEOUT = 30.0
_BENCH_TIME = re.compile(r"Run completed in ([0-9.]+) seconds")


def make_image(path: Path, disk_mib: int, data_mib: int, seed: int = 17) -> None:
    """A VHDX whose data sits in 8 MiB runs at random 8 MiB slots (the rest are holes)."""
    blockfmt.create(path, "vhdx", disk_mib * MiB, block_size=MiB)
    slots = random.Random(seed).sample(range(disk_mib * MiB // RUN), data_mib * MiB // RUN)
    chunk = random.Random(seed).randbytes(RUN)
    with blockfmt.open(path, read_only=False) as img:
        for slot in sorted(slots):
            img.write_at(slot * RUN, chunk)


@contextlib.contextmanager
def server(argv: Sequence[str], socket: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run a server until the block ends; yields its NBD URI."""
    proc = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not socket.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {' '.join(argv)}")
            time.sleep(0.02)
        yield f"nbd+unix:///?socket={socket}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        socket.unlink(missing_ok=True)


def blockfmt_server(image: Path, socket: Path, model: ThreadModel) -> contextlib.AbstractContextManager[str]:
    settings = ExportSettings(str(image), "vhdx", read_only=True)
    options = ServerOptions(
        PluginParams(settings, model, multi_conn=True), socket=str(socket), shared=0, persistent=True
    )
    return server(nbdkit_command(options, shutil.which("nbdkit") or "nbdkit"), socket, nbdkit_environment())


def qemu_server(image: Path, socket: Path) -> contextlib.AbstractContextManager[str]:
    return server(["qemu-nbd", "-r", "-t", "-e", "0", "-f", "vhdx", "-k", str(socket), str(image)], socket)


def timed(argv: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(list(argv), check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_seconds(argv: Sequence[str]) -> float:
    """``qemu-img bench``'s own timing of its requests (process start excluded)."""
    out = subprocess.run(list(argv), check=True, capture_output=True, text=True).stdout
    match = _BENCH_TIME.search(out)
    if match is None:
        raise SystemExit(f"unexpected qemu-img bench output: {out}")
    return float(match.group(1))


def read_latency_us(uri: str, count: int, disk: int) -> float:
    step = disk // count // 4096 * 4096
    return (
        bench_seconds(
            ["qemu-img", "bench", "-f", "raw", "-d", "1", "-c", str(count), "-s", "4k", "-S", str(step), uri]
        )
        / count
        * 1e6
    )


def parallel_reads_per_second(uri: str, clients: int, count: int, disk: int) -> float:
    """Total 4 KiB reads per second of *clients* concurrent ``qemu-img bench -d 8`` processes."""
    step = disk // count // 4096 * 4096
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                "qemu-img",
                "bench",
                "-f",
                "raw",
                "-d",
                "8",
                "-c",
                str(count),
                "-s",
                "4k",
                "-S",
                str(step),
                "-o",
                str(i * 4096),
                uri,
            ],
            stdout=subprocess.DEVNULL,
        )
        for i in range(clients)
    ]
    for proc in procs:
        if proc.wait(timeout=600) != 0:
            raise SystemExit("qemu-img bench failed")
    return clients * count / (time.perf_counter() - start)


def spread(values: list[float], fmt: str) -> str:
    """``median (min-max)``."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 MiB disk, 64 MiB of data")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the thread-model comparison")
    args = parser.parse_args(argv)
    disk_mib, data_mib, reads = (256, 64, 2000) if args.quick else (2048, 512, 10000)
    with tempfile.TemporaryDirectory(
        prefix="nbd-bench-", dir=os.environ.get("TMPDIR", "/var/tmp")
    ) as scratch:
        work = Path(scratch)
        image = work / "disk.vhdx"
        make_image(image, disk_mib, data_mib)
        out = work / "out.raw"
        sock = Path(tempfile.gettempdir()) / f"nbd-bench-{os.getpid()}.sock"
        image.read_bytes()  # warm the page cache
        print(f"image: {disk_mib} MiB VHDX, {data_mib} MiB data in 8 MiB runs; one run per case")
        reference = timed(["qemu-img", "convert", "-f", "vhdx", "-O", "raw", str(image), str(out)])
        rows = [("qemu-img convert from the file (reference)", reference)]
        for name, start in (
            ("blockfmt-nbd", lambda: blockfmt_server(image, sock, ThreadModel.PARALLEL)),
            ("qemu-nbd", lambda: qemu_server(image, sock)),
        ):
            with start() as uri:
                rows.append(
                    (
                        f"qemu-img convert from {name}",
                        timed(["qemu-img", "convert", "-f", "raw", "-O", "raw", uri, str(out)]),
                    )
                )
                rows.append((f"nbdcopy from {name}", timed(["nbdcopy", uri, str(out)])))
        print(f"\n{'throughput':46} {'seconds':>8} {'MiB/s (data)':>13} {'ratio':>6}")
        for label, seconds in rows:
            print(f"{label:46} {seconds:8.3f} {data_mib / seconds:13.1f} {reference / seconds:6.2f}")
        disk = disk_mib * MiB
        with blockfmt_server(image, sock, ThreadModel.PARALLEL) as uri:
            ours = read_latency_us(uri, reads, disk)
        with qemu_server(image, sock) as uri:
            theirs = read_latency_us(uri, reads, disk)
        print(
            f"\n4 KiB read latency, queue depth 1 ({reads} reads): blockfmt-nbd {ours:.0f} us, "
            f"qemu-nbd {theirs:.0f} us, ratio {ours / theirs:.2f}"
        )
        print(
            f"\nthread model: {args.clients} clients x qemu-img bench -d 8 -s 4k ({reads} reads each), "
            f"nbdcopy --connections=4; models alternated, {args.repeat} rounds, median (min-max)"
        )
        rates: dict[ThreadModel, list[float]] = {model: [] for model in ThreadModel}
        copies: dict[ThreadModel, list[float]] = {model: [] for model in ThreadModel}
        for _ in range(args.repeat):
            for model in ThreadModel:
                with blockfmt_server(image, sock, model) as uri:
                    rates[model].append(parallel_reads_per_second(uri, args.clients, reads, disk))
                    copies[model].append(data_mib / timed(["nbdcopy", "--connections=4", uri, str(out)]))
        for model in ThreadModel:
            reads_text, copy_text = spread(rates[model], ".0f"), spread(copies[model], ".1f")
            print(f"  {model.value:24} {reads_text} reads/s   nbdcopy {copy_text} MiB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
