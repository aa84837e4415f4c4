"""Score the demo model on held-out phantoms with synthetic tumors and on LiTS case 117.

Reproduces the numbers of ``MODEL_CARD.md``::

    .venv/bin/python models/demo/evaluate_demo.py --model models/demo/model.pt \
        --out var/demo-eval.json

Held-out phantoms: seeds 200000.. (never used in training or validation), 192×160×120 voxels
of 2 mm, whole (as the demo model was trained; ``--margin-mm 24`` crops them to the liver's box
grown by 24 mm instead, as an earlier demo model was trained), tumors synthesized once with
the paper profile, one tumor type per phantom (tiny, small, medium, large, mix).
LiTS case 117: the 128³ crop of the PyPI package liver-ct-segmentation-package (1.375 mm
assumed; see ``syntumor_core.samples``). Segmentation: ``syntumor_core.segmentation.Predictor``
(fast mode, 96³ windows, overlap 0.75, post-processing), on the CPU. Scores:
``syntumor_core.metrics.evaluate_case`` with the liver scored as labels 1 ∪ 2 (the whole liver,
the LiTS convention), tumor = label 2, NSD at 2 mm.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from syntumor_core.metrics import evaluate_case
from syntumor_core.phantom import make_phantom
from syntumor_core.segmentation import DEFAULT_OVERLAP, Predictor
from syntumor_core.synthesis import synthesize
from syntumor_core.volume import Volume

HELD_OUT_SEED = 200_000
TUMOR_TYPES = ("tiny", "small", "medium", "large", "mix")
COLUMNS = ("liver_dice", "liver_nsd", "tumor_dice", "tumor_nsd")


def held_out_phantom(index: int, margin_mm: float) -> tuple[Volume, Volume, str]:
    """Phantom ``HELD_OUT_SEED + index`` with synthetic tumors, cropped to the liver's box
    grown by ``margin_mm`` (negative: whole)."""
    seed = HELD_OUT_SEED + index
    phantom = make_phantom(seed, (192, 160, 120), (2.0, 2.0, 2.0))
    liver = phantom.organ_mask("liver")
    tumor_type = TUMOR_TYPES[index % len(TUMOR_TYPES)]
    result = synthesize(phantom.image.array, liver, spacing=phantom.image.spacing, seed=seed,
                        tumor_type=tumor_type, checksums=False)  # fmt: skip
    low, high = np.zeros(3, dtype=int), np.array(liver.shape)
    if margin_mm >= 0:
        corners = np.argwhere(liver)
        margin = int(np.ceil(margin_mm / 2.0))
        low = np.maximum(corners.min(axis=0) - margin, 0)
        high = np.minimum(corners.max(axis=0) + 1 + margin, liver.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    affine = phantom.image.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ low.astype(float)
    image = Volume(np.ascontiguousarray(result.image[box]), affine)
    labels = Volume(np.ascontiguousarray(result.label[box]), affine.copy())
    return image, labels, f"phantom-{seed} ({tumor_type})"


def score(predictor: Predictor, image: Volume, labels: Volume, name: str, overlap: float) -> dict:
    started = time.perf_counter()
    predicted = predictor.predict(image, overlap=overlap).labels.array
    row = evaluate_case(predicted, labels.array, labels.spacing, liver_includes_tumor=True)
    row = {"name": name, **{key: row[key] for key in COLUMNS},
           "tumor_lesions": row["tumor_lesions"],
           "tumor_lesions_detected": row["tumor_lesions_detected"],
           "false_positive_lesions": row["false_positive_lesions"],
           "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/demo/model.pt")
    parser.add_argument("--out", default="var/demo-eval.json")
    parser.add_argument("--phantoms", type=int, default=len(TUMOR_TYPES))
    parser.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--margin-mm", type=float, default=-1.0,
                        help="crop phantoms to the liver's box + this (negative: whole)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.model, device="cpu")
    phantom_rows = [
        score(predictor, *held_out_phantom(i, args.margin_mm), args.overlap)
        for i in range(args.phantoms)
    ]
    lits_rows = []
    try:
        from syntumor_core.samples import load_lits117

        sample = load_lits117()
        lits_rows.append(score(predictor, sample.image, sample.labels, "lits117", args.overlap))
    except ValueError as error:  # SampleNotInstalledError: the package is optional
        sys.stdout.write(f"LiTS-117 skipped: {error}\n")
    means = {key: float(np.nanmean([row[key] for row in phantom_rows])) for key in COLUMNS}
    report = {
        "model": args.model,
        "sha256": predictor.checkpoint.sha256 if predictor.checkpoint else None,
        "segmenter": {
            "mode": predictor.plan().mode,
            "overlap": args.overlap,
            "roi_size": list(predictor.roi_size),
            "device": "cpu",
            "threads": args.threads,
        },  # fmt: skip
        "liver": "labels 1 and 2 (whole liver)",
        "phantom_margin_mm": None if args.margin_mm < 0 else args.margin_mm,
        "held_out_phantoms": {"cases": phantom_rows, "means": means},
        "lits117": lits_rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
