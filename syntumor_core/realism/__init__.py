"""Realism you can measure (issue 16): lesion statistics, real-vs-synthetic scores, machine reader.

- :mod:`~syntumor_core.realism.lesion_stats`: :func:`measure_lesions` (contrast, HU, size,
  sphericity, roughness per lesion, with fixed definitions);
- :mod:`~syntumor_core.realism.reader`: the machine reader, :func:`machine_reader_auc` on
  :func:`lesion_features`;
- :mod:`~syntumor_core.realism.score`: :func:`score_realism`, a profile against a case's real
  lesions (LiTS case 117: :func:`lits117_case`);
- :mod:`~syntumor_core.realism.report` and :mod:`~syntumor_core.realism.plots`: the table, the
  report folder (JSON + PNGs) and the plots.
"""

from syntumor_core.realism.lesion_stats import (
    LesionCrop,
    LesionStats,
    crop_lesions,
    lesion_components,
    lesion_stats,
    measure_lesions,
)
from syntumor_core.realism.reader import ReaderResult, lesion_features, machine_reader_auc
from syntumor_core.realism.score import RealCase, RealismReport, lits117_case, score_realism

__all__ = [
    "LesionCrop",
    "LesionStats",
    "ReaderResult",
    "RealCase",
    "RealismReport",
    "crop_lesions",
    "lesion_components",
    "lesion_features",
    "lesion_stats",
    "lits117_case",
    "machine_reader_auc",
    "measure_lesions",
    "score_realism",
]
