"""Liver and liver-tumor segmentation of a CT volume: a network loaded once, run many ways.

The pipeline is the authors' evaluation (``shared/spec/segmentation.md``):

1. **Preprocess** with MONAI's array transforms: ``Orientation`` to RAS, ``Spacing`` to 1 mm
   (bilinear), ``ScaleIntensityRange`` from the HU window [-21, 189] to [0, 1] with clipping,
   ``SpatialPad`` to at least the window size (padded with the image minimum).
2. **Sliding windows** of 96³ with Gaussian blending (see the two modes below).
3. **Back to the input grid**: the logits go through the inverse of step 1 (MONAI's invertible
   transforms, as the original's ``Invertd(nearest_interp=False)``: the padding is cropped, the
   logits are resampled bilinearly onto the input's exact grid and the reorientation undone), and
   the label is their argmax there. The result carries the input's affine, unchanged.
4. **Post-processing** on that grid, as the original does it after ``Invertd``
   (:func:`~syntumor_core.segmentation.postprocess.postprocess`), then, if asked, the lesion
   filter; and the lesion table (:mod:`syntumor_core.segmentation.lesions`).

:class:`Predictor` holds what belongs to the network (architecture, device, window size, the
grid and HU window it was trained on); every call of :meth:`Predictor.predict` takes its own
run-time options (:class:`~syntumor_core.segmentation.options.RunOptions`), so one loaded
network serves any mode and window overlap. Two modes:

- ``"parity"``: step 2 *is* ``monai.inferers.sliding_window_inference(x, roi_size, 1, model,
  overlap=0.75, mode="gaussian")``, the authors' evaluation call; the logits are bit for bit
  those of calling it directly.
- ``"fast"`` (default): the same window grid, Gaussian map and blending arithmetic (so the
  same logits up to float rounding where it runs the whole grid), made cheaper
  (:func:`~syntumor_core.segmentation.windows.fast_logits`): several windows per forward pass,
  ``torch.inference_mode``, one forward pass shared by all windows whose input is constant; on
  the CPU a *compiled* U-Net (``torch.compile`` with inductor and frozen weights: fused
  normalisation and activation kernels, prepacked convolution weights; 1.15–1.3× faster a
  window on a 2-core CPU, built once a Predictor in 9–40 s, so only when a volume needs at
  least :data:`~syntumor_core.segmentation.options.COMPILE_MIN_PASSES` forward passes; eager
  execution when compiling fails, e.g. without a C++ compiler); Swin-UNETR's window attention
  through PyTorch's fused ``scaled_dot_product_attention`` (MONAI's ``use_flash_attention``);
  channels-last memory for the U-Net and float16 autocast on CUDA only; and a *refined*
  window grid (:mod:`syntumor_core.segmentation.refine`). ``refine_margin=None`` runs the full
  grid everywhere, the same logits as parity mode up to float rounding. A sparser grid is an
  option too: ``overlap=0.625`` runs about 3× fewer windows everywhere, and with the trained
  demo U-Net on a 512×512×200 phantom kept 99.89 % of the final labels, the refined grid more
  than 99.99 % (``benchmarks/inference.py --trained`` and ``benchmarks/refinement.py``;
  numbers in ``benchmarks/README.md``).

Example:
    >>> predictor = Predictor.from_checkpoint("models/demo/model.pt")  # doctest: +SKIP
    >>> result = predictor.predict(load_nifti("ct.nii.gz"), overlap=0.5)  # doctest: +SKIP
    >>> result.lesions[0].volume_ml  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from monai.transforms import Compose, Orientation, ScaleIntensityRange, Spacing, SpatialPad
from torch import nn

from syntumor_core.checkpoints import CheckpointInfo, load_model
from syntumor_core.errors import ParameterError, VolumeError
from syntumor_core.models import ARCHITECTURES
from syntumor_core.segmentation.lesions import LesionRow, lesion_table
from syntumor_core.segmentation.model_config import settings_beside
from syntumor_core.segmentation.network import FastNetwork
from syntumor_core.segmentation.options import (
    DEFAULT_MODE,
    DEFAULT_OVERLAP,
    HU_WINDOW,
    REFINE_MARGIN,
    ROI_SIZE,
    SPACING_MM,
    LesionFilter,
    RunOptions,
    RunPlan,
    choice,
    positive_triple,
)
from syntumor_core.segmentation.postprocess import (
    filter_lesions,
    labels_from_probabilities,
    postprocess,
)
from syntumor_core.segmentation.windows import fast_logits, window_slices
from syntumor_core.volume import MAX_RESAMPLED_VOXELS, Volume, check_resampled_size, validate_image

logger = logging.getLogger(__name__)

_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
_RUN_OPTION_NAMES = tuple(option.name for option in fields(RunOptions))

ProgressCallback = Callable[[float], None]


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """What :meth:`Predictor.predict` returns.

    Args:
        labels: uint8 label map (0 background, 1 liver, 2 tumor) on the input's exact grid,
            with the input's affine.
        lesions: one row per tumor component, largest first.
        mode: ``"fast"`` or ``"parity"``.
        seconds: wall time of the whole prediction.
        timings: seconds per stage (preprocess, sliding_window, restore, postprocess, lesions).
        lesion_filter: the :class:`~syntumor_core.segmentation.options.LesionFilter` options
            applied (:meth:`~syntumor_core.segmentation.options.LesionFilter.as_dict`),
            ``None`` if none was.
        lesion_report: what the filter removed (counts), ``None`` if none was applied.
        options: the run-time options as resolved for this network and device
            (:meth:`~syntumor_core.segmentation.options.RunPlan.as_dict`) and ``compiled``:
            whether the network could run compiled.
    """

    labels: Volume
    lesions: tuple[LesionRow, ...]
    mode: str
    seconds: float
    timings: Mapping[str, float] = field(default_factory=dict)
    lesion_filter: Mapping[str, Any] | None = None
    lesion_report: Mapping[str, int] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


class Predictor:
    """A loaded network and the inference pipeline around it (load once, predict many times).

    The model is moved to ``device`` and put in eval mode; parity mode runs it unchanged, fast
    mode through :attr:`fast` (a :class:`~syntumor_core.segmentation.network.FastNetwork`: a
    faster copy where fast mode changes something, compiled for large runs). Run-time
    options are arguments of :meth:`predict`, never of the constructor.

    Args:
        model: a network with one input channel and three output channels (0, 1 liver, 2 tumor).
        arch: its architecture, one of :data:`~syntumor_core.models.ARCHITECTURES`.
        device: torch device; default CUDA when available, else the CPU.
        roi_size: sliding-window size (96³ for the published networks).
        spacing_mm: the grid the network runs on (1 mm for the published networks).
        hu_window: HU range mapped to [0, 1].
        max_voxels: memory budget of the resampled grid (see
            :func:`~syntumor_core.volume.check_resampled_size`); an image whose grid would be
            larger is refused before anything is allocated. ``None``: no budget.

    Raises:
        ParameterError: a setting is out of range or unknown.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        arch: str,
        device: torch.device | str | None = None,
        roi_size: Sequence[int] | int = ROI_SIZE,
        spacing_mm: Sequence[float] | float = SPACING_MM,
        hu_window: tuple[float, float] = HU_WINDOW,
        max_voxels: int | None = MAX_RESAMPLED_VOXELS,
    ) -> None:
        self.arch = choice("arch", arch, ARCHITECTURES)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.roi_size: tuple[int, int, int] = positive_triple("roi_size", roi_size, int)
        self.spacing_mm = positive_triple("spacing_mm", spacing_mm, float)
        self.max_voxels = max_voxels
        low, high = (float(v) for v in hu_window)
        if not low < high:
            raise ParameterError(f"hu_window must be (low, high) with low < high, got {hu_window}")
        self.hu_window = (low, high)
        self.model = model.to(self.device).eval()
        self.fast = FastNetwork(self.model, self.arch, self.device)
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
        cls, path: str | Path, *, arch: str | None = None, use_config: bool = True, **settings
    ) -> Predictor:
        """Load a checkpoint safely (see :func:`~syntumor_core.checkpoints.load_model`).

        A ``config.json`` beside the file (as ``syntumor train`` writes one) supplies the
        grid and HU window the network was trained on (see
        :func:`~syntumor_core.segmentation.model_config.recorded_settings`); settings passed
        here win over it.

        Args:
            path: the ``model.pt`` file.
            arch: its architecture; detected from the weights when omitted.
            use_config: read that ``config.json``; False keeps the published settings.
            **settings: settings of :class:`Predictor` (device, roi_size, max_voxels, …).

        Raises:
            CheckpointError: unsafe, unreadable or mismatched file.
            ParameterError: the ``config.json`` records settings that make no sense.
        """
        if use_config:
            settings = {**settings_beside(path), **settings}
        model, info = load_model(path, arch)
        predictor = cls(model, arch=info.arch, **settings)
        predictor.checkpoint = info
        return predictor

    def plan(self, **options: Any) -> RunPlan:
        """Run-time options (those of :class:`~syntumor_core.segmentation.options.RunOptions`)
        resolved for this network and device.

        Raises:
            ParameterError: an unknown option or a bad value.
        """
        for name in options:
            choice("run-time option", name, _RUN_OPTION_NAMES)
        return RunOptions(**options).resolve(self.arch, self.device.type)

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
        self, batch: torch.Tensor, *, progress: ProgressCallback | None = None, **options: Any
    ) -> torch.Tensor:
        """Step 2: logits ``(N, 3, X, Y, Z)`` of a preprocessed batch ``(N, 1, X, Y, Z)``.

        Args:
            batch: preprocessed images.
            progress: called with the fraction of windows done.
            **options: run-time options (:class:`~syntumor_core.segmentation.options.RunOptions`:
                mode, overlap, sw_batch_size, amp, refine_margin, compile).
        """
        return self._logits(batch, self.plan(**options), progress or (lambda fraction: None))

    def _logits(self, batch: torch.Tensor, plan: RunPlan, report: ProgressCallback) -> torch.Tensor:
        batch = batch.as_tensor() if isinstance(batch, MetaTensor) else torch.as_tensor(batch)
        if batch.ndim != 5 or batch.shape[1] != 1:
            raise VolumeError(f"expected a batch (N, 1, X, Y, Z), got shape {tuple(batch.shape)}")
        if plan.parity:
            with torch.inference_mode():
                return self._parity_logits(batch.to(self.device), plan, report)
        # cuDNN may pick its fastest kernels (scoped: the global flags are restored after)
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, benchmark=True):
            return fast_logits(
                batch.to(self.device, torch.float32), self.fast.for_plan(plan),
                roi_size=self.roi_size, overlap=plan.overlap, sw_batch_size=plan.sw_batch_size,
                refine_margin=plan.refine_margin, report=report,
            )  # fmt: skip

    def _parity_logits(
        self, batch: torch.Tensor, plan: RunPlan, report: ProgressCallback
    ) -> torch.Tensor:
        padded = [max(n, r) for n, r in zip(batch.shape[2:], self.roi_size, strict=True)]
        total = len(window_slices(padded, self.roi_size, plan.overlap)) * batch.shape[0]
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
            overlap=plan.overlap,
            mode="gaussian",
        )

    def _restored(self, logits: torch.Tensor, preprocessed: MetaTensor) -> torch.Tensor:
        tracked = MetaTensor(
            logits,
            meta=dict(preprocessed.meta),
            applied_operations=list(preprocessed.applied_operations),
        )
        return self._transforms.inverse(tracked).as_tensor()

    def restore(self, logits: torch.Tensor, preprocessed: MetaTensor) -> np.ndarray:
        """Step 3: the argmax label of ``logits`` ``(3, X, Y, Z)`` on the input's grid.

        Args:
            logits: one image's logits on the network's grid.
            preprocessed: what :meth:`preprocess` returned for that image.
        """
        with torch.inference_mode():
            labels = self._restored(logits, preprocessed).argmax(dim=0).to(torch.uint8)
        return labels.cpu().numpy()

    def restore_probabilities(self, logits: torch.Tensor, preprocessed: MetaTensor) -> np.ndarray:
        """Softmax probabilities (3, ...) on the input's grid, as :meth:`restore` goes back."""
        with torch.inference_mode():
            restored = self._restored(logits, preprocessed).float()
            return torch.softmax(restored, dim=0).cpu().numpy()

    def predict(
        self,
        volume: Volume,
        *,
        mode: str = DEFAULT_MODE,
        overlap: float = DEFAULT_OVERLAP,
        sw_batch_size: int | None = None,
        amp: bool | None = None,
        refine_margin: float | None = REFINE_MARGIN,
        compile: bool | None = None,
        lesion_filter: LesionFilter | None = None,
        progress: ProgressCallback | None = None,
    ) -> SegmentationResult:
        """Segment liver and tumors in a CT volume.

        Args:
            volume: CT in HU (any orientation, spacing and size).
            mode, overlap, sw_batch_size, amp, refine_margin, compile: this run's options
                (see :class:`~syntumor_core.segmentation.options.RunOptions`).
            lesion_filter: clean the tumor label after the original post-processing
                (:mod:`syntumor_core.segmentation.postprocess`); ``None``: the original
                post-processing only, as the authors' evaluation.
            progress: called with the fraction done, from 0 to 1.

        Returns:
            Labels on the input's exact grid and affine, and the tumor table.

        Raises:
            ParameterError: a bad run-time option.
            VolumeError: an unusable image, or one over the memory budget.
        """
        plan = self.plan(mode=mode, overlap=overlap, sw_batch_size=sw_batch_size, amp=amp,
                         refine_margin=refine_margin, compile=compile)  # fmt: skip
        report = progress or (lambda fraction: None)
        timings: dict[str, float] = {}
        started = mark = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            timings[stage], mark = now - mark, now

        report(0.0)
        image = self.preprocess(volume)
        lap("preprocess")
        report(0.05)
        logits = self._logits(image.as_tensor()[None], plan, lambda f: report(0.05 + 0.85 * f))
        lap("sliding_window")
        threshold = lesion_filter.tumor_probability if lesion_filter else None
        if threshold is None:
            raw = self.restore(logits[0], image)
        else:
            raw = labels_from_probabilities(self.restore_probabilities(logits[0], image), threshold)
        del logits, image
        lap("restore")
        labels, removed = self._postprocess(raw, volume, lesion_filter)
        lap("postprocess")
        report(0.95)
        lesions = lesion_table(labels, np.asarray(volume.array), volume.affine)
        lap("lesions")
        report(1.0)
        seconds = time.perf_counter() - started
        logger.info("segmented %s volume in %.1f s (%s mode)", volume.shape, seconds, plan.mode)
        affine = np.array(volume.affine, dtype=np.float64, copy=True)
        return SegmentationResult(
            Volume(labels, affine), lesions, plan.mode, seconds, timings,
            lesion_filter.as_dict() if lesion_filter else None, removed,
            {**plan.as_dict(), "compiled": self.fast.compiled and plan.compile_from is not None},
        )  # fmt: skip

    @staticmethod
    def _postprocess(
        raw: np.ndarray, volume: Volume, lesion_filter: LesionFilter | None
    ) -> tuple[np.ndarray, dict[str, int] | None]:
        labels = postprocess(raw)
        if lesion_filter is None:
            return labels, None
        voxel_mm3 = abs(float(np.linalg.det(np.asarray(volume.affine)[:3, :3])))
        return filter_lesions(labels, voxel_mm3, lesion_filter)
