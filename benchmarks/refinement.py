"""Fast mode's refinement against the full window grid, case by case, with trained weights.

Fast mode (the default) runs every other window of the authors' grid first, then only the
windows whose central cube holds a voxel where those coarse windows left the labels in doubt
(top two logits closer than ``refine_margin``). ``benchmarks/inference.py --trained`` times it
on one phantom; this script checks that its agreement is not luck of that phantom: for each
case it runs the trained demo U-Net (``models/demo``) over the whole volume twice, with the
full grid (``refine_margin=None``: the authors' grid and blend, parity's logits up to float
rounding) and with the default refinement, both through the whole pipeline but the lesion
table, and prints a table row: windows through the network, seconds, the argmax before
post-processing and the final labels that agree, the liver's Dice between the two, and the
tumor lesions each found.

Cases: phantoms of ``--shape`` at ``--spacing`` with synthetic ``mix`` liver tumors for each
``--seeds`` value (phantom seed s, tumor seed s + 3), and LiTS case 117 (real CT, the 128³
crop the PyPI package ships; skipped when it is not installed). Run:

    .venv/bin/python benchmarks/refinement.py --seeds 1 2   # about 25 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from inference import DEMO_MODEL, SHAPE, SPACING, refined_run
from scipy import ndimage

from syntumor_core.metrics import dice
from syntumor_core.phantom import make_phantom
from syntumor_core.segmentation import COMPILE_MIN_PASSES, REFINE_MARGIN, Predictor
from syntumor_core.synthesis import synthesize
from syntumor_core.volume import Volume


def cases(args) -> list[tuple[str, Volume]]:
    found = []
    for seed in args.seeds:
        phantom = make_phantom(seed=seed, shape=tuple(args.shape), spacing=tuple(args.spacing))
        image = phantom.image.array.astype(np.float32)
        tumors = synthesize(image, phantom.organ_mask("liver"), spacing=phantom.image.spacing,
                            seed=seed + 3, tumor_type="mix")  # fmt: skip
        found.append((f"phantom seed {seed}", Volume(tumors.image, phantom.image.affine)))
    try:
        from syntumor_core.samples import load_lits117

        found.append(("LiTS case 117 (real CT)", load_lits117().image))
    except Exception as error:  # noqa: BLE001 - an optional case: say why and go on
        print(f"(LiTS case 117 skipped: {error})")
    return found


def tumor_lesions(labels: np.ndarray) -> int:
    return int(ndimage.label(labels == 2)[1])


def compare(predictor: Predictor, name: str, volume: Volume) -> str:
    full = refined_run(predictor, volume, None)
    refined = refined_run(predictor, volume, REFINE_MARGIN)
    liver = dice(refined.labels >= 1, full.labels >= 1, empty_value=1.0)
    return (
        f"| {name} | {volume.shape} | {full.grid_windows} | {full.windows_run} | "
        f"{refined.windows_run} | {full.seconds:.0f} | {refined.seconds:.0f} | "
        f"{full.seconds / refined.seconds:.2f}× | {100 * np.mean(refined.raw == full.raw):.4f} % | "
        f"{100 * np.mean(refined.labels == full.labels):.4f} % | {liver:.4f} | "
        f"{tumor_lesions(full.labels)} / {tumor_lesions(refined.labels)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--shape", type=int, nargs=3, default=SHAPE)
    parser.add_argument("--spacing", type=float, nargs=3, default=SPACING)
    args = parser.parse_args()
    predictor = Predictor.from_checkpoint(DEMO_MODEL, device="cpu")
    plan = predictor.plan()
    print(f"demo U-Net, refine_margin {REFINE_MARGIN:g} vs the full grid; torch "
          f"{torch.__version__}, {torch.get_num_threads()} CPU threads")  # fmt: skip
    if predictor.fast.compiled_for(COMPILE_MIN_PASSES, plan) is not None:  # outside the rows
        started = time.perf_counter()
        windows = torch.zeros(plan.sw_batch_size, 1, *predictor.roi_size)
        with torch.inference_mode():
            predictor.fast.forward(windows, plan, compiled=True)
        print(f"(compiled network built in {time.perf_counter() - started:.0f} s)")
    print("| case | shape | windows in the grid | windows run, full | windows run, refined | "
          "s full | s refined | speed-up | argmax agrees (before post-processing) | "
          "labels agree | liver Dice | tumor lesions full / refined |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, volume in cases(args):
        print(compare(predictor, name, volume), flush=True)


if __name__ == "__main__":
    main()
