"""``syntumor phantom``, ``syntumor synthesize`` and ``syntumor sample …``: the core on files."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import parse_triple, progress_bar, user_errors


def phantom(
    out_image: Annotated[Path, typer.Option(help="Where to write the CT (.nii.gz).")],
    out_label: Annotated[
        Path | None, typer.Option(help="Where to write the organ label map.")
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed gives the same phantom.")
    ] = 0,
    shape: Annotated[str, typer.Option(help="Voxels per axis, e.g. 256,256,120.")] = "256,256,120",
    spacing: Annotated[str, typer.Option(help="Voxel size in mm, e.g. 1.5 or 0.8,0.8,1.")] = "1.5",
    noise_sd: Annotated[float, typer.Option(help="Image noise standard deviation, HU.")] = 15.0,
) -> None:
    """Make a procedural abdominal CT phantom and its organ labels."""
    from syntumor_core.phantom import LABELS, make_phantom
    from syntumor_core.volume import save_nifti

    shape_voxels = parse_triple(shape, "shape", int)
    spacing_mm = parse_triple(spacing, "spacing", float)
    with user_errors(), progress_bar("phantom") as progress:
        result = make_phantom(seed, shape_voxels, spacing_mm, noise_sd=noise_sd, progress=progress)
        save_nifti(result.image, out_image)
        if out_label is not None:
            save_nifti(result.labels, out_label)
    typer.echo(f"wrote {out_image}" + (f" and {out_label}" if out_label else ""))
    if out_label is not None:
        typer.echo("labels: " + ", ".join(f"{value} {name}" for name, value in LABELS.items()))


def _organ_mask(mask_path: Path, labels: list[int], image, protect_labels=()):
    """The organ (voxels of ``labels``) and, when ``protect_labels`` are given, the voxels of
    those labels (else None), both from the label map at ``mask_path``."""
    from syntumor_core.errors import MaskError
    from syntumor_core.volume import load_label_nifti

    mask_volume = load_label_nifti(mask_path)
    if mask_volume.shape != image.shape:
        raise MaskError(
            f"mask {mask_path.name} has shape {mask_volume.shape}, image has {image.shape}"
        )
    import numpy as np

    if not np.allclose(mask_volume.affine, image.affine, atol=1e-3):
        raise MaskError(
            f"mask {mask_path.name} and the image have different affines (not on the same grid)"
        )
    organ = np.isin(mask_volume.array, labels)
    if not organ.any():
        present = sorted(int(v) for v in np.unique(mask_volume.array))
        raise MaskError(
            f"mask {mask_path.name} has no voxel with label {labels}; labels present: {present}"
        )
    if not protect_labels:
        return organ, None
    if set(protect_labels) & set(labels):
        raise MaskError(
            f"label(s) {sorted(set(protect_labels) & set(labels))} are both organ and protected"
        )
    return organ, np.isin(mask_volume.array, list(protect_labels))


def synthesize(
    image: Annotated[Path, typer.Option(help="CT image (.nii or .nii.gz), raw HU.")],
    mask: Annotated[Path, typer.Option(help="Organ mask or label map, same grid as the image.")],
    out_image: Annotated[Path, typer.Option(help="Where to write the image with tumors.")],
    out_label: Annotated[
        Path | None, typer.Option(help="Where to write the label (0, 1 organ, 2 tumor).")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Where to write the manifest (JSON).")
    ] = None,
    replay: Annotated[
        Path | None, typer.Option(help="Regenerate the result of this manifest.")
    ] = None,
    mask_label: Annotated[
        list[int] | None, typer.Option(help="Label value(s) of the organ in --mask.")
    ] = None,
    protect_label: Annotated[
        list[int] | None,
        typer.Option(
            help="Label value(s) in --mask never to overlap, move or change, e.g. the scan's "
            "real lesions or vessels (repeat)."
        ),
    ] = None,
    organ: Annotated[str, typer.Option(help="liver, pancreas or kidney.")] = "liver",
    tumor_type: Annotated[
        str, typer.Option("--type", help="Tumor type of the organ profile, e.g. tiny … mix.")
    ] = "mix",
    profile: Annotated[
        str, typer.Option(help="paper (the released method) or realistic.")
    ] = "paper",
    seed: Annotated[
        int | None, typer.Option(help="Random seed (drawn and recorded when omitted).")
    ] = None,
    at: Annotated[
        list[str] | None,
        typer.Option(
            help="A tumor centred at voxel I,J,K of the image (repeat for several tumors); "
            "refused outside the organ or too near its edge for the size."
        ),
    ] = None,
    radius_mm: Annotated[
        float | None, typer.Option(help="Every tumor's semi-axes in mm (default: drawn).")
    ] = None,
    drop_hu: Annotated[
        float | None, typer.Option(help="The tumor's HU drop (default: drawn).")
    ] = None,
) -> None:
    """Synthesize tumors into a CT inside an organ mask, or replay a manifest bit for bit."""
    from syntumor_core import synthesis
    from syntumor_core.volume import Volume, load_nifti, save_nifti

    with user_errors():
        ct = load_nifti(image)
        recorded = synthesis.load_manifest(replay) if replay else None
        source = (recorded or {}).get("source", {})
        labels = mask_label or source.get("mask_labels") or [1]
        protected = protect_label or source.get("protect_labels") or []
        organ_mask, protect = _organ_mask(mask, list(labels), ct, list(protected))
        centers = [parse_triple(text, "at", int) for text in at] if at else None
        with progress_bar("synthesis") as progress:
            if recorded is not None:
                result = synthesis.replay(recorded, ct.array, organ_mask, protect=protect)
            else:
                result = synthesis.synthesize(
                    ct.array,
                    organ_mask,
                    spacing=ct.spacing,
                    seed=seed if seed is not None else secrets.randbelow(2**31),
                    organ=organ,
                    tumor_type=tumor_type,
                    profile=profile,
                    axial_axis=ct.axial_axis,
                    protect=protect,
                    centers=centers,
                    radius_mm=radius_mm,
                    drop_hu=drop_hu,
                )
            progress(0.8)
            save_nifti(Volume(result.image, ct.affine), out_image)
            if out_label is not None:
                save_nifti(Volume(result.label, ct.affine), out_label)
            if manifest is not None:
                record = dict(result.manifest)
                record["source"] = {
                    "image": image.name,
                    "mask": mask.name,
                    "mask_labels": list(labels),
                }
                if protected:
                    record["source"]["protect_labels"] = list(protected)
                if centers:
                    record["source"]["centers"] = [list(c) for c in centers]
                synthesis.save_manifest(record, manifest)
    params = result.params
    tumor_ml = (
        int((result.label == synthesis.TUMOR_LABEL).sum())
        * float(__import__("numpy").prod(ct.spacing))
        / 1000
    )
    typer.echo(
        f"{'replayed' if replay else 'synthesized'} {len(params.ellipsoids)} {params.tumor_type} ellipsoid(s) "
        f"({params.organ}, {params.profile}): tumor {tumor_ml:.2f} ml -> {out_image}"
    )


def sample_lits117(
    out_image: Annotated[Path, typer.Option(help="Where to write the CT (.nii.gz).")],
    out_label: Annotated[
        Path | None, typer.Option(help="Where to write the label (1 liver, 2 tumor).")
    ] = None,
) -> None:
    """LiTS case 117 from the package liver-ct-segmentation-package (LiTS terms: keep it local)."""
    from syntumor_core.samples import load_lits117
    from syntumor_core.volume import save_nifti

    with user_errors():
        sample = load_lits117()
        save_nifti(sample.image, out_image)
        if out_label is not None:
            save_nifti(sample.labels, out_label)
    typer.echo(f"wrote {out_image} ({sample.source}); {sample.licence_note}")


def register(app: typer.Typer) -> None:
    """Add ``phantom``, ``synthesize`` and ``sample lits117`` to the ``syntumor`` app."""
    if any(info.name == "phantom" for info in app.registered_commands):
        return
    app.command()(phantom)
    app.command()(synthesize)
    sample_app = typer.Typer(
        help="Real sample CT cases shipped by registry packages (local use only).",
        no_args_is_help=True,
    )
    sample_app.command("lits117")(sample_lits117)
    app.add_typer(sample_app, name="sample")
