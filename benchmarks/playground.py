"""The synthesis playground's preview: how long from a request to the crop's bytes.

Starts a SynTumor server, uploads a phantom (default 256×256×120 at 1.5 mm, the CLI's default)
with its organ labels, and times ``POST /api/v1/syntheses/preview`` for one tumor at a deep
liver voxel: the first request (the scan is loaded) and ``--repeats`` more with other seeds,
per profile and tumor size (what a person dragging a slider causes). Prints a Markdown table.

    .venv/bin/python benchmarks/playground.py
    .venv/bin/python benchmarks/playground.py --shape 128,128,64 --spacing 2.5 --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.live_server import LiveServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="256,256,120")
    parser.add_argument("--spacing", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    from syntumor_core.phantom import make_phantom
    from syntumor_core.volume import save_nifti

    shape = tuple(int(v) for v in args.shape.split(","))
    with tempfile.TemporaryDirectory(prefix="syntumor-playground-") as folder:
        phantom = make_phantom(seed=0, shape=shape, spacing=(args.spacing,) * 3)
        image_path = save_nifti(phantom.image, Path(folder) / "ct.nii.gz")
        labels_path = save_nifti(phantom.labels, Path(folder) / "organs.nii.gz")
        liver = phantom.organ_mask("liver")
        depth = ndimage.distance_transform_edt(liver, sampling=phantom.image.spacing)
        centre = [int(v) for v in np.unravel_index(int(np.argmax(depth)), depth.shape)]
        server = LiveServer(Path(folder) / "data").start()
        try:
            client = server.token_client("researcher")
            image = client.post("/api/v1/volumes", params={"name": "ct.nii.gz"},
                                content=image_path.read_bytes()).json()  # fmt: skip
            labels = client.post("/api/v1/volumes", params={"name": "organs.nii.gz", "kind": "label",
                                 "image_id": image["id"]}, content=labels_path.read_bytes()).json()  # fmt: skip
            rows = []
            for profile in ("paper", "realistic"):
                for diameter in (10, 20, 40):
                    times = []
                    for seed in range(args.repeats + 1):
                        body = {"image_id": image["id"], "mask_id": labels["id"], "organ": "liver",
                                "tumor_type": "small", "profile": profile, "seed": seed,
                                "centers": [centre], "radius_mm": diameter / 2, "drop_hu": 60}  # fmt: skip
                        started = time.perf_counter()
                        answer = client.post("/api/v1/syntheses/preview", json=body)
                        times.append(time.perf_counter() - started)
                        answer.raise_for_status()
                    first = times.pop(0)
                    rows.append((profile, diameter, first, statistics.median(times),
                                 float(np.percentile(times, 95)), len(answer.content)))  # fmt: skip
        finally:
            server.close()
    print(f"\n### Preview of one tumor ({'×'.join(map(str, shape))} phantom at {args.spacing} mm, "
          f"{args.repeats} previews after the first)\n")  # fmt: skip
    print("| profile | diameter mm | first s (scan loaded) | median s | p95 s | crop bytes |")
    print("|---|---|---|---|---|---|")
    for profile, diameter, first, median, p95, size in rows:
        print(f"| {profile} | {diameter} | {first:.2f} | {median:.3f} | {p95:.3f} | {size:,} |")


if __name__ == "__main__":
    main()
