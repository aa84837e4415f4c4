"""Separable filters: Gaussian blur and linear interpolation as small matrix products, and
binary erosion and dilation by a box as shifted logical operations.

Every filter here is linear and separable, so it is one matrix per axis. Applying those
matrices with BLAS (``numpy.matmul``) is several times faster than ``scipy.ndimage``'s
line-by-line loops for the box sizes of tumor synthesis (tens to a few hundred voxels per axis),
although it multiplies by the matrix's zeros too. Long axes are cut into blocks so that the
work per voxel stays bounded by the filter's width, not the axis length.

Each BLAS call is kept small (m · n · k <= ``CALL_BUDGET``; numpy's stacked ``matmul`` makes the
calls from C). OpenBLAS runs such calls on the calling thread only; larger ones it spreads over
its thread pool, whose busy-waiting workers made whole calls 5–10× slower on a loaded machine
(and oversubscribe data-loader workers), and a library must not change the process's BLAS
thread settings.

Numerical notes: the matrices are built in float64 and applied in float32 (the image's type),
so results differ from ``scipy.ndimage.gaussian_filter`` by about 1e-7 relative. Zero weights
contribute exact zeros, so a filter never changes voxels beyond its reach. For one input and
one set of matrices the result is deterministic (BLAS splits the work over output rows and
columns, not over the sums).
"""

from __future__ import annotations

import functools

import numpy as np

# Output rows per block along an axis; axes up to twice this are done in one product.
BLOCK = 32
# Largest m · n · k of one BLAS call (OpenBLAS keeps calls up to 2 · 65536 · 4 on one thread).
CALL_BUDGET = 262_144


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """``scipy.ndimage``'s mode ``"reflect"`` (d c b a | a b c d | d c b a)."""
    folded = np.mod(index, 2 * n)
    return np.where(folded >= n, 2 * n - 1 - folded, folded)


