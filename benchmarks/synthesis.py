"""Speed and memory of the synthesis engine, per tumor type and profile.

For each volume (a 512×512×100 phantom at 1 mm, liver about 1.3 L, as in the spec's table of
the original; and 512×512×300 at 0.8×0.8×1 mm) and each type, a fresh Python process imports
SynTumor, loads the arrays, times the first call (imports and all set-up included) and then
``--repeats`` more calls (median), and reports its peak resident memory. Profile ``paper+out``
is ``paper`` with one output array allocated before the first call and passed to every call
as ``out=`` (a batch of syntheses of one scan): the calls then skip allocating and
page-faulting a new 100 MB image each time. Profile ``paper+F`` gives image and mask in column
(Fortran) order, as nibabel returns them (a mask made with ``== 1`` keeps that order): the
engine's speed should not depend on it. Run:

    .venv/bin/python benchmarks/synthesis.py [--repeats 15] [--quick]
    .venv/bin/python benchmarks/synthesis.py --quick --profiles paper paper+F --repeats 15

On a shared machine the load changes from minute to minute; ``--baseline DIR`` (a folder holding
another version's ``syntumor_core``, e.g. from ``git archive``) runs that version and this one
alternately, ``--rounds`` times per case, so that both see the same load.

``--original DIR`` times the released code of Hu et al. (a checkout of MrGiovanni/
SyntheticTumors, never copied into this repository: DIR holds its ``TumorGenerated`` package;
it imports ``cv2`` and ``elasticdeform``, which ``--original-deps DIR2`` may hold, e.g. from
``pip install --target DIR2 opencv-python-headless elasticdeform``) in one process beside
this version, on the same 512×512×100 phantom, calls alternating (released, ours, ours with
``out=``, in a rotating order) ``--calls`` times per type, and prints each type's medians and
ratios from that one run. The released code works in place on a volume already loaded (a
MONAI transform), so its inputs are copied before its timer starts; its textures (one
420×300×320 field here; ten at its start-up) are made once, before the calls, and timed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"
ROOT = Path(__file__).resolve().parents[1]
VOLUMES = {
    "512x512x100@1mm": ((512, 512, 100), (1.0, 1.0, 1.0)),
    "512x512x300@0.8x0.8x1mm": ((512, 512, 300), (0.8, 0.8, 1.0)),
}
TYPES = ("tiny", "small", "medium", "large", "mix")

WORKER = r"""
import json, resource, sys, time
started = time.perf_counter()
import numpy as np
from syntumor_core.synthesis import synthesize
image = np.load(sys.argv[1]); mask = np.load(sys.argv[2])
spacing = tuple(json.loads(sys.argv[3])); tumor_type = sys.argv[4]; profile, *how = sys.argv[5].split("+")
repeats = int(sys.argv[6])
if "F" in how:  # column order, as nibabel gives
    image, mask = np.asfortranarray(image), np.asfortranarray(mask)
loaded = time.perf_counter()
extra = {"out": np.empty(image.shape, np.float32, order="K" if "F" in how else "C")} if "out" in how else {}
out = synthesize(image, mask, spacing=spacing, seed=0, tumor_type=tumor_type, profile=profile, **extra)
first = time.perf_counter() - loaded
first_with_imports = time.perf_counter() - started
times, cpu, ellipsoids, voxels = [], [], [], []
for seed in range(1, repeats + 1):
    t0, c0 = time.perf_counter(), time.process_time()
    out = synthesize(image, mask, spacing=spacing, seed=seed, tumor_type=tumor_type, profile=profile, **extra)
    times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
    ellipsoids.append(len(out.params.ellipsoids)); voxels.append(out.result.tumor_voxels)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"median": float(np.median(times)), "cpu": float(np.median(cpu)), "first": first, "first_total": first_with_imports,
                  "peak_mb": peak_mb, "ellipsoids": float(np.mean(ellipsoids)),
                  "voxels": float(np.median(voxels)), "input_mb": (image.nbytes + mask.nbytes) / 2**20}))
