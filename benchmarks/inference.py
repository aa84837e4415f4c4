"""Segmentation speed: parity vs fast mode vs a direct MONAI call, and their agreement.

The volume is a 512×512×200 phantom at 0.8×0.8×1.5 mm (seed 0; 410×410×300 voxels and 2,250
windows of 96³ at overlap 0.75 on the 1 mm grid). Networks have random-init weights (torch seed
0): fine for timing; the agreement of random networks is a harsh test, since their logits are
nearly tied everywhere while trained ones are confident almost everywhere.

Columns: seconds per volume for the whole pipeline of :class:`Predictor` (``parity``,
``fast``) and for the bare call ``sliding_window_inference(x, (96,96,96), 1, model,
overlap=0.75, mode="gaussian")`` on the preprocessed volume (``direct``, the authors'
evaluation settings), the speed-up of ``fast`` over ``direct``, and the share of voxels where
the final labels of fast and parity agree.

Rows marked ``full`` ran on the whole volume. On a CPU the full runs take hours (Swin-UNETR
tiny: about 6 s per window on two cores, 3 s in fast mode), so by default CPU rows are
``estimated``: the pipeline
without the network is timed on the whole volume (a 1×1×1 convolution stands in for the
network), the network on ``--sample-windows`` real windows of the volume, and the two are
added up for the number of windows each mode runs; their agreement comes from full runs of
both modes on a ``--crop-mm`` cube around the liver. ``--full`` runs everything in full.
On CUDA, rows also show the peak GPU memory.

``--trained`` instead runs the demo U-Net (trained weights, ``models/demo``) over the whole
volume on the CPU with the authors' window grid, with sparser grids and with fast mode as
shipped (a coarse grid refined where its labels are in doubt, at three refine margins), and
compares the final labels (see :func:`run_trained`): the agreement a faster grid keeps, and
how much fast mode refines, depend on how confident the network is, which random weights
cannot show (a random network is in doubt everywhere: fast mode refines the whole grid). Run:

    .venv/bin/python benchmarks/inference.py [--device cpu|cuda|all] [--full]
    .venv/bin/python benchmarks/inference.py --trained      # about 40 minutes on 2 cores
    .venv/bin/python benchmarks/inference.py --pipeline     # the CPU breakdown, ~5 minutes
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage
from torch import nn

from syntumor_core.metrics import dice
from syntumor_core.models import build_model
from syntumor_core.phantom import make_phantom
from syntumor_core.segmentation import REFINE_MARGIN, Predictor, RunPlan, window_slices
from syntumor_core.segmentation.postprocess import postprocess
from syntumor_core.segmentation.refine import coarse_window_indices
from syntumor_core.segmentation.windows import Blend, WindowRun
from syntumor_core.synthesis import synthesize
from syntumor_core.volume import Volume

SHAPE, SPACING = (512, 512, 200), (0.8, 0.8, 1.5)
ARCHS = {"cpu": ("unet", "swin_unetrv2_tiny"), "cuda": ("unet", "swin_unetrv2_base")}
ROI = (96, 96, 96)


def random_model(arch: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(arch).eval()


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, function, *args, **kwargs):
    """(result, seconds, peak GPU GiB or None)."""
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    synchronize(device)
    started = time.perf_counter()
    result = function(*args, **kwargs)
    synchronize(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return result, seconds, peak


def direct_call(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return sliding_window_inference(batch, ROI, 1, model, overlap=0.75, mode="gaussian")


def warm_up(predictor: Predictor, runs: dict[str, dict], device: str) -> None:
    window = torch.rand(1, 1, *ROI, device=device)
    for options in runs.values():
        predictor.sliding_window_logits(window, **options)


def stages(result) -> str:
    return ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in result.timings.items())


def run_full(volume: Volume, arch: str, device: str, explicit_direct: bool) -> list[dict]:
    """Both modes (and on CUDA fast without autocast) and the direct call, whole volume.

    With ``explicit_direct`` false, the direct call's time is parity's sliding-window stage,
    which is that very call (plus a counter around the model).
    """
    predictor = Predictor(random_model(arch), arch=arch, device=device)
    runs: dict[str, dict] = {"parity": {"mode": "parity"}, "fast": {"mode": "fast"}}
    if device == "cuda" and explicit_direct:
        runs["fast, no AMP"] = {"amp": False}
    warm_up(predictor, runs, device)
    results = {}
    for mode, options in runs.items():
        results[mode] = timed(device, predictor.predict, volume, **options)
        print(f"<!-- {device} {arch} {mode}: {stages(results[mode][0])} -->", flush=True)
    direct_peak, how = None, "full; direct = parity's sliding-window stage"
    direct = results["parity"][0].timings["sliding_window"]
    if explicit_direct:
        batch = predictor.preprocess(volume).as_tensor()[None]
        _, direct, direct_peak = timed(device, direct_call, predictor.model, batch)
        how = "full"
    reference = results["parity"][0].labels.array
    return [
        {"device": device, "arch": arch, "mode": mode, "seconds": seconds, "peak": peak,
         "agreement": float(np.mean(result.labels.array == reference)), "direct": direct,
         "direct_peak": direct_peak, "how": how}
        for mode, (result, seconds, peak) in results.items()
    ]  # fmt: skip


def network_seconds_per_window(
    predictor: Predictor, plan: RunPlan, windows: list[torch.Tensor], passes: int = 0
) -> tuple[float, float]:
    """Mean seconds of the network alone per window, in the plan's batch and execution
    (parity: the plain model; fast: compiled when a run of ``passes`` forward passes would
    compile it), and the seconds of the first call (which builds the compiled network)
    beyond one pass."""
    size = plan.sw_batch_size
    groups = [torch.cat(windows[i : i + size]) for i in range(0, len(windows), size)]
    if plan.parity:

        def forward(group: torch.Tensor) -> torch.Tensor:
            return predictor.model(group).float()
    else:
        compiled = predictor.fast.compiled_for(passes, plan) is not None

        def forward(group: torch.Tensor) -> torch.Tensor:
            return predictor.fast.forward(group, plan, compiled)

    with torch.inference_mode():
        started = time.perf_counter()
        forward(groups[0])  # warm-up (and compiling)
        first = time.perf_counter() - started
        started = time.perf_counter()
        for group in groups:
            forward(group)
    seconds = (time.perf_counter() - started) / sum(len(group) for group in groups)
    return seconds, max(first - seconds * len(groups[0]), 0.0)


def crop_around_liver(volume: Volume, liver: np.ndarray, crop_mm: float) -> Volume:
    centre = np.round(np.argwhere(liver).mean(axis=0)).astype(int)
    half = [int(crop_mm / 2 / s) for s in volume.spacing]
    box = tuple(slice(max(c - h, 0), c + h) for c, h in zip(centre, half, strict=True))
    affine = volume.affine.copy()
    affine[:3, 3] = volume.affine[:3, :3] @ np.array([s.start for s in box]) + affine[:3, 3]
    return Volume(np.ascontiguousarray(volume.array[box]), affine)


def forward_passes(batch: torch.Tensor, slices: list) -> int:
    """Forward passes fast mode makes over the whole grid: one per window whose input varies,
    one per distinct value of the constant ones (all air, say). Random weights leave fast
    mode in doubt everywhere, so it refines the whole grid: this is its count."""
    constant, varying = set(), 0
    for window in slices:
        low, high = batch[(slice(None), slice(None), *window)].aminmax()
        if low == high:
            constant.add(float(low))
        else:
            varying += 1
    return varying + len(constant)


def run_estimated(volume: Volume, liver: np.ndarray, arch: str, args) -> list[dict]:
    """CPU rows from the pipeline's fixed costs plus sampled network time (module docstring)."""
    predictor = Predictor(random_model(arch), arch=arch, device="cpu")
    parity, fast = predictor.plan(mode="parity"), predictor.plan(mode="fast")
    batch = predictor.preprocess(volume).as_tensor()[None]
    slices = window_slices(batch.shape[2:], ROI, 0.75)
    fast_passes = forward_passes(batch, slices)
    picks = np.linspace(0, len(slices) - 1, args.sample_windows).round().astype(int)
    windows = [batch[(slice(None), slice(None), *slices[i])] for i in picks]
    per_window, build = {}, {}
    per_window["parity"], _ = network_seconds_per_window(predictor, parity, windows)
    per_window["fast"], build["fast"] = network_seconds_per_window(
        predictor, fast, windows, math.ceil(fast_passes / fast.sw_batch_size)
    )
    del batch
    pipeline = Predictor(nn.Conv3d(1, 3, kernel_size=1), arch=arch, device="cpu")  # stand-in
    fixed = {}
    for mode in ("parity", "fast"):
        result = pipeline.predict(volume, mode=mode, compile=False)
        fixed[mode] = (result.seconds + build.get(mode, 0.0), result.timings["sliding_window"])
    run_counts = {"parity": len(slices), "fast": fast_passes}
    direct = fixed["parity"][1] + len(slices) * per_window["parity"]
    small = crop_around_liver(volume, liver, args.crop_mm)
    labels = {mode: predictor.predict(small, mode=mode).labels.array
              for mode in ("parity", "fast")}  # fmt: skip
    agreement = float(np.mean(labels["parity"] == labels["fast"]))
    how = f"estimated ({args.sample_windows} of {len(slices)} windows; agreement on a crop)"
    return [
        {"device": "cpu", "arch": arch, "mode": mode, "how": how, "direct": direct,
         "seconds": fixed[mode][0] + run_counts[mode] * per_window[mode], "peak": None,
         "agreement": 1.0 if mode == "parity" else agreement, "direct_peak": None}
        for mode in ("parity", "fast")
    ]  # fmt: skip


