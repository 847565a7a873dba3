"""Where a scenario runs: format, backend, scratch directory and sample images (``testenv.py``'s job).

Nothing here reads the environment at import time; :func:`sample_img_dir` consults
``SAMPLE_IMG_DIR`` when called, falling back to the shared images beside the repository.
"""

from __future__ import annotations

import bz2
import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REPO", "SCENARIO_DIR", "TestEnv", "decompress_sample", "sample_img_dir"]

REPO = Path(__file__).resolve().parent.parent
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
#: decompression copy size
_COPY_CHUNK = 1 << 20


def sample_img_dir() -> Path:
    """The sample image directory: ``$SAMPLE_IMG_DIR`` or ``../shared/sample_images``."""
    return Path(os.environ.get("SAMPLE_IMG_DIR") or REPO.parent / "shared" / "sample_images")


def decompress_sample(name: str, target_dir: str) -> str | None:
    """Decompress sample *name* (``.bz2`` beside, or ``.gz`` under ``real/``) into *target_dir*.

    :returns: the decompressed file's path, or None when the sample is not there.
    """
    base = sample_img_dir()
    for source, opener in ((base / f"{name}.bz2", bz2.open), (base / "real" / f"{name}.gz", gzip.open)):
        if source.exists():
            target = os.path.join(target_dir, name)
            with opener(source, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, _COPY_CHUNK)
            return target
    return None


@dataclass(frozen=True)
class TestEnv:
    """One scenario run's fixed facts.

    :ivar imgfmt: the format under test (``IMGFMT``).
    :ivar test_dir: the scratch directory (``TEST_DIR``), empty at start.
    :ivar pid: the number ``FilePath`` names carry (``PID`` after filtering).
    """

    imgfmt: str
    test_dir: str
    pid: int
