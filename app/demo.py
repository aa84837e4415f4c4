"""``make run`` until the web app exists: a short tour of the synthesis engine on a phantom.

Writes a phantom, tumors of every organ profile, their labels and manifests under
``var/demo/`` and prints what it made. Nothing is downloaded.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

DEMO_DIR = Path("var/demo")
CASES = (
    ("liver", "mix", "paper", ("liver",)),
    ("liver", "large", "realistic", ("liver",)),
    ("pancreas", "small", "paper", ("pancreas",)),
    ("kidney", "cyst", "paper", ("kidney_right", "kidney_left")),
)


def main(out_dir: Path = DEMO_DIR) -> int:
    import numpy as np

    from syntumor_core.phantom import make_phantom
    from syntumor_core.synthesis import TUMOR_LABEL, save_manifest, synthesize
    from syntumor_core.volume import Volume, save_nifti

    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    phantom = make_phantom(seed=0)
    save_nifti(phantom.image, out_dir / "phantom_ct.nii.gz")
    save_nifti(phantom.labels, out_dir / "phantom_organs.nii.gz")
    print(
        f"phantom {phantom.image.shape} at {phantom.image.spacing} mm -> {out_dir}/phantom_ct.nii.gz"
    )
    for index, (organ, tumor_type, profile, organ_names) in enumerate(CASES):
        mask = np.zeros(phantom.image.shape, dtype=bool)
        for name in organ_names:
            mask |= phantom.organ_mask(name)
        result = synthesize(
            phantom.image.array,
            mask,
            spacing=phantom.image.spacing,
            seed=index,
            organ=organ,
            tumor_type=tumor_type,
            profile=profile,
            vessel_mask=phantom.vessels if profile == "realistic" else None,
        )
        stem = f"{organ}_{tumor_type}_{profile}"
        save_nifti(Volume(result.image, phantom.image.affine), out_dir / f"{stem}_ct.nii.gz")
        save_nifti(Volume(result.label, phantom.image.affine), out_dir / f"{stem}_label.nii.gz")
        save_manifest(result.manifest, out_dir / f"{stem}_manifest.json")
        tumor_ml = (
            np.count_nonzero(result.label == TUMOR_LABEL)
            * float(np.prod(phantom.image.spacing))
            / 1000
        )
        print(
            f"{stem:32s} {len(result.params.ellipsoids):2d} ellipsoid(s), tumor {tumor_ml:7.2f} ml"
        )
    print(f"done in {time.perf_counter() - started:.1f} s; replay any case with:")
    print(
        f"  .venv/bin/syntumor synthesize --replay {out_dir}/liver_mix_paper_manifest.json "
        f"--image {out_dir}/phantom_ct.nii.gz --mask {out_dir}/phantom_organs.nii.gz --mask-label 1 "
        f"--out-image {out_dir}/replayed.nii.gz"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