DEMO_MODEL = Path(__file__).resolve().parents[1] / "models" / "demo" / "model.pt"
# (name, overlap, every other window only, Gaussian sigmas as fractions of the window)
GRIDS = (
    ("authors' grid, overlap 0.75", 0.75, False, (0.125,)),
    ("overlap 0.625", 0.625, False, (0.125, 0.18)),
    ("every other window of the authors' grid (about overlap 0.5)", 0.75, True, (0.125,)),
)


def run_trained(args) -> None:
    """The demo U-Net (trained weights) on the whole volume, with tumors synthesized into its
    liver: how far fewer windows can go before the labels drift from the authors' grid.

    Each grid runs once in fast mode's execution (batches of windows, the compiled network,
    one pass per constant window) and feeds one blend per Gaussian sigma; building the
    compiled network (once, before the first grid) is added to every row's s/volume. The reference is the
    authors' grid and blend (parity's logits up to float rounding). Labels are compared after
    the whole pipeline (back to the input grid, post-processing). "Direct" is estimated: the
    plain network on ``--sample-windows`` windows, one at a time, times the grid's windows.
    """
    phantom = make_phantom(seed=0, shape=tuple(args.shape), spacing=tuple(args.spacing))
    image = phantom.image.array.astype(np.float32)
    tumors = synthesize(image, phantom.organ_mask("liver"), spacing=phantom.image.spacing,
                        seed=3, tumor_type="mix")  # fmt: skip
    volume = Volume(tumors.image, phantom.image.affine)
    predictor = Predictor.from_checkpoint(DEMO_MODEL, device="cpu")
    plan = predictor.plan(refine_margin=None)
    started = time.perf_counter()
    preprocessed = predictor.preprocess(volume)
    batch = preprocessed.as_tensor()[None]
    fixed = time.perf_counter() - started
    authors_grid = window_slices(batch.shape[2:], ROI, 0.75)
    build = 0.0
    if predictor.fast.compiled_for(len(authors_grid), plan) is not None:  # compile now
        windows = batch[(slice(None), slice(None), *authors_grid[0])]
        windows = windows.expand(plan.sw_batch_size, -1, -1, -1, -1)
        with torch.inference_mode():
            started = time.perf_counter()
            predictor.fast.forward(windows, plan, compiled=True)
            build = time.perf_counter() - started
    fixed += build
    labels, raws, seconds, counts, after = {}, {}, {}, {}, []
    seconds_whole: dict = {}  # rows timed as a whole pipeline (the refined ones)
    for name, overlap, every_other, sigmas in GRIDS:
        slices = window_slices(batch.shape[2:], ROI, overlap)
        if every_other:
            slices = [slices[i] for i in coarse_window_indices(slices)]
        blends = [Blend(batch.shape, ROI, predictor.device, sigma) for sigma in sigmas]
        started = time.perf_counter()
        with torch.inference_mode():
            run = WindowRun(batch, predictor.fast.for_plan(plan), plan.sw_batch_size, blends)
            run.windows(slices, lambda fraction: None)
        seconds[name] = time.perf_counter() - started
        counts[name] = (len(slices), forward_passes(batch, slices))
        for sigma, blend in zip(sigmas, blends, strict=True):
            started = time.perf_counter()
            raw = predictor.restore(blend.result()[0], preprocessed)
            raws[name, sigma] = raw
            labels[name, sigma] = postprocess(raw)
            after.append(time.perf_counter() - started)
        del blends
    fixed_after = float(np.median(after))
    for margin in REFINE_MARGINS:  # fast mode as shipped: coarse pass, then refinement
        name = f"fast mode: coarse windows, then the grid where in doubt (margin {margin:g})"
        refined = refined_run(predictor, volume, margin)
        raws[name, 0.125], labels[name, 0.125] = refined.raw, refined.labels
        seconds[name], seconds_whole[name] = refined.window_seconds, refined.seconds
        counts[name] = ("-", refined.windows_run)
    plain = build_model("unet")
    plain.load_state_dict(predictor.model.state_dict())
    parity = Predictor(plain.eval(), arch="unet", device="cpu")
    picks = np.linspace(0, len(authors_grid) - 1, args.sample_windows).round().astype(int)
    samples = [batch[(slice(None), slice(None), *authors_grid[i])] for i in picks]
    direct = (
        len(authors_grid)
        * network_seconds_per_window(parity, parity.plan(mode="parity"), samples)[0]
    )
    reference = labels[GRIDS[0][0], 0.125]
    raw_reference = raws[GRIDS[0][0], 0.125]
    print(f"\ndemo U-Net (trained weights), volume with {int((tumors.label == 2).sum()):,} "
          f"synthetic tumor voxels; pipeline outside the windows {fixed + fixed_after:.0f} s "
          f"(of which building the compiled network {build:.0f} s); "
          f"direct MONAI call estimated at {direct:.0f} s ({len(authors_grid)} windows)")  # fmt: skip
    print("| grid | sigma | windows | windows through the network | windows s | s/volume | speed-up vs direct | "
          "argmax agrees (before post-processing) | labels agree with the authors' grid | "
          "largest region of differing labels, voxels | liver Dice vs it |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (name, sigma), result in labels.items():
        total = seconds[name] + fixed + fixed_after
        if name in seconds_whole:  # preprocessing and restoring already timed in the row
            total = seconds_whole[name] + build
        agree = float(np.mean(result == reference))
        raw_agree = float(np.mean(raws[name, sigma] == raw_reference))
        regions, count = ndimage.label(result != reference)
        largest = int(np.bincount(regions.ravel())[1:].max()) if count else 0
        del regions
        liver = dice(result >= 1, reference >= 1, empty_value=1.0)
        print(f"| {name} | {sigma} | {counts[name][0]} | {counts[name][1]} | {seconds[name]:.0f} | "
              f"{total:.0f} | {direct / total:.2f}× | {100 * raw_agree:.4f} % | "
              f"{100 * agree:.4f} % | {largest:,} | {liver:.4f} |",
              flush=True)  # fmt: skip


# fast mode's default refine margin (logits) and two more cautious ones
REFINE_MARGINS = (REFINE_MARGIN, 1.0, 2.0)


@dataclass
class RefinedRun:
    labels: np.ndarray  # final labels on the input's grid
    raw: np.ndarray  # the argmax there before post-processing
    window_seconds: float  # the sliding-window step
    seconds: float  # the whole pipeline but the lesion table
    windows_run: int  # windows through the network (as :func:`forward_passes` counts them)
    grid_windows: int  # windows in the full grid


def refined_run(predictor: Predictor, volume: Volume, margin: float | None) -> RefinedRun:
    """Fast mode as shipped (every other window, then the windows whose core holds a voxel
    where the coarse labels are in doubt by less than ``margin`` logits) on the whole pipeline
    but the lesion table. Windows run count each varying window and one per constant value
    (fast mode runs them two at a time). ``margin=None`` runs the full grid. The compiled
    network is already built (its build time is added by the caller)."""
    run = 0
    forward = predictor.fast.forward

    def counted(windows: torch.Tensor, plan: RunPlan, compiled: bool = False) -> torch.Tensor:
        nonlocal run
        run += windows.shape[0]  # before padding a short last batch
        return forward(windows, plan, compiled)

    predictor.fast.forward = counted  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        preprocessed = predictor.preprocess(volume)
        windows_started = time.perf_counter()
        logits = predictor.sliding_window_logits(
            preprocessed.as_tensor()[None], refine_margin=margin
        )
        window_seconds = time.perf_counter() - windows_started
        raw = predictor.restore(logits[0], preprocessed)
        del logits
        labels = postprocess(raw)
        seconds = time.perf_counter() - started
    finally:
        del predictor.fast.forward
    padded = [max(n, r) for n, r in zip(preprocessed.shape[1:], predictor.roi_size, strict=True)]
    grid = len(window_slices(padded, predictor.roi_size, predictor.plan().overlap))
    return RefinedRun(labels, raw, window_seconds, seconds, run, grid)


def print_row(row: dict) -> None:
    peak = f"{row['peak']:.1f}" if row["peak"] is not None else "-"
    speedup = row["direct"] / row["seconds"]
    print(
        f"| {row['device']} | {row['arch']} | {row['mode']} | {row['seconds']:.1f} | "
        f"{row['direct']:.1f} | {speedup:.2f}× | {100 * row['agreement']:.3f} % | {peak} | "
        f"{row['how']} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--full", action="store_true", help="full runs on the CPU too")
    parser.add_argument("--shape", type=int, nargs=3, default=SHAPE)
    parser.add_argument("--spacing", type=float, nargs=3, default=SPACING)
    parser.add_argument("--archs", nargs="*", help="override the architectures per device")
    parser.add_argument("--sample-windows", type=int, default=8)
    parser.add_argument("--crop-mm", type=float, default=128.0)
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="the CPU breakdown, file to written mask, of the default phantom and LiTS-117 "
        "with the demo model (benchmarks/inference_pipeline.py; other flags ignored)",
    )
    parser.add_argument(
        "--trained",
        action="store_true",
        help="only the demo U-Net's window-grid comparison on the CPU (run_trained)",
    )
    parser.add_argument(
        "--explicit-direct",
        nargs="*",
        default=["unet"],
        help="networks whose direct MONAI call is run on its own in full runs (the others "
        "take parity's sliding-window stage, the same call)",
    )
    args = parser.parse_args()
    if args.pipeline:
        import inference_pipeline  # beside this file

        inference_pipeline.main([])
        return
    if args.trained:
        run_trained(args)
        return
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        devices.remove("cuda")
        print("(no CUDA device: CPU rows only)")
    started = time.perf_counter()
    phantom = make_phantom(seed=0, shape=tuple(args.shape), spacing=tuple(args.spacing))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(
        f"volume {tuple(args.shape)} at {tuple(args.spacing)} mm (phantom in "
        f"{time.perf_counter() - started:.0f} s); torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads ({platform.processor() or platform.machine()}), "
        f"GPU: {gpu}; random-init weights"
    )
    print("| device | network | mode | s/volume | direct MONAI s | fast speed-up vs direct | "
          "labels agree with parity | peak GPU GiB | measured |")  # fmt: skip
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for device in devices:
        for arch in args.archs or ARCHS[device]:
            try:
                if device == "cpu" and not args.full:
                    rows = run_estimated(phantom.image, phantom.organ_mask("liver"), arch, args)
                else:
                    rows = run_full(phantom.image, arch, device, arch in args.explicit_direct)
            except (RuntimeError, ValueError) as error:  # e.g. out of memory: go on
                print(f"| {device} | {arch} | failed: {type(error).__name__}: {error} |")
                continue
            for row in rows:
                print_row(row)
            if rows[0]["direct_peak"] is not None:
                print(f"<!-- {arch} direct call peak GPU {rows[0]['direct_peak']:.1f} GiB -->")


if __name__ == "__main__":
    main()
