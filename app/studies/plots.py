"""Plots of a study's results, rendered server-side as PNG (matplotlib, Agg, no pyplot state).

- :func:`confusion_png`: one confusion matrix per reader and pooled (rows truth, columns
  answer, unsure as a third column), the positive class named.
- :func:`roc_png`: ROC curves of the confidence ratings, AUC with its bootstrap interval.
- :func:`clicks_png`: for every case with "looks synthetic" marks, the axial slice through the
  marks' median height of the blinded image, with a heat map of the marks.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from syntumor_core.reader_study import POOLED_READER

POSITIVE_COLOUR = "#1f6feb"


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _empty(message: str) -> bytes:
    figure = Figure(figsize=(5, 1.2))
    figure.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#5c6773")
    return _png(figure)


def confusion_png(results: dict[str, Any]) -> bytes:
    """Confusion matrices (counts) of every reader and of all readers pooled."""
    tables = [*results.get("per_reader", [])]
    if results.get("pooled"):
        tables.append(results["pooled"])
    if not tables:
        return _empty("no answers yet")
    positive = results["positive_class"]
    negative = "real" if positive == "synthetic" else "synthetic"
    columns = min(len(tables), 4)
    rows = (len(tables) + columns - 1) // columns
    figure = Figure(figsize=(3.3 * columns, 2.9 * rows))
    for index, stats in enumerate(tables):
        axes = figure.add_subplot(rows, columns, index + 1)
        unsure_neg, unsure_pos = _unsure_split(stats, results, positive)
        matrix = np.array(
            [[stats["tn"], stats["fp"], unsure_neg], [stats["fn"], stats["tp"], unsure_pos]]
        )
        axes.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
        for (i, j), count in np.ndenumerate(matrix):
            tag = [["TN", "FP", ""], ["FN", "TP", ""]][i][j]
            colour = "white" if count > matrix.max() * 0.6 else "#1d232b"
            axes.text(
                j, i, f"{count}\n{tag}".strip(), ha="center", va="center", color=colour, fontsize=10
            )
        axes.set_xticks(range(3), [negative, positive, "unsure"], fontsize=8)
        axes.set_yticks(range(2), [f"{negative}\n(truth)", f"{positive}\n(truth)"], fontsize=8)
        axes.set_title(stats["reader"], fontsize=10)
        axes.set_xlabel("answer", fontsize=8)
    figure.suptitle(f"Confusion matrices — positive class: {positive}", fontsize=11)
    return _png(figure)


def _unsure_split(stats: dict, results: dict, positive: str) -> tuple[int, int]:
    """Unsure answers by truth (negative, positive) from the per-reader confusion counts."""
    split = results.get("unsure_by_truth", {}).get(stats["reader"])
    if split:
        return split["negative"], split["positive"]
    return stats["unsure"], 0


def roc_png(results: dict[str, Any]) -> bytes:
    """ROC curves of each reader's ratings (and pooled, dashed) with AUC [95 % CI]."""
    curves = results.get("roc") or []
    if not curves:
        return _empty("no ROC: needs confidence ratings on cases of both truths")
    intervals = {s["reader"]: s for s in results.get("per_reader", [])}
    if results.get("pooled"):
        intervals[POOLED_READER] = results["pooled"]
    figure = Figure(figsize=(5.6, 5))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="#9da7b3", lw=1, ls=":", label="chance (AUC 0.5)")
    for curve in curves:
        stats = intervals.get(curve["reader"], {})
        low, high = stats.get("auc_low"), stats.get("auc_high")
        ci = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
        pooled = curve["reader"] == POOLED_READER
        axes.plot(curve["fpr"], curve["tpr"], lw=2.2 if pooled else 1.5, ls="--" if pooled else "-",
                  color="#1d232b" if pooled else None, marker="o" if not pooled else None, ms=3,
                  label=f"{curve['reader']}: AUC {curve['auc']:.2f}{ci}")  # fmt: skip
    positive = results["positive_class"]
    axes.set_xlabel(f"false positive rate (1 − specificity; {positive} = positive)")
    axes.set_ylabel("true positive rate (sensitivity)")
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_aspect("equal")
    axes.legend(fontsize=8, loc="lower right")
    axes.set_title("ROC of confidence ratings", fontsize=11)
    return _png(figure)


def clicks_png(cases: list[dict[str, Any]], max_cases: int = 48) -> bytes:
    """Heat maps of the "looks synthetic" marks of each case (owner view: arm in the title).

    Args:
        cases: ``{"title", "image" (3-D HU array), "clicks" ([i, j, k] voxels)}``.
        max_cases: most panels drawn (the cases with the most marks first).
    """
    cases = sorted((c for c in cases if c["clicks"]), key=lambda c: -len(c["clicks"]))[:max_cases]
    if not cases:
        return _empty('no "looks synthetic" marks yet')
    columns = min(len(cases), 4)
    rows = (len(cases) + columns - 1) // columns
    figure = Figure(figsize=(3.2 * columns, 3.4 * rows))
    for index, case in enumerate(cases):
        axes = figure.add_subplot(rows, columns, index + 1)
        clicks = np.asarray(case["clicks"], float)
        k = int(np.clip(np.median(clicks[:, 2]), 0, case["image"].shape[2] - 1))
        plane = case["image"][:, :, k].T  # rows: A (posterior→anterior), columns: R
        axes.imshow(plane, cmap="gray", vmin=-160, vmax=240, origin="lower")
        axes.imshow(
            _density(clicks[:, :2], plane.shape), cmap="inferno", alpha=0.55, origin="lower"
        )
        axes.scatter(
            clicks[:, 0], clicks[:, 1], s=18, facecolors="none", edgecolors="#00e0ff", lw=1
        )
        axes.set_title(f"{case['title']} · {len(clicks)} mark(s)", fontsize=9)
        axes.set_axis_off()
    figure.suptitle(
        'Where readers marked "looks synthetic" (axial slice at the marks)', fontsize=11
    )
    return _png(figure)


def _density(points: np.ndarray, shape: tuple[int, int], sigma_px: float = 4.0) -> np.ndarray:
    """A Gaussian-smoothed count map of (column, row) points on an image of ``shape``."""
    from scipy import ndimage

    counts = np.zeros(shape, float)
    for x, y in points:
        row, column = int(round(y)), int(round(x))
        if 0 <= row < shape[0] and 0 <= column < shape[1]:
            counts[row, column] += 1
    density = ndimage.gaussian_filter(counts, sigma_px)
    density = density / density.max() if density.max() > 0 else density
    return np.ma.masked_less(density, 0.05)
