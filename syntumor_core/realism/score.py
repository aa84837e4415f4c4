"""Score a synthesis profile against real lesions (issue 16, item 4).

Given a CT with real lesion labels (LiTS case 117 by default: :func:`lits117_case`),
:func:`score_realism` synthesizes N tumors per type into the tumor-free organ (the organ label
alone, i.e. the organ minus its real lesions; the real lesions are passed as ``protect`` when the
engine accepts it), measures real and synthetic lesions with the same definitions
(:mod:`~syntumor_core.realism.lesion_stats`) and reports their distributions side by side with
two-sample Kolmogorov–Smirnov p-values, plus the machine reader's AUC
(:mod:`~syntumor_core.realism.reader`).

Only lesions of at least ``min_voxels`` voxels are compared on both sides. By default that is
the size of the 15th-largest real lesion (290 voxels on LiTS-117), the threshold of issue 16:
smaller real lesions are few voxels across, where labels and statistics are unreliable.

Each synthesis call gets its own integer seed, drawn from ``SeedSequence([seed, type, call])``,
so one call can be replayed alone with the CLI's ``synthesize --seed``.

Example:
    >>> case = lits117_case()  # doctest: +SKIP
    >>> report = score_realism(case, profile="paper", n_per_type=2)  # doctest: +SKIP
    >>> report.comparison("contrast_hu").ks_p  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from syntumor_core.errors import OrganTooSmallError, ParameterError
from syntumor_core.realism.lesion_stats import LesionStats, crop_lesions, lesion_stats
from syntumor_core.realism.plots import AxialPatch, axial_patch
from syntumor_core.realism.reader import ReaderResult, lesion_features, machine_reader_auc

__all__ = [
    "DEFAULT_TYPES",
    "STATISTICS",
    "Comparison",
    "LesionArm",
    "RealCase",
    "RealismReport",
    "lits117_case",
    "real_arm",
    "score_realism",
    "synthetic_arm",
]

logger = logging.getLogger(__name__)

DEFAULT_TYPES: tuple[str, ...] = ("tiny", "small", "medium", "large")
REFERENCE_COUNT = 15
STATISTICS: tuple[tuple[str, str], ...] = (
    ("contrast_hu", "HU"),
    ("mean_hu", "HU"),
    ("volume_ml", "ml"),
    ("sphericity", ""),
    ("roughness", ""),
)
"""The compared statistics (LesionStats attribute, unit)."""


@dataclass(frozen=True, eq=False)
class RealCase:
    """A CT with real lesion labels: the reference the synthetic lesions are compared with."""

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    name: str
    organ: str = "liver"
    organ_value: int = 1
    tumor_value: int = 2
    axial_axis: int = 2


def lits117_case() -> RealCase:
    """LiTS case 117 from its registry package (label 1 liver, 2 tumor; spacing assumed)."""
    from syntumor_core.samples import load_lits117

    sample = load_lits117()
    return RealCase(
        image=sample.image.array,
        label=sample.labels.array,
        spacing=tuple(float(s) for s in sample.image.spacing),  # type: ignore[arg-type]
        name=sample.name,
    )


@dataclass(frozen=True, eq=False)
class LesionArm:
    """The measured lesions of one arm: statistics, reader features and gallery patches."""

    stats: tuple[LesionStats, ...]
    features: np.ndarray
    patches: tuple[AxialPatch, ...]
    tumor_types: tuple[str, ...]
    calls: int = 0
    failed_calls: int = 0


@dataclass(frozen=True)
class Comparison:
    """One statistic, real vs synthetic: median and quartiles of each, and the KS test."""

    statistic: str
    unit: str
    n_real: int
    n_synthetic: int
    real_median: float
    real_q1: float
    real_q3: float
    synthetic_median: float
    synthetic_q1: float
    synthetic_q3: float
    ks_statistic: float
    ks_p: float


@dataclass(frozen=True, eq=False)
class RealismReport:
    """Real vs synthetic lesions for one profile (``to_dict`` for JSON; patches left out)."""

    profile: str
    case: str
    spacing: tuple[float, float, float]
    seed: int
    n_per_type: int
    tumor_types: tuple[str, ...]
    min_voxels: int
    protect_used: bool
    calls: int
    failed_calls: int
    comparisons: tuple[Comparison, ...]
    reader: ReaderResult | None
    real: tuple[LesionStats, ...]
    synthetic: tuple[LesionStats, ...]
    synthetic_types: tuple[str, ...]
    patches: tuple[AxialPatch, ...] = field(default=(), repr=False)

    def comparison(self, statistic: str) -> Comparison:
        """The comparison of one statistic, e.g. ``"contrast_hu"``."""
        for item in self.comparisons:
            if item.statistic == statistic:
                return item
        names = ", ".join(item.statistic for item in self.comparisons)
        raise ParameterError(f"no statistic {statistic!r}; the report has {names}")

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN becomes ``None``)."""
        record = {
            "profile": self.profile,
            "case": self.case,
            "spacing": list(self.spacing),
            "seed": self.seed,
            "n_per_type": self.n_per_type,
            "tumor_types": list(self.tumor_types),
            "min_voxels": self.min_voxels,
            "protect_used": self.protect_used,
            "calls": self.calls,
            "failed_calls": self.failed_calls,
            "comparisons": [asdict(item) for item in self.comparisons],
            "machine_reader": self.reader.to_dict() if self.reader else None,
            "real_lesions": [s.to_dict() for s in self.real],
            "synthetic_lesions": [
                {**s.to_dict(), "tumor_type": t}
                for s, t in zip(self.synthetic, self.synthetic_types, strict=True)
            ],
        }
        return _without_nan(record)