@functools.lru_cache(maxsize=256)
def gaussian_matrix(n: int, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """(n, n) float32 matrix of a 1-D Gaussian filter with ``scipy.ndimage``'s conventions.

    Radius ``int(truncate * sigma + 0.5)``, weights normalised to sum 1, mode ``"reflect"``.
    """
    radius = int(truncate * float(sigma) + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / float(sigma) ** 2 * offsets.astype(np.float64) ** 2)
    weights /= weights.sum()
    rows = np.arange(n)[:, None]
    columns = _reflect(rows + offsets[None, :], n)
    # bincount adds the weights that reflection folds onto the same (row, column).
    flat = np.bincount((rows * n + columns).ravel(), weights=np.tile(weights, n), minlength=n * n)
    matrix = flat.reshape(n, n).astype(np.float32)
    matrix.flags.writeable = False
    return matrix


def interpolation_matrix(positions: np.ndarray, n: int) -> tuple[np.ndarray, slice]:
    """Linear interpolation at ``positions`` (in source indices) from ``n`` samples.

    Positions outside [0, n − 1] take the edge value. Returns the (len(positions), k) float32
    matrix and the slice of the k source samples it reads (only those are needed).
    """
    position = np.clip(np.asarray(positions, dtype=np.float64), 0.0, n - 1.0)
    lower = np.minimum(np.floor(position).astype(np.int64), n - 1)
    upper = np.minimum(lower + 1, n - 1)
    weight = position - lower
    first, last = int(lower.min()), int(upper.max())
    width = last - first + 1
    rows = np.arange(position.size) * width
    # bincount adds both weights where upper == lower (at the edge, with weight 0).
    flat = np.bincount(
        np.concatenate([rows + lower - first, rows + upper - first]),
        weights=np.concatenate([1.0 - weight, weight]),
        minlength=position.size * width,
    )
    matrix = flat.reshape(position.size, width)
    return matrix.astype(np.float32), slice(first, last + 1)


def _bands(matrix: np.ndarray) -> list[tuple[slice, slice]]:
    """Blocks of output rows with the range of input columns they read."""
    rows = matrix.shape[0]
    if rows <= 2 * BLOCK:
        return [(slice(0, rows), slice(0, matrix.shape[1]))]
    used = matrix != 0
    bands = []
    for start in range(0, rows, BLOCK):
        stop = min(rows, start + BLOCK)
        columns = np.flatnonzero(used[start:stop].any(axis=0))
        if columns.size == 0:
            columns = np.zeros(1, dtype=np.int64)
        bands.append((slice(start, stop), slice(int(columns[0]), int(columns[-1]) + 1)))
    return bands


def _left_multiply(matrix: np.ndarray, values: np.ndarray, out: np.ndarray) -> None:
    """``out[p] = matrix @ values[p]`` for 3-D ``values`` (p, k, q), in budgeted BLAS calls.

    ``values`` and ``out`` may be views with a unit last stride: cutting an axis into
    (count, chunk) is always a view, so nothing is copied.
    """
    rows, inner = matrix.shape
    chunk = max(1, CALL_BUDGET // max(1, rows * inner))
    width = values.shape[2]
    whole = width - width % chunk if width > chunk else 0
    if whole:
        count = whole // chunk
        split = values[:, :, :whole].reshape(values.shape[0], inner, count, chunk)
        target = out[:, :, :whole].reshape(out.shape[0], rows, count, chunk)
        np.matmul(matrix, split.transpose(0, 2, 1, 3), out=target.transpose(0, 2, 1, 3))
    if whole < width:
        np.matmul(matrix, values[:, :, whole:], out=out[:, :, whole:])


def _right_multiply(values: np.ndarray, matrix_t: np.ndarray, out: np.ndarray) -> None:
    """``out = values @ matrix_t`` for 2-D ``values`` (m, k) and ``out`` (views allowed)."""
    inner, columns = matrix_t.shape
    chunk = max(1, CALL_BUDGET // max(1, columns * inner))
    height = values.shape[0]
    whole = height - height % chunk if height > chunk else 0
    if whole:
        count = whole // chunk
        np.matmul(
            values[:whole].reshape(count, chunk, inner),
            matrix_t,
            out=out[:whole].reshape(count, chunk, columns),
        )
    if whole < height:
        np.matmul(values[whole:], matrix_t, out=out[whole:])


def _along_last(values: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    flat = values.reshape(-1, values.shape[-1])
    out = np.empty((flat.shape[0], matrix.shape[0]), dtype=np.float32)
    for rows, columns in _bands(matrix):
        _right_multiply(flat[:, columns], matrix[rows, columns].T, out[:, rows])
    return out.reshape(values.shape[:-1] + (matrix.shape[0],))


def _along_axis(values: np.ndarray, matrix: np.ndarray, axis: int) -> np.ndarray:
    """Axis 0 or 1 of a 3-D array, as left products over (before, axis, after) views."""
    before = int(np.prod(values.shape[:axis]))
    view = values.reshape(before, values.shape[axis], -1)
    out = np.empty((before, matrix.shape[0], view.shape[2]), dtype=np.float32)
    for rows, columns in _bands(matrix):
        _left_multiply(matrix[rows, columns], view[:, columns], out[:, rows])
    shape = list(values.shape)
    shape[axis] = matrix.shape[0]
    return out.reshape(shape)


def apply_separable(values: np.ndarray, matrices) -> np.ndarray:
    """``values`` (3-D) filtered along each axis by its (m, n) matrix (None: left as is).

    The last axis goes first and the first axis last, so that when the matrices enlarge the
    array (interpolation onto a finer grid) only the final product works at full size.
    Returns a new C-contiguous float32 array.
    """
    result = np.ascontiguousarray(values, dtype=np.float32)
    if matrices[2] is not None:
        result = _along_last(result, matrices[2])
    for axis in (1, 0):
        if matrices[axis] is not None:
            result = _along_axis(result, matrices[axis], axis)
    return result


def gaussian_filter(values: np.ndarray, sigmas, support=None, truncate: float = 4.0) -> np.ndarray:
    """Gaussian filter (sigmas in voxels, mode ``"reflect"``) as ``scipy.ndimage``'s, float32.

    Args:
        values: the 3-D array to filter (any real or boolean dtype).
        sigmas: one sigma per axis, in voxels (0: not filtered along that axis).
        support: optionally a box (slices) of ``values`` outside which it is zero, e.g. a
            mask's bounding box: then only that part is read and each pass works on the part
            it can reach, which saves work when the box is much smaller than ``values``.
        truncate: the kernel's radius in sigmas.
    """
    if support is None:
        support = tuple(slice(0, n) for n in values.shape)
    offset = [s.start for s in support]
    return gaussian_of_part(values[tuple(support)], offset, values.shape, sigmas, truncate)


def gaussian_of_part(part: np.ndarray, offset, shape, sigmas, truncate: float = 4.0) -> np.ndarray:
    """:func:`gaussian_filter` of an array of ``shape`` that is zero except for ``part``,
    which starts at index ``offset``; the zeros are never built."""
    matrices = []
    for n, s, start, size in zip(shape, sigmas, offset, part.shape, strict=True):
        columns = slice(int(start), int(start) + size)
        if s > 0:
            matrices.append(gaussian_matrix(n, round(float(s), 12), float(truncate))[:, columns])
        else:
            # Identity on the part's range, placed within the full axis.
            matrices.append(np.eye(n, dtype=np.float32)[:, columns])
    return apply_separable(part, matrices)


def _shifted(mask: np.ndarray, size, combine, edge: bool) -> np.ndarray:
    result = np.array(mask, dtype=bool, order="C")
    for axis, width in enumerate(size):
        half = int(width) // 2
        if half == 0:
            continue
        n = result.shape[axis]

        def along(part: slice, axis: int = axis) -> tuple[slice, ...]:
            return (slice(None),) * axis + (part,)

        source = result.copy()
        for shift in range(1, min(half, n - 1) + 1):
            head, tail = along(slice(shift, None)), along(slice(None, n - shift))
            combine(result[head], source[tail], out=result[head])
            combine(result[tail], source[head], out=result[tail])
        if not edge:
            # Outside counts as empty: within ``half`` of either end an eroded voxel is empty.
            reach = min(half, n)
            result[along(slice(None, reach))] = False
            result[along(slice(n - reach, None))] = False
    return result


def erode_box(mask: np.ndarray, size) -> np.ndarray:
    """Binary erosion by a centred box of odd ``size`` per axis; outside counts as empty.

    The same as ``ndimage.minimum_filter(mask, size, mode="constant", cval=False)``, done as
    shifted ANDs along each axis (several times faster).
    """
    return _shifted(mask, size, np.logical_and, edge=False)


def dilate_box(mask: np.ndarray, size) -> np.ndarray:
    """Binary dilation by a centred box of odd ``size`` per axis, as
    ``ndimage.maximum_filter(mask, size, mode="constant", cval=False)``."""
    return _shifted(mask, size, np.logical_or, edge=True)
