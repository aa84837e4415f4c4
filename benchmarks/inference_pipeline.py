"""Where a CPU segmentation's time goes: file to written mask, stage by stage.

Two cases, as a user runs them with ``syntumor segment``: the default phantom (``syntumor
phantom``: 256×256×120 voxels of 1.5 mm, seed 0) and the real LiTS case 117 (128³ voxels of
1.375 mm, from the PyPI package ``liver-ct-segmentation-package``; skipped when that package is
missing). Each is written to a NIfTI file first; the timed pipeline then reads it, segments it
and writes the label file, exactly as the CLI does.

Rows: ``cold`` is the first run of a process (it includes loading the checkpoint and any
compilation), ``warm`` a second run with the same loaded predictor (what the worker of the web
app pays for every job after its first). Columns: read, model load, preprocess (reorient to
RAS + resample to the model's grid + HU window), windows (the sliding windows with Gaussian
blending, fast mode's coarse grid and its refinement), restore (logits back to the input's
grid), post-processing (the original clean-up + the lesion filter), lesion table, write, and
the total. The last column is the share of voxels whose labels equal those of parity mode.

Run (about 5 minutes on two cores):

    .venv/bin/python benchmarks/inference.py --pipeline [--model models/demo/model.pt]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from syntumor_core.segmentation import LesionFilter, Predictor
from syntumor_core.volume import load_nifti, save_nifti

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo" / "model.pt"
TARGETS_S = {"phantom": 30.0, "lits117": 10.0}  # issue 18: whole pipeline, demo model, fast mode
STAGES = ("read", "load", "preprocess", "sliding_window", "restore", "postprocess", "lesions",
          "write")  # fmt: skip


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (no machine paths printed)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _cases(folder: Path) -> dict[str, Path]:
    from syntumor_core.phantom import make_phantom

    paths = {}
    phantom = make_phantom(0, (256, 256, 120), (1.5, 1.5, 1.5))
    paths["phantom"] = save_nifti(phantom.image, folder / "phantom.nii.gz")
    try:
        from syntumor_core.samples import load_lits117

        paths["lits117"] = save_nifti(load_lits117().image, folder / "lits117.nii.gz")
    except Exception as error:  # the sample's package is optional
        print(f"LiTS-117 skipped: {error}")
    return paths


def _run(path: Path, out: Path, model: Path, mode: str, predictor: Predictor | None):
    """One pipeline run; returns (timings, labels, predictor)."""
    timings: dict[str, float] = {}
    mark = time.perf_counter()
    volume = load_nifti(path)
    timings["read"] = time.perf_counter() - mark
    mark = time.perf_counter()
    if predictor is None:
        predictor = Predictor.from_checkpoint(model, device="cpu")
    timings["load"] = time.perf_counter() - mark
    result = predictor.predict(volume, mode=mode, lesion_filter=LesionFilter())
    timings.update(result.timings)
    mark = time.perf_counter()
    save_nifti(result.labels, out)
    timings["write"] = time.perf_counter() - mark
    timings["total"] = sum(timings[stage] for stage in STAGES)
    return timings, np.asarray(result.labels.array), predictor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEMO)
    parser.add_argument("--no-parity", action="store_true", help="skip the parity comparison")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; model {_shown(args.model)}")  # fmt: skip
    header = ["case", "run", *STAGES, "total", "target", "= parity"]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name, path in _cases(folder).items():
            cold, labels, predictor = _run(path, folder / f"{name}-fast.nii.gz", args.model,
                                           "fast", None)  # fmt: skip
            warm, _, _ = _run(path, folder / f"{name}-fast2.nii.gz", args.model, "fast", predictor)
            agreement = "—"
            if not args.no_parity:
                _, parity, _ = _run(path, folder / f"{name}-parity.nii.gz", args.model, "parity",
                                    predictor)  # fmt: skip
                agreement = f"{100 * np.mean(parity == labels):.3f} %"
            for run, timings in (("cold", cold), ("warm", warm)):
                cells = [f"{timings.get(stage, 0.0):.2f}" for stage in STAGES]
                target = TARGETS_S[name]
                verdict = f"≤ {target:.0f} s " + ("yes" if timings["total"] <= target else "NO")
                rows.append([name, run, *cells, f"{timings['total']:.1f}", verdict,
                             agreement if run == "cold" else ""])  # fmt: skip
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
