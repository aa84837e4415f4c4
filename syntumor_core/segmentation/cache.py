"""A small bounded cache of loaded predictors, for a process that serves many requests.

A network is loaded once per checkpoint *file content* and device: the key is the file's
SHA-256 and the device, so two paths to the same bytes share one copy and a changed file is
loaded afresh. Run-time options (mode, overlap, …) are arguments of
:meth:`~syntumor_core.segmentation.predictor.Predictor.predict`, never part of the key: a job
asking for another overlap reuses the loaded network. The least recently used predictor is
dropped when a new one would exceed ``maxsize``.

Example:
    >>> cache = PredictorCache(maxsize=2, max_voxels=600_000_000)  # doctest: +SKIP
    >>> predictor = cache.get("models/demo/model.pt", device="cpu")  # doctest: +SKIP
    >>> predictor is cache.get("models/demo/model.pt", device="cpu")  # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from syntumor_core.checkpoints import sha256_of_file
from syntumor_core.errors import CheckpointError, ParameterError
from syntumor_core.segmentation.predictor import Predictor

logger = logging.getLogger(__name__)

CacheKey = tuple[str, str]  # (checkpoint sha256, device)
_DIGESTS_KEPT = 64  # file digests remembered (a file rewritten often gets a new entry each time)


def device_name(device: torch.device | str | None) -> str:
    """The device a predictor for ``device`` runs on, as text (``None``: CUDA if any)."""
    return str(torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))


class PredictorCache:
    """Loaded predictors, at most ``maxsize`` of them, least recently used dropped first.

    Thread-safe: one lock guards the cache, and a load happens under it, so two threads
    asking for the same model load it once.

    Args:
        maxsize: how many predictors to keep loaded (each holds a network's weights, on the
            GPU for a CUDA device).
        **settings: load-time settings of every predictor built
            (:meth:`~syntumor_core.segmentation.predictor.Predictor.from_checkpoint`:
            ``max_voxels``, ``use_config``, ``roi_size``, …); fixed for the cache, since they
            are not part of the key.

    Raises:
        ParameterError: ``maxsize`` is not a positive integer, or ``settings`` names the
            device or architecture (arguments of :meth:`get`).
    """

    def __init__(self, maxsize: int = 2, **settings: Any) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ParameterError(f"maxsize must be a positive integer, got {maxsize!r}")
        passed_per_call = sorted({"device", "arch"} & set(settings))
        if passed_per_call:
            raise ParameterError(f"{', '.join(passed_per_call)}: pass to get(), not to the cache")
        self.maxsize = maxsize
        self.settings = dict(settings)
        self._predictors: OrderedDict[CacheKey, Predictor] = OrderedDict()
        self._digests: dict[tuple, str] = {}  # (path, size, mtime, inode) -> sha256
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._predictors)

    def keys(self) -> list[CacheKey]:
        """The cached keys, least recently used first."""
        with self._lock:
            return list(self._predictors)

    def clear(self) -> None:
        """Drop every loaded predictor."""
        with self._lock:
            self._predictors.clear()

    def key(self, checkpoint: str | Path, device: torch.device | str | None = None) -> CacheKey:
        """``(sha256 of the file, device)`` for a checkpoint (the digest is remembered while
        the file's size and modification time stay the same).

        Raises:
            CheckpointError: the file cannot be read.
        """
        with self._lock:
            return self._digest(Path(checkpoint)), device_name(device)

    def get(
        self,
        checkpoint: str | Path,
        *,
        device: torch.device | str | None = None,
        arch: str | None = None,
    ) -> Predictor:
        """The predictor of ``checkpoint`` on ``device``: the cached one, or loaded now.

        Args:
            checkpoint: the ``model.pt`` file.
            device: torch device (``None``: CUDA when available, else the CPU).
            arch: its architecture; detected from the weights when omitted (the same bytes
                always hold the same architecture, so it is not part of the key).

        Raises:
            CheckpointError: unsafe, unreadable or mismatched file.
            ParameterError: the ``config.json`` beside it records nonsense.
        """
        path, device_text = Path(checkpoint), device_name(device)
        with self._lock:
            key = (self._digest(path), device_text)
            if key in self._predictors:
                self._predictors.move_to_end(key)
                return self._predictors[key]
            predictor = Predictor.from_checkpoint(path, arch=arch, device=device_text,
                                                  **self.settings)  # fmt: skip
            if predictor.checkpoint is not None:  # the bytes loaded (the file may have changed)
                key = (predictor.checkpoint.sha256, device_text)
            self._predictors[key] = predictor
            self._predictors.move_to_end(key)
            logger.info("loaded %s (%s…) on %s", path, key[0][:12], device_text)
            while len(self._predictors) > self.maxsize:
                (dropped, dropped_device), _ = self._predictors.popitem(last=False)
                logger.info("dropped the least recently used model %s… on %s",
                            dropped[:12], dropped_device)  # fmt: skip
            return predictor

    def _digest(self, path: Path) -> str:
        try:
            stat = path.stat()
            identity = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
            if identity not in self._digests:
                if len(self._digests) >= _DIGESTS_KEPT:
                    self._digests.clear()
                self._digests[identity] = sha256_of_file(path)
        except OSError as error:
            raise CheckpointError(f"cannot read checkpoint {path}: {error}") from error
        return self._digests[identity]
