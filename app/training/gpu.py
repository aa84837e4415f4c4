"""The GPUs of this machine, as ``nvidia-smi`` reports them (none: jobs run on the CPU).

``nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader`` prints one line
per GPU in CUDA's PCI bus order (children get ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so their device
numbers agree). When the server itself was started with ``CUDA_VISIBLE_DEVICES``, only those
GPUs are offered. Tests put a fake ``nvidia-smi`` first on the server's ``PATH`` (there is no GPU
here); a caller can also pass ``runner`` to :func:`query_gpus`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger(__name__)

QUERY = ["--query-gpu=name,memory.used,memory.total", "--format=csv,noheader"]
QUERY_TIMEOUT_S = 10.0
CACHE_S = 3.0

Runner = Callable[[list[str]], str]


@dataclass(frozen=True)
class Gpu:
    """One GPU.

    Args:
        index: its CUDA device number (PCI bus order), as ``CUDA_VISIBLE_DEVICES`` takes it.
        name: the product name.
        memory_used_mib: memory in use, MiB.
        memory_total_mib: memory in all, MiB.
    """

    index: int
    name: str
    memory_used_mib: int
    memory_total_mib: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def nvidia_smi_path() -> str | None:
    """The ``nvidia-smi`` on ``PATH``, if any."""
    return shutil.which("nvidia-smi")


def _run_nvidia_smi(arguments: list[str]) -> str:
    executable = nvidia_smi_path()
    if executable is None:
        return ""
    completed = subprocess.run(
        [executable, *arguments],
        capture_output=True,
        text=True,
        timeout=QUERY_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        logger.warning("nvidia-smi failed (%s): %s", completed.returncode, completed.stderr[:200])
        return ""
    return completed.stdout


def _mebibytes(text: str) -> int:
    number = text.strip().split()[0] if text.strip() else "0"
    try:
        return int(float(number))
    except ValueError:
        return 0


def parse_gpus(text: str) -> list[Gpu]:
    """GPUs from ``nvidia-smi``'s CSV lines (``name, used MiB, total MiB``)."""
    gpus = []
    for line in (line.strip() for line in text.splitlines()):
        if not line:
            continue
        name, used, total = ([*line.rsplit(",", 2)] + ["", ""])[:3]
        gpus.append(Gpu(len(gpus), name.strip(), _mebibytes(used), _mebibytes(total)))
    return gpus


def _visible(gpus: list[Gpu]) -> list[Gpu]:
    """Only the GPUs the server's own ``CUDA_VISIBLE_DEVICES`` allows (all when unset)."""
    setting = os.environ.get("CUDA_VISIBLE_DEVICES")
    if setting is None:
        return gpus
    allowed = {int(part) for part in setting.split(",") if part.strip().isdigit()}
    return [gpu for gpu in gpus if gpu.index in allowed]


_cache: dict[str, Any] = {"at": -1e9, "gpus": []}
_cache_lock = threading.Lock()


def query_gpus(runner: Runner | None = None, *, fresh: bool = False) -> list[Gpu]:
    """The GPUs jobs may use, with their memory now (cached for a few seconds).

    Args:
        runner: runs ``nvidia-smi`` with the given arguments and returns its output
            (default: the real one, or none when it is absent: no GPU).
        fresh: ignore the cache.
    """
    if runner is not None:
        return _visible(parse_gpus(runner(QUERY)))
    with _cache_lock:
        if fresh or time.monotonic() - _cache["at"] > CACHE_S:
            try:
                _cache["gpus"] = _visible(parse_gpus(_run_nvidia_smi(QUERY)))
            except (OSError, subprocess.SubprocessError) as error:
                logger.warning("cannot run nvidia-smi: %s", error)
                _cache["gpus"] = []
            _cache["at"] = time.monotonic()
        return list(_cache["gpus"])


def describe_devices(devices: list[int], gpus: list[Gpu]) -> list[dict[str, Any]]:
    """What a job's devices are now: GPU name and memory, or ``CPU`` for an empty list."""
    if not devices:
        return [{"index": None, "name": "CPU", "memory_used_mib": None, "memory_total_mib": None}]
    by_index = {gpu.index: gpu for gpu in gpus}
    described = []
    for index in devices:
        gpu = by_index.get(index)
        described.append(
            gpu.as_json()
            if gpu
            else {
                "index": index,
                "name": f"GPU {index} (not reported by nvidia-smi)",
                "memory_used_mib": None,
                "memory_total_mib": None,
            }  # fmt: skip
        )
    return described