"""


ORIGINAL_WORKER = r"""
import json, random, statistics, sys, time
import numpy as np
sys.path[:0] = [p for p in sys.argv[5:] if p]
from TumorGenerated.utils import SynthesisTumor, get_predefined_texture
from syntumor_core.synthesis import synthesize
image = np.load(sys.argv[1]); mask = np.load(sys.argv[2])
spacing = tuple(json.loads(sys.argv[3])); calls = int(sys.argv[4])
label = mask.astype(np.uint8)
random.seed(0); np.random.seed(0)
started = time.perf_counter()
texture = get_predefined_texture((420, 300, 320), 9, 4)  # one of the ten it makes at start-up
texture_s = time.perf_counter() - started
out = np.empty(image.shape, np.float32)
print(json.dumps({"texture_s": texture_s}), flush=True)
for tumor_type in ("tiny", "small", "medium", "large", "mix"):
    times = {"original": [], "ours": [], "ours+out": []}
    for call in range(calls):
        order = ["original", "ours", "ours+out"]
        order = order[call % 3:] + order[:call % 3]
        for who in order:
            if who == "original":
                random.seed(call); np.random.seed(call)
                volume, scan = image.copy(), label.copy()  # loaded data, changed in place
                t0 = time.perf_counter()
                SynthesisTumor(volume, scan, tumor_type, texture)
            else:
                extra = {"out": out} if who == "ours+out" else {}
                t0 = time.perf_counter()
                synthesize(image, mask, spacing=spacing, seed=call, tumor_type=tumor_type, **extra)
            times[who].append(time.perf_counter() - t0)
    print(json.dumps({"type": tumor_type, **{k: statistics.median(v) for k, v in times.items()}}), flush=True)
"""


def compare_original(args) -> None:
    """The released code and this version in one process, calls alternating (one run)."""
    name, (shape, spacing) = next(iter(VOLUMES.items()))
    image_path, mask_path = prepare(name, shape, spacing)
    deps = str(args.original_deps.resolve()) if args.original_deps else ""
    command = [
        sys.executable,
        "-c",
        ORIGINAL_WORKER,
        str(image_path),
        str(mask_path),
        json.dumps(spacing),
        str(args.calls),
        str(args.original.resolve()),
        deps,
    ]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(
        f"released code: {args.original}; {name}, {args.calls} calls per type, alternating "
        "(released, ours, ours with out=) in a rotating order, one process"
    )
    print(
        "| type | released s/call | ours s/call | ours / released | ours+out s/call | ours+out / released |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=environment
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            row = json.loads(line)
            if "texture_s" in row:
                texture_note = (
                    f"released code's texture (one 420×300×320 field): {row['texture_s']:.1f} s"
                )
                continue
            print(
                f"| {row['type']} | {row['original']:.3f} | {row['ours']:.3f} | "
                f"{row['ours'] / row['original']:.2f} | {row['ours+out']:.3f} | "
                f"{row['ours+out'] / row['original']:.2f} |",
                flush=True,
            )
    if process.returncode:
        raise SystemExit(f"the worker failed (exit {process.returncode})")
    print(texture_note)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


def prepare(name: str, shape, spacing) -> tuple[Path, Path]:
    """Make (once) the phantom's image and liver mask as .npy files."""
    from syntumor_core.phantom import make_phantom

    image_path, mask_path = OUT / f"{name}_image.npy", OUT / f"{name}_liver.npy"
    if not (image_path.exists() and mask_path.exists()):
        OUT.mkdir(parents=True, exist_ok=True)
        phantom = make_phantom(seed=0, shape=shape, spacing=spacing)
        np.save(image_path, phantom.image.array.astype(np.float32))
        np.save(mask_path, phantom.organ_mask("liver"))
    return image_path, mask_path


