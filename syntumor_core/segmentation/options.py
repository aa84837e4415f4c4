"""The options of a segmentation and their one set of defaults.

Two kinds, kept apart so that a model is loaded once and run many ways:

- **Load-time** settings belong to a network: its architecture, device, window size, the grid
  and HU window it was trained on (:class:`~syntumor_core.segmentation.predictor.Predictor`).
- **Run-time** options belong to one call of ``predict``: :class:`RunOptions` (mode, window
  overlap, windows a pass, autocast, refinement, compiling) and :class:`LesionFilter` (how
  the tumor label is cleaned after the original post-processing).

Every default the library, the app and the command line use is defined here; this module
imports neither torch nor numpy, so the app can read the defaults without loading them.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from syntumor_core.errors import ParameterError

MODES: tuple[str, ...] = ("fast", "parity")
DEFAULT_MODE = "fast"
DEFAULT_OVERLAP = 0.75  # the authors' evaluation
ROI_SIZE: tuple[int, int, int] = (96, 96, 96)
HU_WINDOW: tuple[float, float] = (-21.0, 189.0)
SPACING_MM: tuple[float, float, float] = (1.0, 1.0, 1.0)
SIGMA_SCALE = 0.125  # MONAI's default Gaussian sigma, as a fraction of the window
LIVER_LABEL, TUMOR_LABEL = 1, 2
LIVER_MARGIN_VOXELS = 30
CUDA_FAST_BATCH = 4
CPU_FAST_BATCH = {"unet": 2}  # Swin-UNETR measured no faster with 2 windows a pass on a CPU
COMPILE_MIN_PASSES = 512  # compiling (9-40 s) pays for itself from about this many passes
REFINE_MARGIN = 0.5  # fast mode: a voxel whose coarse top-two logits differ by less is in doubt
REFINE_CORE = 0.25  # a window runs when its central cube (this fraction each side) holds one
DEFAULT_MIN_LESION_MM3 = 50.0


def choice(name: str, value: str, options: Sequence[str]) -> str:
    """``value`` if it is one of ``options``; otherwise a :class:`ParameterError` that names
    the options and the closest one."""
    if value in options:
        return value
    close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ParameterError(f"{name} must be one of {', '.join(options)}, got {value!r}{hint}")


def positive_triple(name: str, value, cast) -> tuple:
    """One or three positive numbers as a triple of ``cast`` (``int``: whole numbers only)."""
    values = (value,) * 3 if isinstance(value, int | float) else tuple(value)
    if len(values) != 3 or not all(
        not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v) and v > 0
        for v in values
    ):
        raise ParameterError(f"{name} must be one or three positive numbers, got {value!r}")
    if cast is int and any(int(v) != v for v in values):
        raise ParameterError(f"{name} must be whole numbers of voxels, got {value!r}")
    return tuple(cast(v) for v in values)


@dataclass(frozen=True)
class RunPlan:
    """:class:`RunOptions` resolved for one network on one device: every value concrete.

    Args:
        mode: ``"fast"`` or ``"parity"``.
        overlap: window overlap in [0, 1).
        sw_batch_size: windows per forward pass.
        autocast: float16 autocast (fast mode on CUDA).
        refine_margin: the refinement's logit margin; ``None`` runs the full grid (always
            ``None`` in parity mode).
        compile_from: the fewest forward passes a run needs before the network is compiled;
            ``None``: never.
        channels_last: channels-last memory for the network (the U-Net in fast mode on CUDA).
    """

    mode: str
    overlap: float
    sw_batch_size: int
    autocast: bool
    refine_margin: float | None
    compile_from: int | None
    channels_last: bool

    @property
    def parity(self) -> bool:
        return self.mode == "parity"

    def as_dict(self) -> dict[str, Any]:
        """The plan as recorded in a segmentation's sidecar."""
        return asdict(self)


