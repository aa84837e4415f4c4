"""Tumor Dice, false-positive lesions and detection by size, before and after the lesion filter.

Reproduces the "Clean lesion lists" table of ``MODEL_CARD.md``::

    .venv/bin/python models/demo/evaluate_lesion_filter.py --model models/demo/model.pt \
        --phantoms 3 --out var/lesion-filter.json

Each case is segmented once (fast mode, CPU); the softmax probabilities on the case's grid are
kept, and every filter setting of the grid below is applied to them exactly as
``Predictor.predict(volume, lesion_filter=...)`` does (probability threshold or argmax, the
original post-processing, then :func:`syntumor_core.segmentation.postprocess.filter_lesions`).

Cases: LiTS case 117 (``syntumor_core.samples``; tumor Dice, false-positive lesions, detected
lesions per radius bin) and tumor-free held-out phantoms (seeds 300000.., never used in
training, validation or ``evaluate_demo.py``; 192×160×120 at 2 mm, cropped to the liver's box
grown by 48 mm: the original post-processing already drops tumor farther than 30 mm from the
liver), where every predicted lesion is a false positive.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from syntumor_core.metrics import SIZE_BINS_MM, dice, lesion_detection, size_bin_name
from syntumor_core.phantom import make_phantom
from syntumor_core.segmentation import (
    LesionFilter,
    Predictor,
    filter_lesions,
    labels_from_probabilities,
)
from syntumor_core.segmentation.postprocess import postprocess
from syntumor_core.volume import Volume

TUMOR_FREE_SEED = 300_000
MIN_VOLUMES_MM3 = (0.0, 50.0, 100.0, 200.0, 500.0)
THRESHOLDS = (None, 0.6, 0.7)


def tumor_free_phantom(index: int, margin_mm: float = 48.0) -> tuple[Volume, str]:
    seed = TUMOR_FREE_SEED + index
    phantom = make_phantom(seed, (192, 160, 120), (2.0, 2.0, 2.0))
    corners = np.argwhere(phantom.organ_mask("liver"))
    margin = int(np.ceil(margin_mm / 2.0))
    low = np.maximum(corners.min(axis=0) - margin, 0)
    high = np.minimum(corners.max(axis=0) + 1 + margin, phantom.image.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    affine = phantom.image.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ low.astype(float)
    return Volume(np.ascontiguousarray(phantom.image.array[box]), affine), f"phantom-{seed}"


def probabilities(predictor: Predictor, volume: Volume) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    image = predictor.preprocess(volume)
    logits = predictor.sliding_window_logits(image.as_tensor()[None])
    return predictor.restore_probabilities(logits[0], image), time.perf_counter() - started


def apply(probs: np.ndarray, voxel_mm3: float, options: LesionFilter | None) -> np.ndarray:
    threshold = options.tumor_probability if options else None
    raw = np.argmax(probs, axis=0).astype(np.uint8) if threshold is None else (
        labels_from_probabilities(probs, threshold))  # fmt: skip
    labels = postprocess(raw)
    return filter_lesions(labels, voxel_mm3, options)[0] if options else labels


def settings() -> list[tuple[str, LesionFilter | None]]:
    grid: list[tuple[str, LesionFilter | None]] = [("none (before)", None)]
    for volume, contact, threshold in itertools.product(MIN_VOLUMES_MM3, (False, True), THRESHOLDS):
        options = LesionFilter(volume, contact, threshold)
        grid.append((json.dumps(options.as_dict()), options))
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/demo/model.pt")
    parser.add_argument("--phantoms", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="var/lesion-filter.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.model, device="cpu")
    from syntumor_core.samples import load_lits117

    sample = load_lits117()
    lits_probs, seconds = probabilities(predictor, sample.image)
    sys.stdout.write(f"lits117 segmented in {seconds:.1f} s\n")
    phantoms = []
    for index in range(args.phantoms):
        volume, name = tumor_free_phantom(index)
        probs, seconds = probabilities(predictor, volume)
        phantoms.append((name, probs, abs(float(np.linalg.det(volume.affine[:3, :3])))))
        sys.stdout.write(f"{name} {volume.shape} segmented in {seconds:.1f} s\n")
    truth = sample.labels.array == 2
    spacing = sample.labels.spacing
    lits_voxel = float(np.prod(spacing))
    rows = []
    for label, options in settings():
        predicted = apply(lits_probs, lits_voxel, options) == 2
        detection = lesion_detection(predicted, truth, spacing)
        free = [int(lesion_detection(apply(p, v, options) == 2, np.zeros(p.shape[1:], bool),
                                     (1, 1, 1)).false_positive_lesions) for _, p, v in phantoms]  # fmt: skip
        rows.append({
            "filter": label,
            "lits117_tumor_dice": round(dice(predicted, truth), 4),
            "lits117_false_positive_lesions": detection.false_positive_lesions,
            "lits117_detected": f"{detection.lesions_detected}/{detection.lesions_total}",
            "lits117_detected_per_bin": {
                size_bin_name(b): f"{d}/{t}" for b, d, t in
                zip(SIZE_BINS_MM, detection.detected_per_bin, detection.total_per_bin, strict=True)
            },
            "phantom_false_positives": free,
            "phantom_false_positives_per_scan": round(float(np.mean(free)), 2) if free else None,
        })  # fmt: skip
        sys.stdout.write(json.dumps(rows[-1]) + "\n")
    report = {"model": args.model, "mode": predictor.plan().mode, "phantoms": [n for n, *_ in phantoms],
              "rows": rows}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
