"""What a scenario script sees: qemu-iotests' ``common.rc`` and ``iotests.py`` helpers, per backend.

A scenario is a function ``run(t: TestContext)``. Every helper runs the backend's tool and appends
its output, through the same filters the original test used, to the transcript that is compared
with the stored ``.out`` file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import filters
from .backends import Backend, Storage
from .env import TestEnv, decompress_sample

__all__ = ["VM", "NotRun", "TestContext"]

Filter = Callable[[str], str]


class NotRun(Exception):
    """The scenario cannot run here (``_notrun`` / ``iotests.notrun``); the message is the reason."""


def _ordered(value: Any) -> Any:
    """``iotests.ordered_qmp``: dictionaries sorted by key, recursively."""
    if isinstance(value, dict):
        return {key: _ordered(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_ordered(item) for item in value]
    return value


class VM:
    """The QMP endpoint a Python iotest launches and shuts down (``iotests.VM``).

    ``add_blockdev`` arguments persist across launches, as in iotests.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.blockdevs: list[str] = []
        self.storage: Storage | None = None

    def add_blockdev(self, spec: str) -> None:
        self.blockdevs.append(spec)

    def launch(self) -> None:
        self.storage = self.backend.start_storage(self.blockdevs)

    def shutdown(self) -> None:
        if self.storage is not None:
            storage, self.storage = self.storage, None
            storage.stop()

    @property
    def running(self) -> Storage:
        if self.storage is None:
            raise RuntimeError("VM is not launched")
        return self.storage