def run_case(image_path, mask_path, spacing, tumor_type, profile, repeats, root=ROOT) -> dict:
    """One fresh process importing ``syntumor_core`` from ``root`` (its working directory)."""
    command = [
        sys.executable,
        "-c",
        WORKER,
        str(image_path),
        str(mask_path),
        json.dumps(spacing),
        tumor_type,
        profile,
        str(repeats),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=root)
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(volumes, profiles, args) -> None:
    """This version against ``args.baseline``, run alternately (medians of round medians)."""
    print(f"baseline: {args.baseline}; {args.rounds} rounds of {args.repeats} calls per case")
    print(
        "| volume | profile | type | baseline s/call | this s/call | speed-up | baseline CPU s | "
        "this CPU s |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name, (shape, spacing) in volumes:
        image_path, mask_path = prepare(name, shape, spacing)
        for profile in profiles:
            for tumor_type in TYPES:
                runs = {"base": [], "this": []}
                for _ in range(args.rounds):
                    for key, root in (("base", args.baseline), ("this", ROOT)):
                        runs[key].append(
                            run_case(
                                image_path,
                                mask_path,
                                spacing,
                                tumor_type,
                                profile,
                                args.repeats,
                                root,
                            )
                        )
                wall = {k: float(np.median([r["median"] for r in v])) for k, v in runs.items()}
                cpu = {k: float(np.median([r["cpu"] for r in v])) for k, v in runs.items()}
                print(
                    f"| {name} | {profile} | {tumor_type} | {wall['base']:.3f} | {wall['this']:.3f} | "
                    f"{wall['base'] / wall['this']:.2f} | {cpu['base']:.3f} | {cpu['this']:.3f} |",
                    flush=True,
                )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="only the 512×512×100 volume")
    parser.add_argument(
        "--baseline", type=Path, help="compare with the syntumor_core in this folder"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternations per case (--baseline)")
    parser.add_argument(
        "--original",
        type=Path,
        help="a checkout of the released code (holding TumorGenerated/): time it beside this one",
    )
    parser.add_argument(
        "--original-deps", type=Path, help="a folder holding cv2 and elasticdeform (--original)"
    )
    parser.add_argument("--calls", type=int, default=30, help="calls per type (--original)")
    parser.add_argument(
        "--profiles",
        nargs="+",
        default=["paper", "paper+out", "realistic"],
        help="profiles to time; PROFILE+out passes one reused output array (out=) to every "
        "call, PROFILE+F gives column-ordered (Fortran) image and mask",
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    volumes = list(VOLUMES.items())[:1] if args.quick else list(VOLUMES.items())
    if args.original:
        compare_original(args)
        return
    if args.baseline:
        compare(volumes, args.profiles, args)
        return
    print(
        "| volume | profile | type | ellipsoids | tumor voxels | median s/call | CPU s/call | "
        "s per tumor | first call s (+imports) | peak RSS MB |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (shape, spacing) in volumes:
        started = time.perf_counter()
        image_path, mask_path = prepare(name, shape, spacing)
        liver_ml = np.load(mask_path).sum() * float(np.prod(spacing)) / 1000
        print(
            f"<!-- {name}: liver {liver_ml:.0f} ml, phantom ready in {time.perf_counter() - started:.0f} s -->"
        )
        for profile in args.profiles:
            for tumor_type in TYPES:
                r = run_case(image_path, mask_path, spacing, tumor_type, profile, args.repeats)
                print(
                    f"| {name} | {profile} | {tumor_type} | {r['ellipsoids']:.1f} | {r['voxels']:,.0f} | "
                    f"{r['median']:.3f} | {r['cpu']:.3f} | "
                    f"{r['median'] / max(r['ellipsoids'], 1):.3f} | {r['first']:.2f} ({r['first_total']:.2f}) | "
                    f"{r['peak_mb']:.0f} |",
                    flush=True,
                )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
