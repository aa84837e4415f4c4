"""Liver and liver-tumor segmentation of a CT volume, and a table of the tumors found.

The pipeline is the authors' evaluation (``shared/spec/segmentation.md``):

1. **Preprocess** with MONAI's array transforms: ``Orientation`` to RAS, ``Spacing`` to 1 mm
   (bilinear), ``ScaleIntensityRange`` from the HU window [-21, 189] to [0, 1] with clipping,
   ``SpatialPad`` to at least the window size (padded with the image minimum).
2. **Sliding windows** of 96³ with Gaussian blending (see the two modes below).
3. **Back to the input grid**: the logits go through the inverse of step 1 (MONAI's invertible
   transforms, as the original's ``Invertd(nearest_interp=False)``: the padding is cropped, the
   logits are resampled bilinearly onto the input's exact grid and the reorientation undone), and
   the label is their argmax there. The result carries the input's affine, unchanged.
4. **Post-processing** on that grid, as the original does it after ``Invertd``: keep the largest
   6-connected liver component; keep tumor only within 30 voxels of it (30 iterations of a
   6-connected binary dilation); everything else becomes background.

Two modes:

- ``"parity"``: step 2 *is* ``monai.inferers.sliding_window_inference(x, roi_size, 1, model,
  overlap=0.75, mode="gaussian")``, the authors' evaluation call; the logits are bit for bit
  those of calling it directly.
- ``"fast"`` (default): the same window grid, Gaussian map and blending arithmetic (so the
  same logits up to float rounding where it runs the whole grid), made cheaper: several
  windows per forward pass, ``torch.inference_mode``, one forward pass shared by all windows
  whose input is constant (e.g. all air: their outputs are identical); on the CPU a
  *compiled* U-Net (``torch.compile`` with inductor and frozen weights: fused normalisation
  and activation kernels, prepacked convolution weights; 1.15–1.3× faster a window on a
  2-core CPU, built once a Segmenter in 9–40 s, so only when a volume needs at least
  :data:`COMPILE_MIN_PASSES` forward passes; eager execution when compiling fails, e.g.
  without a C++ compiler); Swin-UNETR's window attention through PyTorch's fused
  ``scaled_dot_product_attention`` (MONAI's ``use_flash_attention``); channels-last memory
  for the U-Net and float16 autocast on CUDA only; and a *refined* window grid: every other
  window along each axis runs first (about 1/8 of the grid), and the rest of the grid runs only
  where those coarse windows left the labels in doubt: a window runs when its central cube
  (:data:`REFINE_CORE` of the window each side of its centre, 24 voxels of 96) holds a voxel
  whose top two blended logits differ by less than ``refine_margin`` (:data:`REFINE_MARGIN`,
  0.5 logit). Every window run is blended as in the full grid, so a voxel in doubt gets every
  window that weighs on it but the far ones (their Gaussian weight is under 14 % of the
  centre's); a voxel the coarse windows were sure of keeps a blend of fewer windows. A network
  in doubt everywhere (random weights) refines the whole grid. ``refine_margin=None`` runs the
  full grid everywhere, the same logits as parity mode up to float rounding. A sparser grid
  is an option too: ``overlap=0.625`` runs about 3× fewer windows everywhere, and with the
  trained demo U-Net on a 512×512×200 phantom kept 99.89 % of the final labels, the refined
  grid more than 99.99 % (``benchmarks/inference.py --trained`` and
  ``benchmarks/refinement.py``; numbers in ``benchmarks/README.md``).

Example:
    >>> segmenter = Segmenter.from_checkpoint("models/demo/model.pt")  # doctest: +SKIP
    >>> result = segmenter.predict(load_nifti("ct.nii.gz"))  # doctest: +SKIP
    >>> result.lesions[0].volume_ml  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers import sliding_window_inference
from monai.networks.nets.swin_unetr import WindowAttention
from monai.transforms import Compose, Orientation, ScaleIntensityRange, Spacing, SpatialPad
from scipy import ndimage
from scipy.spatial import ConvexHull
from torch import nn

from syntumor_core.checkpoints import CheckpointInfo, load_model
from syntumor_core.errors import MaskError, ParameterError, VolumeError
from syntumor_core.models import ARCHITECTURES
from syntumor_core.postprocess import LesionFilter, filter_lesions, labels_from_probabilities
from syntumor_core.volume import (
    MAX_RESAMPLED_VOXELS,
    Volume,
    check_resampled_size,
    validate_image,
)

logger = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("fast", "parity")
HU_WINDOW: tuple[float, float] = (-21.0, 189.0)
SPACING_MM: tuple[float, float, float] = (1.0, 1.0, 1.0)
EVALUATION_OVERLAP = 0.75  # the authors' evaluation
SIGMA_SCALE = 0.125  # MONAI's default Gaussian sigma, as a fraction of the window
LIVER_LABEL, TUMOR_LABEL = 1, 2
LIVER_MARGIN_VOXELS = 30
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
_CUDA_FAST_BATCH = 4
_CPU_FAST_BATCH = {"unet": 2}  # Swin-UNETR measured no faster with 2 windows a pass on a CPU
COMPILE_MIN_PASSES = 512  # compiling (9-40 s) pays for itself from about this many passes
REFINE_MARGIN = 0.5  # fast mode: a voxel whose coarse top-two logits differ by less is in doubt
REFINE_CORE = 0.25  # a window runs when its central cube (this fraction each side) holds one
MODEL_CONFIG_FILE = "config.json"  # beside model.pt: what the network was trained on

ProgressCallback = Callable[[float], None]


@dataclass(frozen=True)
class LesionRow:
    """One connected tumor component (26-connected) of a segmentation.

    Args:
        index: rank by size, 1 = the largest.
        voxels: voxel count.
        volume_ml: voxels × voxel volume, in millilitres.
        longest_axial_diameter_mm: the largest extent within one axial slice (the longest
            distance between corners of the component's pixels in that slice), over all slices.
        centroid_voxel: centre of mass in array index coordinates.
        centroid_mm: the same point in world (RAS+) millimetres.
        mean_hu: mean of the CT over the component, in HU.
    """

    index: int
    voxels: int
    volume_ml: float
    longest_axial_diameter_mm: float
    centroid_voxel: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]
    mean_hu: float


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """What :meth:`Segmenter.predict` returns.

    Args:
        labels: uint8 label map (0 background, 1 liver, 2 tumor) on the input's exact grid,
            with the input's affine.
        lesions: one row per tumor component, largest first.
        mode: ``"fast"`` or ``"parity"``.
        seconds: wall time of the whole prediction.
        timings: seconds per stage (preprocess, sliding_window, restore, postprocess, lesions).
        lesion_filter: the :class:`~syntumor_core.postprocess.LesionFilter` options applied
            (:meth:`~syntumor_core.postprocess.LesionFilter.as_dict`), ``None`` if none was.
        lesion_report: what the filter removed (counts), ``None`` if none was applied.
    """

    labels: Volume
    lesions: tuple[LesionRow, ...]
    mode: str
    seconds: float
    timings: Mapping[str, float] = field(default_factory=dict)
    lesion_filter: Mapping[str, Any] | None = None
    lesion_report: Mapping[str, int] | None = None


def _choice(name: str, value: str, options: Sequence[str]) -> str:
    if value in options:
        return value
    close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ParameterError(f"{name} must be one of {', '.join(options)}, got {value!r}{hint}")


def _positive_triple(name: str, value, cast) -> tuple:
    values = (value,) * 3 if isinstance(value, int | float) else tuple(value)
    if len(values) != 3 or not all(
        not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v) and v > 0
        for v in values
    ):
        raise ParameterError(f"{name} must be one or three positive numbers, got {value!r}")
    if cast is int and any(int(v) != v for v in values):
        raise ParameterError(f"{name} must be whole numbers of voxels, got {value!r}")
    return tuple(cast(v) for v in values)


def _check_overlap(overlap: float) -> float:
    if not (isinstance(overlap, int | float) and 0.0 <= overlap < 1.0):
        raise ParameterError(f"overlap must be in [0, 1), got {overlap!r}")
    return float(overlap)


def window_slices(image_size: Sequence[int], roi_size: Sequence[int], overlap: float) -> list:
    """The windows MONAI's ``sliding_window_inference`` visits, in its order.

    Args:
        image_size: spatial size of the (already padded) image, each >= the window.
        roi_size: window size per axis.
        overlap: fraction of a window shared with the next one, in [0, 1).

    Returns:
        A list of ``(slice, slice, slice)``, one per window.
    """
    intervals = [
        roi if roi == size else max(int(roi * (1 - overlap)), 1)
        for size, roi in zip(image_size, roi_size, strict=True)
    ]
    return dense_patch_slices(tuple(image_size), tuple(roi_size), intervals)


class Segmenter:
    """A loaded network and the inference pipeline around it (load once, predict many times).

    The model is moved to ``device`` and put in eval mode. Fast mode changes only copies of it
    (channels-last on CUDA, fused Swin attention), so the caller's model stays as it was and
    parity mode runs it unchanged.

    Args:
        model: a network with one input channel and three output channels (0, 1 liver, 2 tumor).
        arch: its architecture, one of :data:`~syntumor_core.models.ARCHITECTURES`.
        mode: ``"fast"`` (default) or ``"parity"`` (see the module docstring).
        device: torch device; default CUDA when available, else the CPU.
        roi_size: sliding-window size (96³ for the published networks).
        overlap: window overlap (0.75, the authors' evaluation; see the module docstring).
        sw_batch_size: windows per forward pass; parity mode allows only 1 (the authors'
            setting); default in fast mode 4 on CUDA, on the CPU 2 for the U-Net and 1 for
            Swin-UNETR.
        spacing_mm: the grid the network runs on (1 mm for the published networks).
        hu_window: HU range mapped to [0, 1].
        amp: float16 autocast; default on in fast mode on CUDA, never in parity mode or on
            the CPU.
        refine_margin: fast mode only: run every other window first (about 1/8 of the grid),
            then only the windows whose central cube (:data:`REFINE_CORE` of the window each
            side of its centre) holds a voxel where the top two blended logits of those
            coarse windows differ by less than this (logits); all windows run are blended
            as the full grid would be. ``0`` runs the coarse windows only; ``None`` runs the
            full grid everywhere (the same logits as parity mode up to float rounding).
        compile: fast mode only: run the network through ``torch.compile`` (frozen weights,
            one static window batch). ``None`` (default) compiles the U-Net on the CPU when a
            run needs at least :data:`COMPILE_MIN_PASSES` forward passes; ``True`` compiles
            any architecture on any device for any run; ``False`` never. If compiling fails
            the network runs eagerly (a warning is logged).
        max_voxels: memory budget of the resampled grid (see
            :func:`~syntumor_core.volume.check_resampled_size`); an image whose grid would be
            larger is refused before anything is allocated. ``None``: no budget.

    Raises:
        ParameterError: an option is out of range or unknown.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        arch: str,
        mode: str = "fast",
        device: torch.device | str | None = None,
        roi_size: Sequence[int] | int = (96, 96, 96),
        overlap: float = EVALUATION_OVERLAP,
        sw_batch_size: int | None = None,
        spacing_mm: Sequence[float] | float = SPACING_MM,
        hu_window: tuple[float, float] = HU_WINDOW,
        amp: bool | None = None,
        refine_margin: float | None = REFINE_MARGIN,
        compile: bool | None = None,
        max_voxels: int | None = MAX_RESAMPLED_VOXELS,
    ) -> None:
        self.arch = _choice("arch", arch, ARCHITECTURES)
        self.mode = _choice("mode", mode, MODES)
        parity = self.mode == "parity"
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.roi_size: tuple[int, int, int] = _positive_triple("roi_size", roi_size, int)
        self.spacing_mm = _positive_triple("spacing_mm", spacing_mm, float)
        self.max_voxels = max_voxels
        self.overlap = _check_overlap(overlap)
        if parity and sw_batch_size not in (None, 1):
            raise ParameterError(
                f"parity mode runs one window at a time (sw_batch_size=1, as the authors); "
                f"got sw_batch_size={sw_batch_size}"
            )
        default_batch = 1
        if not parity:
            cuda = self.device.type == "cuda"
            default_batch = _CUDA_FAST_BATCH if cuda else _CPU_FAST_BATCH.get(self.arch, 1)
        batch = default_batch if sw_batch_size is None else sw_batch_size
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ParameterError(f"sw_batch_size must be a positive integer, got {batch!r}")
        self.sw_batch_size = batch
        low, high = (float(v) for v in hu_window)
        if not low < high:
            raise ParameterError(f"hu_window must be (low, high) with low < high, got {hu_window}")
        self.hu_window = (low, high)
        self.channels_last = not parity and self.arch == "unet" and self.device.type == "cuda"
        if compile is not None and not isinstance(compile, bool):
            raise ParameterError(f"compile must be True, False or None, got {compile!r}")
        if compile and parity:
            raise ParameterError("compile needs fast mode: parity runs MONAI's call unchanged")
        auto = self.arch == "unet" and self.device.type == "cpu"
        # the fewest forward passes a run needs before it compiles; None: it never does
        self._compile_from: int | None = None
        if compile or (compile is None and auto and not parity):
            self._compile_from = 0 if compile else COMPILE_MIN_PASSES
        self._compiled: Callable | None = None
        if amp and (parity or self.device.type != "cuda"):
            raise ParameterError(
                f"amp (float16 autocast) needs fast mode on CUDA; got mode {self.mode!r} on "
                f"{self.device.type}"
            )
        self.autocast = (not parity and self.device.type == "cuda") if amp is None else amp
        self.refine_margin: float | None = None  # None: the full grid everywhere
        if not parity and refine_margin is not None:
            if isinstance(refine_margin, bool) or not (
                isinstance(refine_margin, int | float) and 0 <= refine_margin < math.inf
            ):
                raise ParameterError(
                    f"refine_margin must be a logit margin >= 0 or None, got {refine_margin!r}"
                )
            self.refine_margin = float(refine_margin)
        if self.channels_last:
            model = copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
        if not parity:
            model = _with_fused_attention(model)
        self.model = model.to(self.device).eval()
        self.checkpoint: CheckpointInfo | None = None
        self._transforms = Compose(
            [
                Orientation(axcodes="RAS", labels=_RAS_LABELS),
                Spacing(pixdim=self.spacing_mm, mode="bilinear"),
                ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True),
                SpatialPad(spatial_size=self.roi_size, mode="minimum"),
            ]
        )

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, arch: str | None = None, use_config: bool = True, **kwargs
    ) -> Segmenter:
        """Load a checkpoint safely (see :func:`~syntumor_core.checkpoints.load_model`).

        A ``config.json`` beside the file (as ``syntumor train`` writes one) supplies the
        grid and HU window the network was trained on (see :func:`recorded_settings`);
        options passed here win over it.

        Args:
            path: the ``model.pt`` file.
            arch: its architecture; detected from the weights when omitted.
            use_config: read that ``config.json``; False keeps the published settings.
            **kwargs: options of :class:`Segmenter` (mode, device, …).

        Raises:
            CheckpointError: unsafe, unreadable or mismatched file.
            ParameterError: the ``config.json`` records settings that make no sense.
        """
        if use_config:
            kwargs = {**settings_beside(path), **kwargs}
        model, info = load_model(path, arch)
        segmenter = cls(model, arch=info.arch, **kwargs)
        segmenter.checkpoint = info
        return segmenter

    def preprocess(self, volume: Volume) -> MetaTensor:
        """Step 1: the image on the network's grid, shape ``(1, X, Y, Z)``, values in [0, 1].

        The returned tensor records the transforms applied, which :meth:`restore` inverts.

        Args:
            volume: CT in HU, any orientation and spacing.
        """
        if not isinstance(volume, Volume):
            raise VolumeError(f"expected a Volume, got {type(volume).__name__}")
        if self.max_voxels is not None:
            check_resampled_size(volume.shape, volume.spacing, self.spacing_mm,
                                 max_voxels=self.max_voxels, name="image to segment")  # fmt: skip
        validate_image(np.asarray(volume.array), name="image to segment")
        array = np.array(volume.array, dtype=np.float32)[None]
        affine = torch.as_tensor(np.asarray(volume.affine, dtype=np.float64))
        image = MetaTensor(torch.from_numpy(array), affine=affine).to(self.device)
        return self._transforms(image)

    def sliding_window_logits(
        self, batch: torch.Tensor, *, progress: ProgressCallback | None = None
    ) -> torch.Tensor:
        """Step 2: logits ``(N, 3, X, Y, Z)`` of a preprocessed batch ``(N, 1, X, Y, Z)``.

        Args:
            batch: preprocessed images.
            progress: called with the fraction of windows done.
        """
        batch = batch.as_tensor() if isinstance(batch, MetaTensor) else torch.as_tensor(batch)
        if batch.ndim != 5 or batch.shape[1] != 1:
            raise VolumeError(f"expected a batch (N, 1, X, Y, Z), got shape {tuple(batch.shape)}")
        report = progress or (lambda fraction: None)
        if self.mode == "parity":
            with torch.inference_mode():
                return self._parity_logits(batch.to(self.device), report)
        # cuDNN may pick its fastest kernels (scoped: the global flags are restored after)
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, benchmark=True):
            return self._fast_logits(batch.to(self.device, torch.float32), report)

    def _parity_logits(self, batch: torch.Tensor, report: ProgressCallback) -> torch.Tensor:
        padded = [max(n, r) for n, r in zip(batch.shape[2:], self.roi_size, strict=True)]
        total = len(window_slices(padded, self.roi_size, self.overlap)) * batch.shape[0]
        done = [0]

        def counted_model(windows: torch.Tensor) -> torch.Tensor:
            logits = self.model(windows)  # returned untouched: MONAI's arithmetic is unchanged
            done[0] += 1
            report(done[0] / total)
            return logits

        return sliding_window_inference(
            batch,
            roi_size=self.roi_size,
            sw_batch_size=1,
            predictor=counted_model,
            overlap=self.overlap,
            mode="gaussian",
        )

    @property
    def compile(self) -> bool:
        """Whether a run may use the compiled network (False also after compiling failed)."""
        return self._compile_from is not None

    @property
    def refine_core(self) -> tuple[int, int, int]:
        """Half-size in voxels of the central cube of a window that refinement looks at."""
        return tuple(int(r * REFINE_CORE) for r in self.roi_size)

    @property
    def compiled(self) -> bool:
        """Whether the compiled network has been built (runs large enough use it)."""
        return self._compiled is not None

    def _network_for(self, passes: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The compiled network for a run of ``passes`` forward passes, or None (eager)."""
        if self._compile_from is None:
            return None
        if self._compiled is None:
            if passes < self._compile_from:
                return None
            # freezing folds the weights into the graph as constants (inference only);
            # dynamic=False: one shape, the full window batch (see _forward)
            self._compiled = torch.compile(self.model, dynamic=False, options={"freezing": True})
        return self._compiled

    def _forward(self, windows: torch.Tensor, compiled: bool = False) -> torch.Tensor:
        """Logits of a batch of windows: through the compiled network when ``compiled`` and
        one was built (see :meth:`_network_for`), else eagerly."""
        if compiled and self._compiled is not None:
            count = windows.shape[0]
            missing = self.sw_batch_size - count
            if missing > 0:  # a short last batch would compile a second graph: pad it
                filler = windows[-1:].expand(missing, *windows.shape[1:])
                windows = torch.cat([windows, filler])
            try:
                with torch.autocast(self.device.type, torch.float16, enabled=self.autocast):
                    return self._compiled(windows).float()[:count]
            except Exception as error:  # noqa: BLE001 - compiling is an optimisation; eager works
                logger.warning("compiled execution failed, running the network eagerly: %s", error)
                self._compile_from, self._compiled = None, None
                windows = windows[:count]
        if self.channels_last:
            windows = windows.contiguous(memory_format=torch.channels_last_3d)
        if self.autocast:
            with torch.autocast(device_type=self.device.type, dtype=torch.float16):
                return self.model(windows).float()
        return self.model(windows).float()

    def _fast_logits(self, batch: torch.Tensor, report: ProgressCallback) -> torch.Tensor:
        size = batch.shape[2:]
        before = [max(r - n, 0) // 2 for n, r in zip(size, self.roi_size, strict=True)]
        after = [max(r - n, 0) - b for n, r, b in zip(size, self.roi_size, before, strict=True)]
        pad = [width for axis in (2, 1, 0) for width in (before[axis], after[axis])]
        padded = nn.functional.pad(batch, pad) if any(pad) else batch  # symmetric, as MONAI
        slices = window_slices(padded.shape[2:], self.roi_size, self.overlap)
        crop = [slice(b, b + n) for b, n in zip(before, size, strict=True)]
        blend = _Blend(padded.shape, self.roi_size, self.device)
        # whether to compile depends on the volume (its whole grid), not on how much of the
        # grid the refinement ends up running: the coarse pass alone may be under the threshold
        self._network_for(math.ceil(len(slices) * padded.shape[0] / self.sw_batch_size))
        if self.refine_margin is None:
            self._run_windows(padded, slices, [blend], report)
            return blend.result()[(slice(None), slice(None), *crop)]
        # 1. every other window along each axis: coarse logits everywhere
        coarse = _coarse_window_indices(slices)
        constant: dict = {}
        coarse_windows = [slices[i] for i in coarse]
        self._run_windows(padded, coarse_windows, [blend], lambda f: report(0.3 * f), constant)
        # 2. the rest of the grid only where a window's core holds an uncertain voxel
        uncertain = _uncertain(blend.result(), self.refine_margin)
        hit = _any_within(uncertain, self.refine_core)
        done = set(coarse)
        centre = [r // 2 for r in self.roi_size]
        fine = [
            window
            for i, window in enumerate(slices)
            if i not in done
            and hit[tuple(s.start + c for s, c in zip(window, centre, strict=True))]
        ]
        del uncertain, hit
        self._run_windows(padded, fine, [blend], lambda f: report(0.3 + 0.7 * f), constant)
        # Every window run is blended as in the full grid: where all windows covering a voxel
        # ran, its logits are the full grid's; elsewhere a weighted mean of fewer windows.
        return blend.result()[(slice(None), slice(None), *crop)]

    def _run_windows(
        self,
        padded: torch.Tensor,
        windows: list,
        blends: list,
        report: ProgressCallback,
        constant: dict | None = None,
    ) -> None:
        """Run ``windows`` over each image of ``padded`` and add their logits to ``blends``.

        Windows whose input is constant (all air, say) share one forward pass per value;
        ``constant`` (value -> logits) carries those between calls.
        """
        jobs = []
        constant = {} if constant is None else constant
        for window in windows:
            for image_index in range(padded.shape[0]):
                region = (slice(image_index, image_index + 1), slice(None), *window)
                low, high = padded[region].aminmax()
                jobs.append((region, float(low) if low == high else None))
        runs = [job for job in jobs if job[1] is None]
        firsts = {}
        for job in jobs:
            if job[1] is not None and job[1] not in firsts and job[1] not in constant:
                firsts[job[1]] = job
        runs.extend(firsts.values())
        compiled = self._network_for(math.ceil(len(runs) / self.sw_batch_size)) is not None
        for start in range(0, len(runs), self.sw_batch_size):
            chunk = runs[start : start + self.sw_batch_size]
            logits = self._forward(torch.cat([padded[region] for region, _ in chunk]), compiled)
            for (region, value), window_logits in zip(chunk, logits, strict=True):
                if value is None:
                    for blend in blends:
                        blend.add(region, window_logits)
                else:
                    constant[value] = window_logits
            report(min(start + self.sw_batch_size, len(runs)) / len(runs))
        if not runs:
            report(1.0)
        for region, value in jobs:
            if value is not None:
                for blend in blends:
                    blend.add(region, constant[value])

    def restore(self, logits: torch.Tensor, preprocessed: MetaTensor) -> np.ndarray:
        """Step 3: the argmax label of ``logits`` ``(3, X, Y, Z)`` on the input's grid.

        Args:
            logits: one image's logits on the network's grid.
            preprocessed: what :meth:`preprocess` returned for that image.
        """
        tracked = MetaTensor(
            logits,
            meta=dict(preprocessed.meta),
            applied_operations=list(preprocessed.applied_operations),
        )
        with torch.inference_mode():
            restored = self._transforms.inverse(tracked)
            labels = restored.as_tensor().argmax(dim=0).to(torch.uint8)
        return labels.cpu().numpy()

    def restore_probabilities(self, logits: torch.Tensor, preprocessed: MetaTensor) -> np.ndarray:
        """Softmax probabilities (3, ...) on the input's grid, as :meth:`restore` goes back."""
        tracked = MetaTensor(
            logits,
            meta=dict(preprocessed.meta),
            applied_operations=list(preprocessed.applied_operations),
        )
        with torch.inference_mode():
            restored = self._transforms.inverse(tracked).as_tensor().float()
            return torch.softmax(restored, dim=0).cpu().numpy()

    def predict(
        self,
        volume: Volume,
        *,
        progress: ProgressCallback | None = None,
        lesion_filter: LesionFilter | None = None,
    ) -> SegmentationResult:
        """Segment liver and tumors in a CT volume.

        Args:
            volume: CT in HU (any orientation, spacing and size).
            progress: called with the fraction done, from 0 to 1.
            lesion_filter: clean the tumor label after the original post-processing
                (:mod:`syntumor_core.postprocess`); ``None``: the original post-processing
                only, as the authors' evaluation.

        Returns:
            Labels on the input's exact grid and affine, and the tumor table.
        """
        report = progress or (lambda fraction: None)
        started = time.perf_counter()
        timings: dict[str, float] = {}

        def lap(stage: str, since: float) -> float:
            now = time.perf_counter()
            timings[stage] = now - since
            return now

        report(0.0)
        image = self.preprocess(volume)
        mark = lap("preprocess", started)
        report(0.05)
        logits = self.sliding_window_logits(
            image.as_tensor()[None], progress=lambda fraction: report(0.05 + 0.85 * fraction)
        )
        mark = lap("sliding_window", mark)
        threshold = lesion_filter.tumor_probability if lesion_filter else None
        if threshold is None:
            raw = self.restore(logits[0], image)
        else:
            raw = labels_from_probabilities(self.restore_probabilities(logits[0], image), threshold)
        del logits, image
        mark = lap("restore", mark)
        labels = postprocess(raw)
        report_removed = None
        if lesion_filter is not None:
            voxel_mm3 = abs(float(np.linalg.det(np.asarray(volume.affine)[:3, :3])))
            labels, report_removed = filter_lesions(labels, voxel_mm3, lesion_filter)
        mark = lap("postprocess", mark)
        report(0.95)
        lesions = lesion_table(labels, np.asarray(volume.array), volume.affine)
        lap("lesions", mark)
        report(1.0)
        seconds = time.perf_counter() - started
        logger.info("segmented %s volume in %.1f s (%s mode)", volume.shape, seconds, self.mode)
        affine = np.array(volume.affine, dtype=np.float64, copy=True)
        return SegmentationResult(
            Volume(labels, affine), lesions, self.mode, seconds, timings,
            lesion_filter.as_dict() if lesion_filter else None, report_removed,
        )  # fmt: skip


def recorded_settings(config: Mapping) -> dict:
    """The :class:`Segmenter` options a model's ``config.json`` records.

    ``spacing_mm`` (three mm values) and ``window_hu`` (low, high) become ``spacing_mm`` and
    ``hu_window``: a network trained on a 1.5 mm grid or another window must see the same at
    inference. Keys that are absent are left out (the published settings apply); the crop
    size is not taken over, since the network is fully convolutional and the sliding window
    stays the caller's choice.

    Raises:
        ParameterError: a recorded value is malformed or out of range.
    """
    settings = {}
    spacing = config.get("spacing_mm")
    if spacing is not None:
        try:
            values = tuple(float(v) for v in spacing)
        except (TypeError, ValueError):
            values = ()
        if len(values) != 3 or not all(0.1 <= v <= 10.0 for v in values):
            raise ParameterError(
                f"{MODEL_CONFIG_FILE}: spacing_mm must be three values of 0.1-10 mm, got {spacing!r}"
            )
        settings["spacing_mm"] = values
    window = config.get("window_hu")
    if window is not None:
        try:
            low, high = (float(v) for v in window)
        except (TypeError, ValueError):
            low = high = math.nan
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ParameterError(
                f"{MODEL_CONFIG_FILE}: window_hu must be [low, high] HU with low < high, got {window!r}"
            )
        settings["hu_window"] = (low, high)
    return settings


def settings_beside(checkpoint: str | Path) -> dict:
    """:func:`recorded_settings` of the ``config.json`` beside ``checkpoint``; ``{}`` when
    there is none.

    Raises:
        ParameterError: the file is unreadable, not a JSON object, or records nonsense.
    """
    path = Path(checkpoint).parent / MODEL_CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ParameterError(f"cannot read {path}: {error}") from error
    if not isinstance(config, dict):
        raise ParameterError(f"{path} must hold a JSON object")
    return recorded_settings(config)


class _Blend:
    """Gaussian-weighted sum of window logits and of the weights, as MONAI blends windows."""

    def __init__(self, shape, roi_size, device, sigma_scale: float = SIGMA_SCALE) -> None:
        self.weight = compute_importance_map(
            roi_size, mode="gaussian", sigma_scale=sigma_scale, device=device
        ).to(torch.float32)[None]
        self.shape = tuple(shape)
        self.device = device
        self.outputs: torch.Tensor | None = None
        self.count = torch.zeros((1, 1, *shape[2:]), device=device)
        self._counted: set = set()

    def add(self, region: tuple, logits: torch.Tensor) -> None:
        if self.outputs is None:
            self.outputs = torch.zeros((self.shape[0], logits.shape[0], *self.shape[2:]),
                                       device=self.device)  # fmt: skip
        self.outputs[region] += logits * self.weight
        spatial = tuple((s.start, s.stop) for s in region[2:])
        if spatial not in self._counted:  # the weight counts once per window, not per image
            self._counted.add(spatial)
            self.count[(slice(None), slice(None), *region[2:])] += self.weight[None]

    def result(self) -> torch.Tensor:
        return self.outputs / self.count


def _with_fused_attention(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose Swin window attention uses PyTorch's fused kernel.

    MONAI's ``WindowAttention(use_flash_attention=True)`` computes the same attention with
    ``scaled_dot_product_attention`` (relative-position bias and shift mask as its additive
    mask) instead of materialising and soft-maxing the scores itself: about 1.45× faster a
    Swin-UNETR tiny window on the CPU, logits equal to ~1e-6. ``model`` itself is left alone
    (parity mode runs it unchanged); a model without window attention is returned as it is.
    """
    if not any(isinstance(module, WindowAttention) for module in model.modules()):
        return model
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, WindowAttention):
            module.use_flash_attention = True
    return model


def _coarse_window_indices(slices: list) -> list[int]:
    """Every other window start along each axis (and the last one): about 1/8 of the grid."""
    starts = [sorted({window[axis].start for window in slices}) for axis in range(3)]
    keep = []
    for axis_starts in starts:
        chosen = set(axis_starts[::2]) | {axis_starts[-1]}
        keep.append(chosen)
    return [
        index
        for index, window in enumerate(slices)
        if all(window[axis].start in keep[axis] for axis in range(3))
    ]


def _uncertain(logits: torch.Tensor, margin: float) -> np.ndarray:
    """Voxels ``(X, Y, Z)`` where, in any image, the top two logits differ by less than
    ``margin``. One pass a class (no sort): light on memory for a whole CT."""
    first = logits[:, 0].clone()
    second = torch.full_like(first, -math.inf)
    for index in range(1, logits.shape[1]):
        value = logits[:, index]
        second = torch.maximum(second, torch.minimum(first, value))
        first = torch.maximum(first, value)
    return ((first - second) < margin).any(dim=0).cpu().numpy()


def _any_within(mask: np.ndarray, reach: Sequence[int]) -> np.ndarray:
    """Voxels with a ``mask`` voxel within ``reach[axis]`` voxels along every axis (a box).

    A box is separable: scipy runs one O(N) 1-D maximum filter an axis."""
    size = [2 * r + 1 for r in reach]
    return ndimage.maximum_filter(mask.view(np.uint8), size=size, mode="constant").view(bool)


def _check_label_map(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 3:
        raise MaskError(f"{name} must be 3-D, got shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise MaskError(f"{name} must hold integer labels 0, 1, 2, got dtype {array.dtype}")
    unexpected = np.setdiff1d(np.unique(array), [0, LIVER_LABEL, TUMOR_LABEL])
    if unexpected.size:
        raise MaskError(
            f"{name} may hold only 0 (background), 1 (liver), 2 (tumor); got also "
            f"{unexpected[:5].tolist()}"
        )
    return array


def _within_margin(mask: np.ndarray, margin: int) -> np.ndarray:
    """``binary_dilation(mask, iterations=margin)`` (6-connected), computed on a crop.

    Voxels within ``margin`` 6-connected steps of ``mask`` are those at city-block distance
    <= margin, all inside the mask's bounding box grown by ``margin``; the distance transform
    of that crop gives the same set as the iterated dilation, much faster.
    """
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    crop = tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, n))
        for s, n in zip(box, mask.shape, strict=True)
    )
    distance = ndimage.distance_transform_cdt(~mask[crop], metric="taxicab")
    near = np.zeros(mask.shape, dtype=bool)
    near[crop] = distance <= margin
    return near


def postprocess(labels: np.ndarray, *, margin_voxels: int = LIVER_MARGIN_VOXELS) -> np.ndarray:
    """The original post-processing of a label map (0 background, 1 liver, 2 tumor).

    Keeps the largest 6-connected liver component (the first one on a tie) and the tumor
    voxels within ``margin_voxels`` 6-connected steps of it (the original's 30 iterations of
    ``scipy.ndimage.binary_dilation``); everything else becomes background. Without any liver,
    the result is all background.

    Args:
        labels: integer label map, 3-D, values 0, 1, 2.
        margin_voxels: dilation iterations (30 in the original).

    Returns:
        A new uint8 label map of the same shape.
    """
    array = _check_label_map(labels)
    if isinstance(margin_voxels, bool) or not isinstance(margin_voxels, int) or margin_voxels < 0:
        raise ParameterError(f"margin_voxels must be an integer >= 0, got {margin_voxels!r}")
    result = np.zeros(array.shape, dtype=np.uint8)
    components, count = ndimage.label(array == LIVER_LABEL)  # default: 6-connectivity
    if count == 0:
        return result
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    liver = components == 1 + int(np.argmax(sizes[1:]))
    result[liver] = LIVER_LABEL
    result[(array == TUMOR_LABEL) & _within_margin(liver, margin_voxels)] = TUMOR_LABEL
    return result


_SMALL_GROUP_POINTS = 64  # up to this many corner points per slice: all pairs; more: hull first


def _corner_points(rows: np.ndarray, columns: np.ndarray, group_of: np.ndarray) -> tuple:
    """The outer corners of the first and last pixel of every pixel row of every group.

    Pixels are sorted by (group, row, column). A pixel that is neither first nor last in its
    row lies between them, so its corners are never the end of a longest corner-to-corner
    segment; each row contributes the two left corners of its first pixel and the two right
    corners of its last. Returns (points (M, 2), group of each point), sorted by group.
    """
    new_run = np.ones(len(rows), dtype=bool)
    new_run[1:] = (rows[1:] != rows[:-1]) | (group_of[1:] != group_of[:-1])
    first = np.flatnonzero(new_run)
    last = np.append(first[1:], len(rows)) - 1
    points = []
    for ends, side in ((first, -0.5), (last, 0.5)):
        for row_side in (-0.5, 0.5):
            points.append(np.stack([rows[ends] + row_side, columns[ends] + side], axis=1))
    order = np.argsort(np.tile(group_of[first], 4), kind="stable")
    return np.concatenate(points)[order], np.tile(group_of[first], 4)[order]


def _farthest_pair(points: np.ndarray, metric: np.ndarray) -> np.ndarray:
    """Per group of ``points`` ``(G, P, 2)``, the longest distance under ``metric`` (mm²)."""
    rows, columns = points[..., 0], points[..., 1]
    row_gaps = rows[:, :, None] - rows[:, None, :]
    column_gaps = columns[:, :, None] - columns[:, None, :]
    squared = metric[0, 0] * row_gaps**2 + metric[1, 1] * column_gaps**2
    if metric[0, 1] != 0:  # oblique in-plane axes
        squared += 2 * metric[0, 1] * row_gaps * column_gaps
    return np.sqrt(squared.reshape(len(points), -1).max(axis=1))


def _axial_diameters(
    labels_of: np.ndarray, voxels: np.ndarray, count: int, axial_axis: int, matrix: np.ndarray
) -> np.ndarray:
    """Longest axial diameter (mm) of every component: the largest distance between corners
    of its pixels within one slice along ``axial_axis``. Index 0 is unused."""
    row_axis, column_axis = (axis for axis in range(3) if axis != axial_axis)
    to_mm = matrix[:, [row_axis, column_axis]]
    metric = to_mm.T @ to_mm  # squared mm of an in-plane index step
    rows, columns = voxels[:, row_axis], voxels[:, column_axis]
    order = np.lexsort((columns, rows, voxels[:, axial_axis], labels_of))
    keys = np.stack([labels_of[order], voxels[order, axial_axis]], axis=1)
    group_of = np.cumsum(np.any(np.diff(keys, axis=0, prepend=-1), axis=1)) - 1
    group_label = keys[np.flatnonzero(np.diff(group_of, prepend=-1)), 0]
    points, point_group = _corner_points(rows[order].astype(float), columns[order], group_of)
    starts = np.searchsorted(point_group, np.arange(len(group_label)))
    sizes = np.diff(np.append(starts, len(points)))
    diameters = np.zeros(count + 1)
    bounds = (0, 4, 8, 16, 32, _SMALL_GROUP_POINTS)
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        chosen = np.flatnonzero((sizes > low) & (sizes <= high))
        per_chunk = max(1, 2**18 // high**2)  # bounds the (G, P, P, 2) gaps to ~4 MB
        for first in range(0, len(chosen), per_chunk):
            chunk = chosen[first : first + per_chunk]
            # pad every group to `high` points by repeating its first (repeats change no max)
            within = np.minimum(np.arange(high)[None, :], sizes[chunk, None] - 1)
            lengths = _farthest_pair(points[starts[chunk, None] + within], metric)
            np.maximum.at(diameters, group_label[chunk], lengths)
    for group in np.flatnonzero(sizes > _SMALL_GROUP_POINTS):
        corners = points[starts[group] : starts[group] + sizes[group]]
        hull = corners[ConvexHull(corners).vertices]  # affine maps keep the hull
        length = float(_farthest_pair(hull[None], metric)[0])
        diameters[group_label[group]] = max(diameters[group_label[group]], length)
    return diameters


def lesion_table(
    labels: np.ndarray, image: np.ndarray, affine: np.ndarray
) -> tuple[LesionRow, ...]:
    """Describe every tumor component (label 2, 26-connected) of a segmentation.

    Args:
        labels: label map (0, 1 liver, 2 tumor), 3-D.
        image: the CT in HU on the same grid.
        affine: the 4×4 voxel-to-world (RAS+ mm) matrix of that grid; the axial axis is the
            array axis closest to superior–inferior.

    Returns:
        One :class:`LesionRow` per component, largest first (ties: first in array order).
    """
    array = _check_label_map(labels)
    image = np.asarray(image)
    if image.shape != array.shape:
        raise MaskError(f"image shape {image.shape} does not match labels shape {array.shape}")
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise VolumeError(f"affine must be a finite 4×4 matrix, got shape {matrix.shape}")
    components, count = ndimage.label(array == TUMOR_LABEL, structure=np.ones((3, 3, 3)))
    if count == 0:
        return ()
    voxels = np.argwhere(components)
    labels_of = components[tuple(voxels.T)]
    sizes = np.bincount(labels_of, minlength=count + 1)
    centroids = (
        np.stack(
            [
                np.bincount(labels_of, weights=voxels[:, axis], minlength=count + 1)
                for axis in range(3)
            ],
            axis=1,
        )
        / np.maximum(sizes, 1)[:, None]
    )
    hu_sums = np.bincount(labels_of, weights=image[tuple(voxels.T)].astype(np.float64),
                          minlength=count + 1)  # fmt: skip
    diameters = _axial_diameters(
        labels_of, voxels, count, Volume(array, matrix).axial_axis, matrix[:3, :3]
    )
    world = centroids @ matrix[:3, :3].T + matrix[:3, 3]
    voxel_ml = abs(float(np.linalg.det(matrix[:3, :3]))) / 1000.0
    order = sorted(range(1, count + 1), key=lambda label: (-sizes[label], label))
    return tuple(
        LesionRow(
            index=rank,
            voxels=int(sizes[label]),
            volume_ml=int(sizes[label]) * voxel_ml,
            longest_axial_diameter_mm=float(diameters[label]),
            centroid_voxel=tuple(float(c) for c in centroids[label]),  # type: ignore[arg-type]
            centroid_mm=tuple(float(c) for c in world[label]),  # type: ignore[arg-type]
            mean_hu=float(hu_sums[label] / sizes[label]),
        )
        for rank, label in enumerate(order, start=1)
    )
