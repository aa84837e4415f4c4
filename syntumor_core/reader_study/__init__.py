"""The Visual Turing Test (reader study): its statistics, its case design and its blinding.

- :mod:`~syntumor_core.reader_study.statistics`: confusion counts, rates with Wilson intervals,
  binomial test, MRMC rows, plain-language definitions (spec: shared/spec/reader-study.md); its
  parts :mod:`~.answers` (the answer record and rating), :mod:`~.roc` (ROC/AUC with bootstrap
  intervals) and :mod:`~.agreement` (kappas).
- :mod:`~syntumor_core.reader_study.arms`: how often each arm was called real, and whether two
  arms differ (for studies whose two arms are not simply real vs synthetic).
- :mod:`~syntumor_core.reader_study.design`: tumor sizes from label maps, tumor types matched to
  a real arm's sizes, each reader's seeded reading order.
- :mod:`~syntumor_core.reader_study.blinding`: one common grid for every case and a NIfTI
  encoding whose header and size are the same whatever the case's origin.

Everything is importable from this package, e.g. ``from syntumor_core.reader_study import
Answer, reader_stats``.
"""

import importlib

_EXPORTS = {
    "syntumor_core.reader_study.arms": ("ArmRates", "arm_comparison", "arm_rates"),
    "syntumor_core.reader_study.answers": (
        "CATEGORIES", "CONFIDENCE_MAX", "CONFIDENCE_MIN", "POOLED_READER", "RATING_UNSURE",
        "REAL", "SYNTHETIC", "TRUTHS", "UNSURE", "Answer", "rating",
    ),
    "syntumor_core.reader_study.statistics": (
        "DEFINITIONS", "Proportion", "ReaderStats", "confusion_counts", "definitions",
        "mrmc_rows", "pooled_stats", "reader_stats", "wilson_proportion",
    ),
    "syntumor_core.reader_study.roc": (
        "RocCurve", "_weighted_aucs", "bootstrap_auc_ci", "reader_averaged_auc",
        "roc_from_confidence",
    ),
    "syntumor_core.reader_study.agreement": (
        "PairKappa", "cohen_kappa_pairs", "fleiss_kappa_all", "intra_reader_kappa",
    ),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    """Import the statistics (statsmodels, scikit-learn: seconds) only when first used.

    ``design`` and ``blinding`` need neither, so the demo seeder and the worker's study jobs
    do not pay for them.
    """
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "CATEGORIES",
    "CONFIDENCE_MAX",
    "CONFIDENCE_MIN",
    "DEFINITIONS",
    "POOLED_READER",
    "RATING_UNSURE",
    "REAL",
    "SYNTHETIC",
    "TRUTHS",
    "UNSURE",
    "Answer",
    "ArmRates",
    "PairKappa",
    "Proportion",
    "ReaderStats",
    "RocCurve",
    "_weighted_aucs",
    "arm_comparison",
    "arm_rates",
    "bootstrap_auc_ci",
    "cohen_kappa_pairs",
    "confusion_counts",
    "definitions",
    "fleiss_kappa_all",
    "intra_reader_kappa",
    "mrmc_rows",
    "pooled_stats",
    "rating",
    "reader_averaged_auc",
    "reader_stats",
    "roc_from_confidence",
    "wilson_proportion",
]
