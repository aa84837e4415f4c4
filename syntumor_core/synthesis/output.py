"""The arrays a synthesis returns, copied from its inputs in the background."""

from __future__ import annotations

import threading

import numpy as np

from syntumor_core.errors import ParameterError


class OutputCopy:
    """The output image (float32) and label map (the organ as uint8), made from the inputs.

    The copy of the whole image is the largest fixed cost of a call (100 MB for 512×512×100):
    it runs in a background thread, in slabs, while the caller draws and computes the tumors;
    the caller's thread takes the slabs still left when it asks for the result. Each slab is
    an exact copy (the image converted to float32 as ``numpy.array(image, float32)`` would).
    The label map starts as ``numpy.zeros`` (pages the OS hands out already zeroed, only when
    touched) with just the organ's bounding box copied in: outside that box the mask is empty.
    Start it once the inputs are validated, and do not change them until :meth:`result`.

    ``out``, when given, receives the image instead of a new array (see :func:`check_out`).
    """

    def __init__(self, image: np.ndarray, mask: np.ndarray, out: np.ndarray | None = None):
        if out is None:
            out = np.empty_like(image, dtype=np.float32, subok=False)
        self.image = out
        self._mask = mask
        self._jobs = _slabs(image, self.image)
        self._next = 0
        self._cancelled = False
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="syntumor-copy", daemon=True)
        self._thread.start()

    def _take(self):
        with self._lock:
            if self._next >= len(self._jobs):
                return None
            self._next += 1
            return self._jobs[self._next - 1]

    def _work(self) -> None:
        try:
            while (job := self._take()) is not None:
                np.copyto(job[1], job[0], casting="unsafe")
        except BaseException as error:  # re-raised in the caller's thread
            self._error = error

    def cancel(self) -> None:
        """Stop after the slab being copied (when the call fails before its result)."""
        with self._lock:
            self._next = len(self._jobs)
            self._cancelled = True

    def result(self, organ_box=None, organ=None) -> tuple[np.ndarray, np.ndarray]:
        """The image and the label map (0 background, 1 organ).

        Args:
            organ_box: slices holding every voxel of the mask (its bounding box), or None for
                the whole volume.
            organ: the mask over ``organ_box`` if already copied (C order), else read from
                the mask given at the start.
        """
        while (job := self._take()) is not None:
            np.copyto(job[1], job[0], casting="unsafe")
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._cancelled:
            raise RuntimeError("the output copy was cancelled; its arrays are incomplete")
        # In the mask's memory order, so that copying the organ in is not a transposition.
        order = "F" if self._mask.flags.f_contiguous and not self._mask.flags.c_contiguous else "C"
        label = np.zeros(self._mask.shape, dtype=np.uint8, order=order)
        box = organ_box if organ_box is not None else (slice(None),) * self._mask.ndim
        label[box] = self._mask[box] if organ is None else organ
        return self.image, label


def check_out(out, image: np.ndarray) -> np.ndarray | None:
    """Check a caller's array for the result image: float32, the image's shape, writeable,
    and not sharing memory with the image (the input is never modified).

    Reusing one such array across calls (a batch of syntheses of one scan, say) saves
    allocating the output each time: for 512×512×100 that is 100 MB whose pages the OS must
    map and zero on first touch, about a quarter of the copy's cost on a small machine.
    """
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise ParameterError(f"`out` must be a numpy array, got {type(out).__name__}")
    if out.dtype != np.float32 or out.shape != image.shape:
        raise ParameterError(
            f"`out` must be float32 with the image's shape {image.shape}, "
            f"got {out.dtype} with shape {out.shape}"
        )
    if not out.flags.writeable:
        raise ParameterError("`out` is read-only")
    if np.shares_memory(out, image):
        raise ParameterError(
            "`out` shares memory with the image: the input image is never modified, "
            "pass a separate array"
        )
    return out


def _slabs(source: np.ndarray, target: np.ndarray, count: int = 8):
    """(source, target) pairs of slabs along the slowest axis of ``target``."""
    if target.flags.c_contiguous:
        axis = 0
    elif target.flags.f_contiguous:
        axis = target.ndim - 1
    else:
        return [(source, target)]
    edges = np.linspace(0, target.shape[axis], min(count, target.shape[axis]) + 1).astype(int)
    slabs = []
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        index = [slice(None)] * target.ndim
        index[axis] = slice(int(start), int(stop))
        slabs.append((source[tuple(index)], target[tuple(index)]))
    return slabs
