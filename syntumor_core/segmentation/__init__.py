"""Liver and liver-tumor segmentation: load a network once, predict with options per call.

Modules, along the pipeline:

- :mod:`~.options` — every default and option: :data:`DEFAULT_OVERLAP` (0.75, the authors'
  evaluation), :data:`MODES`, :class:`RunOptions` per call, :class:`LesionFilter`.
- :mod:`~.predictor` — :class:`Predictor`: preprocess → sliding windows → back to the input
  grid → post-processing → labels and a lesion table (:class:`SegmentationResult`).
- :mod:`~.windows` — the window grid, Gaussian blending, fast mode's batched runner.
- :mod:`~.network` — how fast mode executes the network (fused attention, channels-last,
  ``torch.compile`` for large runs, eager fallback).
- :mod:`~.refine` — fast mode's refined grid (windows only where labels are in doubt).
- :mod:`~.postprocess` — the original clean-up (its function ``postprocess``, reached as
  ``syntumor_core.segmentation.postprocess.postprocess``: the package's attribute of that
  name is the module) and the lesion filter.
- :mod:`~.lesions` — the lesion table (:class:`LesionRow`).
- :mod:`~.model_config` — the grid and HU window a model's ``config.json`` records.
- :mod:`~.cache` — :class:`PredictorCache`, a small LRU of loaded predictors keyed by
  checkpoint hash and device.

The options are importable without torch (``from syntumor_core.segmentation import
DEFAULT_OVERLAP`` loads no network code); the other names load their module, and torch with
it, on first use.

Example:
    >>> from syntumor_core.segmentation import Predictor  # doctest: +SKIP
    >>> predictor = Predictor.from_checkpoint("models/demo/model.pt", device="cpu")  # doctest: +SKIP
    >>> quick = predictor.predict(ct, overlap=0.5)  # doctest: +SKIP
    >>> exact = predictor.predict(ct, mode="parity")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from syntumor_core.segmentation.options import (
    COMPILE_MIN_PASSES,
    DEFAULT_MIN_LESION_MM3,
    DEFAULT_MODE,
    DEFAULT_OVERLAP,
    HU_WINDOW,
    LIVER_LABEL,
    MODES,
    NO_FILTER,
    REFINE_MARGIN,
    ROI_SIZE,
    SPACING_MM,
    TUMOR_LABEL,
    LesionFilter,
    RunOptions,
    RunPlan,
)

if TYPE_CHECKING:
    from syntumor_core.segmentation.cache import PredictorCache
    from syntumor_core.segmentation.lesions import LesionRow, lesion_table
    from syntumor_core.segmentation.model_config import (
        MODEL_CONFIG_FILE,
        recorded_settings,
        settings_beside,
    )
    from syntumor_core.segmentation.postprocess import filter_lesions, labels_from_probabilities
    from syntumor_core.segmentation.predictor import Predictor, SegmentationResult
    from syntumor_core.segmentation.windows import window_slices

_LAZY = {
    "PredictorCache": "cache",
    "LesionRow": "lesions",
    "lesion_table": "lesions",
    "MODEL_CONFIG_FILE": "model_config",
    "recorded_settings": "model_config",
    "settings_beside": "model_config",
    "filter_lesions": "postprocess",
    "labels_from_probabilities": "postprocess",
    "Predictor": "predictor",
    "SegmentationResult": "predictor",
    "window_slices": "windows",
}

__all__ = [
    "COMPILE_MIN_PASSES",
    "DEFAULT_MIN_LESION_MM3",
    "DEFAULT_MODE",
    "DEFAULT_OVERLAP",
    "HU_WINDOW",
    "LIVER_LABEL",
    "MODEL_CONFIG_FILE",
    "MODES",
    "NO_FILTER",
    "REFINE_MARGIN",
    "ROI_SIZE",
    "SPACING_MM",
    "TUMOR_LABEL",
    "LesionFilter",
    "LesionRow",
    "Predictor",
    "PredictorCache",
    "RunOptions",
    "RunPlan",
    "SegmentationResult",
    "filter_lesions",
    "labels_from_probabilities",
    "lesion_table",
    "recorded_settings",
    "settings_beside",
    "window_slices",
]


def __getattr__(name: str) -> Any:
    """Load the module of a heavy name (torch, MONAI, scipy) on its first use."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
