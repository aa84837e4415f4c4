"""Realism you can measure (issue 16): lesion statistics, real-vs-synthetic scores, machine reader.

:func:`measure_lesions` gives per-lesion contrast, HU, size and shape with fixed definitions
(see :mod:`syntumor_core.realism.lesion_stats`).
"""

from syntumor_core.realism.lesion_stats import (
    LesionCrop,
    LesionStats,
    crop_lesions,
    lesion_components,
    lesion_stats,
    measure_lesions,
)

__all__ = [
    "LesionCrop",
    "LesionStats",
    "crop_lesions",
    "lesion_components",
    "lesion_stats",
    "measure_lesions",
]