class TestContext:
    """Helpers for one scenario run on one backend; :attr:`output` is the transcript."""

    def __init__(self, env: TestEnv, backend: Backend) -> None:
        self.env = env
        self.backend = backend
        self.imgfmt = env.imgfmt
        self.test_dir = env.test_dir
        #: ``$TEST_IMG``: ``t.<fmt>`` until a sample image replaces it
        self.test_img = os.path.join(env.test_dir, f"t.{env.imgfmt}")
        self._chunks: list[str] = []

    @property
    def output(self) -> str:
        return "".join(self._chunks)

    # -- transcript ---------------------------------------------------------------

    def echo(self, text: str = "") -> None:
        """Append one line, as ``echo`` / ``iotests.log`` of a string do."""
        self._chunks.append(text + "\n")

    def log_json(self, value: Any, *, sort: bool = True, text_filters: Sequence[Filter] = ()) -> None:
        """``iotests.log`` of a dict or list: one line of JSON, keys sorted unless already ordered."""
        line = json.dumps(value, sort_keys=sort)
        for flt in text_filters:
            line = flt(line)
        self.echo(line)

    def _emit(self, text: str, chain: Sequence[Filter]) -> None:
        text = filters.filter_prog_names(text)
        for flt in chain:
            text = flt(text)
        self._chunks.append(text)

    def notrun(self, reason: str) -> None:
        raise NotRun(reason)

    # -- filters bound to this run ----------------------------------------------------

    def f_testdir(self, text: str) -> str:
        return filters.filter_testdir(text, self.test_dir)

    def f_qmp_testfiles(self, text: str) -> str:
        return filters.filter_qmp_testfiles(text, self.test_dir, self.env.pid)

    # -- files --------------------------------------------------------------------

    def file_path(self, name: str) -> str:
        """``iotests.FilePath``: a scratch file name carrying the PID."""
        return os.path.join(self.test_dir, f"{self.env.pid}-{name}")

    def use_sample_img(self, name: str) -> None:
        """``_use_sample_img``: decompress a sample into TEST_DIR and make it ``$TEST_IMG``."""
        path = decompress_sample(name, self.test_dir)
        if path is None:
            self.notrun(f"sample image {name} not found")
        self.test_img = path  # type: ignore[assignment]

    def poke_file(self, offset: int, data: bytes, path: str | None = None) -> None:
        """``poke_file``: overwrite bytes in place."""
        with open(path or self.test_img, "r+b") as fh:
            fh.seek(offset)
            fh.write(data)

    def echo_file_size(self, label: str, path: str | None = None) -> None:
        """``stat -c"<label>%s" FILE``: the file size, or stat's complaint when the file is missing."""
        path = path or self.test_img
        try:
            self.echo(f"{label}{os.stat(path).st_size}")
        except FileNotFoundError:
            self.echo(self.f_testdir(f"stat: cannot statx '{path}': No such file or directory"))

    def cleanup_test_img(self) -> None:
        """``_cleanup_test_img``."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.test_img)
        self.test_img = os.path.join(self.test_dir, f"t.{self.imgfmt}")

    # -- tools ----------------------------------------------------------------------

    def qemu_io(
        self,
        *commands: str,
        read_only: bool = False,
        img: str | None = None,
        chain: Sequence[Filter] | None = None,
    ) -> int:
        """``$QEMU_IO [-r] -c ... $TEST_IMG | _filter_qemu_io`` (stderr merged, as testrunner does)."""
        args = (["-r"] if read_only else []) + ["-f", self.imgfmt]
        for command in commands:
            args += ["-c", command]
        run = self.backend.qemu_io([*args, img or self.test_img])
        self._emit(run.output, [self.f_testdir, filters.filter_qemu_io] if chain is None else chain)
        return run.returncode

    def qemu_img(self, *args: str, chain: Sequence[Filter] | None = None) -> int:
        """``$QEMU_IMG ... 2>&1 | _filter_testdir | _filter_qemu``."""
        run = self.backend.qemu_img(list(args))
        self._emit(run.output, [self.f_testdir] if chain is None else chain)
        return run.returncode

    def make_test_img(self, size: str, *extra: str) -> None:
        """``_make_test_img``: create ``$TEST_IMG`` and print the filtered ``Formatting`` line."""
        self.qemu_img(
            "create",
            "-f",
            self.imgfmt,
            *extra,
            self.test_img,
            size,
            chain=[lambda s: filters.filter_img_create(s, self.test_dir, self.imgfmt)],
        )

    def img_info(self) -> None:
        """``_img_info`` (shell tests)."""
        self.qemu_img(
            "info",
            "-f",
            self.imgfmt,
            self.test_img,
            chain=[lambda s: filters.filter_img_info(s, self.test_dir, self.imgfmt)],
        )

    def img_info_log(self, path: str) -> None:
        """``iotests.img_info_log`` (Python tests): the output ends with the empty line info prints."""
        run = self.backend.qemu_img(["info", "-f", self.imgfmt, path])
        text = filters.filter_prog_names(run.output)
        self.echo(filters.filter_img_info_py(text, path, self.test_dir, self.imgfmt))

    def img_map_log(self, path: str) -> None:
        """``iotests.log(iotests.qemu_img_map(path))``: the JSON map as one sorted line."""
        run = self.backend.qemu_img(["map", "--output=json", "-f", self.imgfmt, path])
        try:
            value = json.loads(run.stdout)
        except json.JSONDecodeError:
            self._emit(run.output, [self.f_testdir])
            return
        self.log_json(value)

    # -- QMP --------------------------------------------------------------------------

    @contextlib.contextmanager
    def vm(self) -> Iterator[VM]:
        """``with iotests.VM() as vm``: shut down whatever is running when the block ends."""
        machine = VM(self.backend)
        try:
            yield machine
        finally:
            machine.shutdown()

    def qmp_log(self, vm: VM, cmd: str, **args: Any) -> dict[str, Any]:
        """``VM.qmp_log``: log the command (arguments sorted) and its response."""
        arguments = _ordered({key.replace("_", "-"): value for key, value in args.items()})
        self.log_json(
            {"execute": cmd, "arguments": arguments}, sort=False, text_filters=[self.f_qmp_testfiles]
        )
        response = vm.running.qmp(cmd, arguments)
        self.log_json(response, text_filters=[self.f_qmp_testfiles])
        return response

    def blockdev_create(self, vm: VM, options: dict[str, Any], job_id: str = "job0") -> str | None:
        """``VM.blockdev_create`` + ``run_job``: create, log failure, dismiss, blank line.

        :returns: the job's error message, or None.
        """
        arguments = _ordered({"job-id": job_id, "options": options})
        start = {"execute": "blockdev-create", "arguments": arguments}
        self.log_json(start, sort=False, text_filters=[self.f_qmp_testfiles])
        response, error = vm.running.run_job(job_id, start)
        self.log_json(response, text_filters=[self.f_qmp_testfiles])
        if "return" in response:
            if error is not None:
                self.echo(self.f_qmp_testfiles(f"Job failed: {error}"))
            self.qmp_log(vm, "job-dismiss", id=job_id)
        self.echo()
        return error
