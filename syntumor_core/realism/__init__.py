"""Realism you can measure (issue 16): lesion statistics, real-vs-synthetic scores, machine reader.

:func:`measure_lesions` gives per-lesion contrast, HU, size and shape with fixed definitions
(see :mod:`syntumor_core.realism.lesion_stats`).
"""

from syntumor_core.realism.lesion_stats import LesionStats, lesion_components, measure_lesions

__all__ = ["LesionStats", "lesion_components", "measure_lesions"]
