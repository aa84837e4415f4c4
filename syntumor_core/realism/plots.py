"""Pictures of a realism report: histograms real vs synthetic, and a gallery of axial crops.

matplotlib is imported inside the drawing functions (Agg backend, no display needed), so
importing this module stays cheap. Patches are axial slices through each lesion's centroid;
the gallery shows them in radiological orientation when the volume's axes are RAS+ with
axis 2 axial (as the LiTS sample is): anterior up, the patient's right on the viewer's left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from syntumor_core.realism.lesion_stats import LesionCrop, LesionStats

if TYPE_CHECKING:
    from syntumor_core.realism.score import RealismReport

__all__ = ["PATCH_VOXELS", "AxialPatch", "axial_patch", "save_gallery", "save_histograms"]

logger = logging.getLogger(__name__)

PATCH_VOXELS = 64
WINDOW_HU = (-45.0, 205.0)
"""Display window of the gallery (level 80, width 250 HU: enhanced liver and its lesions)."""

_LABELS = {
    "contrast_hu": "contrast (ring − lesion), HU",
    "mean_hu": "lesion mean, HU",
    "volume_ml": "volume, ml",
    "sphericity": "sphericity",
    "roughness": "roughness",
}


@dataclass(frozen=True, eq=False)
class AxialPatch:
    """An axial slice through a lesion's centroid, ``PATCH_VOXELS`` square (for galleries)."""

    image: np.ndarray
    lesion: np.ndarray
    source: str
    tumor_type: str
    voxels: int


def axial_patch(
    image: np.ndarray,
    crop: LesionCrop,
    stats: LesionStats,
    source: str,
    tumor_type: str,
    axis: int,
) -> AxialPatch:
    """The axial slice of ``image`` through the lesion's centroid, padded with -1000 HU."""
    half = PATCH_VOXELS // 2
    centre = [int(round(c)) for c in stats.centroid]
    plane = np.take(image, centre[axis], axis=axis)
    mask = np.zeros(plane.shape, dtype=bool)
    local = centre[axis] - crop.offset[axis]
    if 0 <= local < crop.lesion.shape[axis]:
        offsets = [o for index, o in enumerate(crop.offset) if index != axis]
        lesion_plane = np.take(crop.lesion, local, axis=axis)
        box = tuple(slice(o, o + n) for o, n in zip(offsets, lesion_plane.shape, strict=True))
        mask[box] = lesion_plane
    in_plane = [c for index, c in enumerate(centre) if index != axis]
    window = tuple(slice(c, c + 2 * half) for c in in_plane)
    return AxialPatch(
        image=np.pad(plane, half, constant_values=-1000.0)[window].astype(np.float32),
        lesion=np.pad(mask, half)[window],
        source=source,
        tumor_type=tumor_type,
        voxels=stats.voxels,
    )


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_histograms(report: RealismReport, path: Path) -> Path:
    """One histogram per compared statistic, real and synthetic overlaid (density); a PNG."""
    plt = _pyplot()
    names = [c.statistic for c in report.comparisons]
    figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0))
    for axis, comparison in zip(np.atleast_1d(axes), report.comparisons, strict=True):
        name = comparison.statistic
        real = np.array([getattr(s, name) for s in report.real], dtype=float)
        synthetic = np.array([getattr(s, name) for s in report.synthetic], dtype=float)
        values = np.concatenate([real, synthetic])
        values = values[np.isfinite(values)]
        if name == "volume_ml":
            real, synthetic, values = np.log10(real), np.log10(synthetic), np.log10(values)
        bins = np.histogram_bin_edges(values, bins=12) if values.size else 10
        axis.hist(real[np.isfinite(real)], bins=bins, density=True, alpha=0.55, label="real")
        axis.hist(
            synthetic[np.isfinite(synthetic)], bins=bins, density=True, alpha=0.55, label="synth."
        )
        label = _LABELS.get(name, name)
        axis.set_xlabel(f"log10 {label}" if name == "volume_ml" else label)
        axis.set_title(f"KS p = {comparison.ks_p:.2g}", fontsize=9)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    figure.suptitle(
        f"{report.case}: real vs {report.profile} (lesions ≥ {report.min_voxels} voxels)",
        fontsize=10,
    )
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _spread(items: list[AxialPatch], count: int) -> list[AxialPatch]:
    if len(items) <= count:
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count)]


def save_gallery(report: RealismReport, path: Path, *, per_row: int = 8) -> Path:
    """Axial crops, real lesions on the top row and synthetic ones below, outlined; a PNG."""
    plt = _pyplot()
    real = _spread([p for p in report.patches if p.source == "real"], per_row)
    synthetic = _spread([p for p in report.patches if p.source != "real"], per_row)
    figure, axes = plt.subplots(2, per_row, figsize=(1.6 * per_row, 3.6), squeeze=False)
    for row, patches in enumerate((real, synthetic)):
        for column in range(per_row):
            axis = axes[row][column]
            axis.set_axis_off()
            if column >= len(patches):
                continue
            patch = patches[column]
            view = patch.image.T[::-1, ::-1]  # RAS+: anterior up, patient's right on the left
            axis.imshow(view, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1])
            if patch.lesion.any():
                axis.contour(
                    patch.lesion.T[::-1, ::-1], levels=[0.5], colors="gold", linewidths=0.6
                )
            axis.set_title(f"{patch.tumor_type} {patch.voxels}", fontsize=7)
    figure.suptitle(f"{report.case}: real (top) vs {report.profile} (bottom)", fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