def _without_nan(value):
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _arm(image, label, case: RealCase, min_voxels, source, tumor_type) -> list[tuple]:
    crops = crop_lesions(
        image,
        label,
        spacing=case.spacing,
        organ_value=case.organ_value,
        tumor_value=case.tumor_value,
        min_voxels=min_voxels,
    )
    rows = []
    for crop in crops:
        stats = lesion_stats(crop)
        features = lesion_features(crop, axial_axis=case.axial_axis)
        patch = axial_patch(image, crop, stats, source, tumor_type, case.axial_axis)
        rows.append((stats, features, patch, tumor_type))
    return rows


def _pack(rows, calls=0, failed=0) -> LesionArm:
    features = np.array([row[1] for row in rows], dtype=np.float64)
    return LesionArm(
        stats=tuple(row[0] for row in rows),
        features=features,
        patches=tuple(row[2] for row in rows),
        tumor_types=tuple(row[3] for row in rows),
        calls=calls,
        failed_calls=failed,
    )


def default_min_voxels(case: RealCase, reference_count: int = REFERENCE_COUNT) -> int:
    """The size of the ``reference_count``-th largest real lesion (or the smallest, if fewer)."""
    from syntumor_core.realism.lesion_stats import lesion_components

    _, lesions = lesion_components(case.label, tumor_value=case.tumor_value)
    if not lesions:
        raise ParameterError(f"case {case.name!r} has no lesion with label {case.tumor_value}")
    return lesions[min(reference_count, len(lesions)) - 1][2]


def real_arm(case: RealCase, *, min_voxels: int) -> LesionArm:
    """The case's own lesions of at least ``min_voxels`` voxels."""
    rows = _arm(case.image, case.label, case, min_voxels, "real", "real")
    if not rows:
        raise ParameterError(f"case {case.name!r} has no lesion of ≥ {min_voxels} voxels")
    return _pack(rows)


def engine_accepts_protect() -> bool:
    """Whether ``synthesize`` takes a ``protect`` mask (issue 16, item 2)."""
    from syntumor_core.synthesis import synthesize

    return "protect" in inspect.signature(synthesize).parameters


def synthetic_arm(
    case: RealCase,
    *,
    profile: str,
    n_per_type: int,
    seed: int,
    min_voxels: int,
    tumor_types: Sequence[str] = DEFAULT_TYPES,
    progress: Callable[[float], None] | None = None,
) -> LesionArm:
    """Synthesize ``n_per_type`` tumors of each type into the case's organ and measure them."""
    from syntumor_core.synthesis import synthesize

    organ_mask = case.label == case.organ_value
    options = {"protect": case.label == case.tumor_value} if engine_accepts_protect() else {}
    rows: list[tuple] = []
    failed = 0
    total = max(1, n_per_type * len(tumor_types))
    for type_index, tumor_type in enumerate(tumor_types):
        for call in range(n_per_type):
            call_seed = int(np.random.SeedSequence([seed, type_index, call]).generate_state(1)[0])
            try:
                result = synthesize(
                    case.image,
                    organ_mask,
                    spacing=case.spacing,
                    seed=call_seed,
                    organ=case.organ,
                    tumor_type=tumor_type,
                    profile=profile,
                    axial_axis=case.axial_axis,
                    checksums=False,
                    **options,
                )
            except OrganTooSmallError as error:
                logger.warning("%s %s seed %d: %s", profile, tumor_type, call_seed, error)
                failed += 1
            else:
                rows += _arm(result.image, result.label, case, min_voxels, "synthetic", tumor_type)
            if progress is not None:
                progress((type_index * n_per_type + call + 1) / total)
    return _pack(rows, calls=n_per_type * len(tumor_types), failed=failed)