@dataclass(frozen=True)
class RunOptions:
    """Run-time options of one prediction (see ``syntumor_core.segmentation.predictor``).

    Args:
        mode: ``"fast"`` (default) or ``"parity"`` (MONAI's call, the authors' arithmetic).
        overlap: fraction of a window shared with the next, in [0, 1)
            (:data:`DEFAULT_OVERLAP`, the authors' evaluation).
        sw_batch_size: windows per forward pass; parity mode allows only 1 (the authors'
            setting); ``None``: in fast mode 4 on CUDA, on the CPU 2 for the U-Net and 1 for
            Swin-UNETR.
        amp: float16 autocast; ``None``: on in fast mode on CUDA, never in parity mode or on
            the CPU (where asking for it is an error).
        refine_margin: fast mode only: run every other window first, then only the windows
            whose central cube (:data:`REFINE_CORE` of the window each side of its centre)
            holds a voxel where the top two blended logits of those coarse windows differ by
            less than this (logits). ``0`` runs the coarse windows only; ``None`` the full
            grid everywhere (parity mode's logits up to float rounding).
        compile: fast mode only: run the network through ``torch.compile``. ``None``: the
            U-Net on the CPU when a run needs at least :data:`COMPILE_MIN_PASSES` forward
            passes; ``True``: any network, any run; ``False``: never.

    Raises:
        ParameterError: an option is out of range or unknown (device-dependent checks are in
            :meth:`resolve`).
    """

    mode: str = DEFAULT_MODE
    overlap: float = DEFAULT_OVERLAP
    sw_batch_size: int | None = None
    amp: bool | None = None
    refine_margin: float | None = REFINE_MARGIN
    compile: bool | None = None

    def __post_init__(self) -> None:
        choice("mode", self.mode, MODES)
        overlap = self.overlap
        if isinstance(overlap, bool) or not (
            isinstance(overlap, int | float) and 0.0 <= overlap < 1.0
        ):
            raise ParameterError(f"overlap must be in [0, 1), got {overlap!r}")
        parity = self.mode == "parity"
        batch = self.sw_batch_size
        if parity and batch not in (None, 1):
            raise ParameterError(
                f"parity mode runs one window at a time (sw_batch_size=1, as the authors); "
                f"got sw_batch_size={batch}"
            )
        if batch is not None and (
            isinstance(batch, bool) or not isinstance(batch, int) or batch < 1
        ):
            raise ParameterError(f"sw_batch_size must be a positive integer, got {batch!r}")
        if self.compile is not None and not isinstance(self.compile, bool):
            raise ParameterError(f"compile must be True, False or None, got {self.compile!r}")
        if self.compile and parity:
            raise ParameterError("compile needs fast mode: parity runs MONAI's call unchanged")
        margin = self.refine_margin
        if (
            not parity
            and margin is not None
            and (
                isinstance(margin, bool)
                or not (isinstance(margin, int | float) and 0 <= margin < math.inf)
            )
        ):
            raise ParameterError(
                f"refine_margin must be a logit margin >= 0 or None, got {margin!r}"
            )

    def resolve(self, arch: str, device_type: str) -> RunPlan:
        """The concrete plan for a network of ``arch`` on a device of type ``device_type``.

        Raises:
            ParameterError: ``amp`` asked for outside fast mode on CUDA.
        """
        parity, cuda = self.mode == "parity", device_type == "cuda"
        if self.amp and (parity or not cuda):
            raise ParameterError(
                f"amp (float16 autocast) needs fast mode on CUDA; got mode {self.mode!r} on "
                f"{device_type}"
            )
        default_batch = 1 if parity else (CUDA_FAST_BATCH if cuda else CPU_FAST_BATCH.get(arch, 1))
        compile_from = None
        automatic = arch == "unet" and device_type == "cpu"
        if self.compile or (self.compile is None and automatic and not parity):
            compile_from = 0 if self.compile else COMPILE_MIN_PASSES
        margin = self.refine_margin
        return RunPlan(
            mode=self.mode,
            overlap=float(self.overlap),
            sw_batch_size=default_batch if self.sw_batch_size is None else self.sw_batch_size,
            autocast=(not parity and cuda) if self.amp is None else bool(self.amp),
            refine_margin=None if parity or margin is None else float(margin),
            compile_from=compile_from,
            channels_last=not parity and arch == "unet" and cuda,
        )


@dataclass(frozen=True)
class LesionFilter:
    """Cleaning of the tumor label after the original post-processing
    (see :mod:`syntumor_core.segmentation.postprocess`).

    Args:
        min_volume_mm3: tumor components smaller than this (mm³) are dropped; 0 keeps all.
        organ_contact: keep only tumor components inside or touching the predicted liver.
        tumor_probability: softmax tumor probability from which a voxel is tumor (in (0, 1));
            ``None`` for the plain argmax.

    Raises:
        ParameterError: a negative or non-finite volume, a probability outside (0, 1).
    """

    min_volume_mm3: float = DEFAULT_MIN_LESION_MM3
    organ_contact: bool = True
    tumor_probability: float | None = None

    def __post_init__(self) -> None:
        volume = self.min_volume_mm3
        if isinstance(volume, bool) or not isinstance(volume, int | float):
            raise ParameterError(f"min_volume_mm3 must be a number, got {volume!r}")
        if not math.isfinite(volume) or volume < 0:
            raise ParameterError(f"min_volume_mm3 must be finite and >= 0, got {volume!r}")
        if not isinstance(self.organ_contact, bool):
            raise ParameterError(f"organ_contact must be true or false, got {self.organ_contact!r}")
        chance = self.tumor_probability
        if chance is not None and (
            isinstance(chance, bool) or not isinstance(chance, int | float) or not 0 < chance < 1
        ):
            raise ParameterError(f"tumor_probability must be in (0, 1) or null, got {chance!r}")

    def as_dict(self) -> dict[str, Any]:
        """The options as recorded in a segmentation's sidecar (volume also in ml)."""
        return {
            "min_volume_mm3": float(self.min_volume_mm3),
            "min_volume_ml": float(self.min_volume_mm3) / 1000.0,
            "organ_contact": self.organ_contact,
            "tumor_probability": self.tumor_probability,
        }

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> LesionFilter:
        """Options from a request or sidecar; missing keys take the defaults.

        Raises:
            ParameterError: an unknown key or a bad value.
        """
        options = dict(options or {})
        options.pop("min_volume_ml", None)
        unknown = sorted(set(options) - {"min_volume_mm3", "organ_contact", "tumor_probability"})
        if unknown:
            raise ParameterError(f"unknown lesion filter option(s): {', '.join(unknown)}")
        return cls(**options)


NO_FILTER = LesionFilter(min_volume_mm3=0.0, organ_contact=False, tumor_probability=None)
"""Every tumor voxel of the argmax kept (the original post-processing only)."""
