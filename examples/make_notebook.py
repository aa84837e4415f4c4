"""Writes examples/synthesis.ipynb (without outputs). Run after editing the cells below."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell(
        "# Tumor synthesis with SynTumor\n\n"
        "This notebook walks through the synthesis engine: a procedural phantom, every liver tumor "
        "type of the published method (profile `paper`), the `realistic` profile, pancreas and kidney "
        "tumors, the manifest and its bit-for-bit replay, and the real LiTS case 117 shipped by a "
        "registry package. Everything runs on a CPU in about a minute."
    ),
    new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n\n"
        "from syntumor_core.phantom import make_phantom\n"
        "from syntumor_core.synthesis import TUMOR_LABEL, replay, synthesize\n\n"
        "WINDOW = dict(cmap='gray', vmin=-160, vmax=240)\n\n"
        "def show(pairs, titles):\n"
        "    fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 4))\n"
        "    for ax, image, title in zip(np.atleast_1d(axes), pairs, titles):\n"
        "        ax.imshow(np.fliplr(np.rot90(image)), **WINDOW)  # radiological view: patient right on the left\n"
        "        ax.set_title(title)\n"
        "        ax.axis('off')\n"
        "    plt.show()\n\n"
        "def tumor_slice(label):\n"
        "    counts = (label == TUMOR_LABEL).sum(axis=(0, 1))\n"
        "    return int(counts.argmax())"
    ),
    new_markdown_cell("## A phantom\n\nDeterministic by seed; 256×256×120 voxels at 1.5 mm, labels for the organs."),
    new_code_cell(
        "phantom = make_phantom(seed=0)\n"
        "ct, spacing = phantom.image.array, phantom.image.spacing\n"
        "liver = phantom.organ_mask('liver')\n"
        "print(ct.shape, spacing, f'liver {liver.sum() * np.prod(spacing) / 1000:.0f} ml')\n"
        "z = int(np.argwhere(liver)[:, 2].mean())\n"
        "show([ct[:, :, z], phantom.labels.array[:, :, z] * 40 - 160], ['CT', 'organ labels'])"
    ),
    new_markdown_cell(
        "## Every liver tumor type (profile `paper`)\n\n"
        "Tiny, small, medium and large tumors and their mix, as released with Hu et al. (CVPR 2023)."
    ),
    new_code_cell(
        "results = {}\n"
        "for tumor_type in ['tiny', 'small', 'medium', 'large', 'mix']:\n"
        "    out = synthesize(ct, liver, spacing=spacing, seed=7, tumor_type=tumor_type)\n"
        "    results[tumor_type] = out\n"
        "    k = tumor_slice(out.label)\n"
        "    tumor_ml = (out.label == TUMOR_LABEL).sum() * np.prod(spacing) / 1000\n"
        "    show([ct[:, :, k], out.image[:, :, k]],\n"
        "         [f'before (slice {k})', f'{tumor_type}: {len(out.params.ellipsoids)} ellipsoids, {tumor_ml:.1f} ml'])\n"
        "    assert (out.image[~liver] == ct[~liver]).all(), 'nothing outside the liver changes'"
    ),
    new_markdown_cell(
        "## Profile `realistic`\n\n"
        "Adds vessel avoidance, collision and margin checks, mass effect (the liver boundary moves "
        "outward) and a bright capsule rim. Vessels are found by intensity; a known vessel mask (a "
        "segmentation, or the phantom's own) can be added so that no tumor voxel lies on a vessel."
    ),
    new_code_cell(
        "# The phantom knows its vessels; on real scans they are found by intensity alone.\n"
        "real = synthesize(ct, liver, spacing=spacing, seed=7, tumor_type='large', profile='realistic',\n"
        "                  vessel_mask=phantom.vessels)\n"
        "paper = results['large']\n"
        "k = tumor_slice(real.label)\n"
        "show([ct[:, :, k], paper.image[:, :, k], real.image[:, :, k]], ['before', 'paper', 'realistic'])\n"
        "print('tumor voxels on vessels:', int(((real.label == TUMOR_LABEL) & phantom.vessels).sum()))"
    ),
    new_markdown_cell("## Pancreas and kidney profiles"),
    new_code_cell(
        "pancreas = phantom.organ_mask('pancreas')\n"
        "kidneys = phantom.organ_mask('kidney_right') | phantom.organ_mask('kidney_left')\n"
        "pdac = synthesize(ct, pancreas, spacing=spacing, seed=3, organ='pancreas', tumor_type='small')\n"
        "cyst = synthesize(ct, kidneys, spacing=spacing, seed=3, organ='kidney', tumor_type='cyst')\n"
        "kp, kc = tumor_slice(pdac.label), tumor_slice(cyst.label)\n"
        "show([pdac.image[:, :, kp], cyst.image[:, :, kc]], ['pancreatic adenocarcinoma', 'renal cyst'])\n"
        "print('cyst median HU:', float(np.median(cyst.image[cyst.label == TUMOR_LABEL])))"
    ),
    new_markdown_cell(
        "## The manifest and its replay\n\n"
        "Every drawn number, the profile and checksums of the inputs: replaying gives the same arrays "
        "bit for bit."
    ),
    new_code_cell(
        "import json\n"
        "mix = results['mix']\n"
        "text = json.dumps(mix.manifest)\n"
        "print(f'manifest: {len(text) / 1024:.1f} KiB, keys {sorted(mix.manifest)}')\n"
        "again = replay(json.loads(text), ct, liver)\n"
        "assert np.array_equal(again.image, mix.image) and np.array_equal(again.label, mix.label)\n"
        "print('replay is bit-identical')"
    ),
    new_markdown_cell(
        "## A real scan: LiTS case 117\n\n"
        "Shipped by the PyPI package `liver-ct-segmentation-package` (LiTS terms: use it locally, "
        "never redistribute it). It already has real tumors (label 2); here synthetic tumors are added "
        "to its liver for comparison."
    ),
    new_code_cell(
        "from syntumor_core.samples import load_lits117\n"
        "sample = load_lits117()\n"
        "lits_ct, lits_labels = sample.image.array, sample.labels.array\n"
        "lits_liver = lits_labels == 1\n"
        "out = synthesize(lits_ct, lits_liver, spacing=sample.image.spacing, seed=1, tumor_type='medium')\n"
        "k_real = int((lits_labels == 2).sum(axis=(0, 1)).argmax())\n"
        "k_syn = tumor_slice(out.label)\n"
        "show([lits_ct[:, :, k_real], out.image[:, :, k_syn]], ['real tumors (LiTS-117)', 'synthetic (medium)'])\n"
        "print(sample.source)"
    ),
]


def main() -> None:
    notebook = new_notebook(cells=CELLS)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = Path(__file__).with_name("synthesis.ipynb")
    nbformat.write(notebook, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