def _quartiles(values: np.ndarray) -> tuple[float, float, float]:
    if values.size == 0:
        return (float("nan"),) * 3  # type: ignore[return-value]
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float(median), float(q1), float(q3)


def compare_arms(real: LesionArm, synthetic: LesionArm) -> tuple[Comparison, ...]:
    """Median, quartiles and the two-sample KS test of every statistic in :data:`STATISTICS`."""
    from scipy.stats import ks_2samp

    comparisons = []
    for name, unit in STATISTICS:
        real_values = np.array([getattr(s, name) for s in real.stats], dtype=float)
        synthetic_values = np.array([getattr(s, name) for s in synthetic.stats], dtype=float)
        real_values = real_values[np.isfinite(real_values)]
        synthetic_values = synthetic_values[np.isfinite(synthetic_values)]
        if real_values.size and synthetic_values.size:
            test = ks_2samp(real_values, synthetic_values)
            ks_statistic, ks_p = float(test.statistic), float(test.pvalue)
        else:
            ks_statistic = ks_p = float("nan")
        real_median, real_q1, real_q3 = _quartiles(real_values)
        synthetic_median, synthetic_q1, synthetic_q3 = _quartiles(synthetic_values)
        comparisons.append(
            Comparison(
                statistic=name,
                unit=unit,
                n_real=int(real_values.size),
                n_synthetic=int(synthetic_values.size),
                real_median=real_median,
                real_q1=real_q1,
                real_q3=real_q3,
                synthetic_median=synthetic_median,
                synthetic_q1=synthetic_q1,
                synthetic_q3=synthetic_q3,
                ks_statistic=ks_statistic,
                ks_p=ks_p,
            )
        )
    return tuple(comparisons)


def score_realism(
    case: RealCase,
    *,
    profile: str = "paper",
    n_per_type: int = 8,
    seed: int = 0,
    tumor_types: Sequence[str] = DEFAULT_TYPES,
    min_voxels: int | None = None,
    reader: bool = True,
    real: LesionArm | None = None,
    progress: Callable[[float], None] | None = None,
) -> RealismReport:
    """Score one synthesis profile against the case's real lesions.

    Args:
        case: the CT with real lesion labels (:func:`lits117_case`).
        profile: the synthesis profile, ``"paper"`` or ``"realistic"``.
        n_per_type: synthesis calls per tumor type.
        seed: the seed all calls' seeds and the machine reader's seed derive from.
        tumor_types: the organ profile's tumor types to synthesize.
        min_voxels: the smallest lesion compared (default: :func:`default_min_voxels`).
        reader: also run the machine reader (needs 2 lesions per arm; else ``reader`` is None).
        real: the real arm measured before (e.g. shared by several profiles).
        progress: called with the fraction of synthesis calls done.
    """
    if n_per_type < 1:
        raise ParameterError(f"`n_per_type` must be ≥ 1, got {n_per_type}")
    if min_voxels is None:
        min_voxels = default_min_voxels(case)
    real = real if real is not None else real_arm(case, min_voxels=min_voxels)
    synthetic = synthetic_arm(
        case,
        profile=profile,
        n_per_type=n_per_type,
        seed=seed,
        min_voxels=min_voxels,
        tumor_types=tumor_types,
        progress=progress,
    )
    result = None
    if reader and min(len(real.stats), len(synthetic.stats)) >= 2:
        result = machine_reader_auc(real.features, synthetic.features, seed=seed)
    return RealismReport(
        profile=profile,
        case=case.name,
        spacing=case.spacing,
        seed=seed,
        n_per_type=n_per_type,
        tumor_types=tuple(tumor_types),
        min_voxels=min_voxels,
        protect_used=engine_accepts_protect(),
        calls=synthetic.calls,
        failed_calls=synthetic.failed_calls,
        comparisons=compare_arms(real, synthetic),
        reader=result,
        real=real.stats,
        synthetic=synthetic.stats,
        synthetic_types=synthetic.tumor_types,
        patches=real.patches + synthetic.patches,
    )
