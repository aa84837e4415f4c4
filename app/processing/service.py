"""Job handlers for segmentation and synthesis: the only place that runs the core for the web.

Each handler reads its request row, loads the stored volumes, runs the core with a progress
callback (which also notices cancellation), stores the outputs as new volumes and fills in the
request row. Loaded predictors stay in the worker's cache between jobs (a core
``PredictorCache`` keyed by checkpoint hash and device; mode and overlap are per job).
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from dataclasses import asdict
from typing import Any

import numpy as np

from app.db.tables import Segmentation, Synthesis, Volume
from app.exports import SafeWriter
from app.jobs.worker import JobContext, JobFailed, job_handler
from app.volumes.service import BUDGET_HINT, store_core_volume
from syntumor_core.errors import SynTumorError, VolumeError
from syntumor_core.volume import Volume as CoreVolume
from syntumor_core.volume import check_resampled_size

logger = logging.getLogger(__name__)

LESION_COLUMNS = (
    "index",
    "voxels",
    "volume_ml",
    "longest_axial_diameter_mm",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
    "mean_hu",
)


PREDICTORS_KEY = "predictors"  # the worker's cache entry holding the PredictorCache


def _predictor(context: JobContext, model: str):
    from app.registry.catalog import resolve_model
    from syntumor_core.segmentation import PredictorCache

    cache = context.cache.get(PREDICTORS_KEY)
    if cache is None:
        cache = context.cache[PREDICTORS_KEY] = PredictorCache(
            maxsize=2, max_voxels=context.settings.max_voxels
        )
    checkpoint, arch = resolve_model(model, context.settings.data_dir, allow_path=False)
    device = context.settings.device
    if cache.key(checkpoint, device) not in cache.keys():
        context.log(f"loading model {model}")
    return cache.get(checkpoint, device=device, arch=arch)


def lesion_rows(lesions) -> list[dict[str, Any]]:
    return [_json_safe(asdict(row)) for row in lesions]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else round(float(value), 4)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_lesion_files(folder, lesions: list[dict[str, Any]], provenance: dict) -> None:
    (folder / "lesions.json").write_text(
        json.dumps({**provenance, "lesions": lesions}, indent=1), encoding="utf-8"
    )
    with (folder / "lesions.csv").open("w", newline="", encoding="utf-8") as stream:
        writer = SafeWriter(stream)
        writer.writerow(LESION_COLUMNS)
        for row in lesions:
            x, y, z = row["centroid_mm"]
            writer.writerow(
                [
                    row["index"],
                    row["voxels"],
                    row["volume_ml"],
                    row["longest_axial_diameter_mm"],
                    x,
                    y,
                    z,
                    row["mean_hu"],
                ]
            )


def results_removed_on_error(handler):
    """Wrap a handler so a failed or cancelled run leaves no files in ``results/<job id>/``."""

    @functools.wraps(handler)
    def wrapper(context: JobContext) -> dict[str, Any]:
        try:
            return handler(context)
        except BaseException:
            shutil.rmtree(context.storage.results_dir / str(context.job_id), ignore_errors=True)
            raise

    return wrapper


@job_handler("segment")
@results_removed_on_error
def run_segmentation(context: JobContext) -> dict[str, Any]:
    """Segment liver and tumors of a stored image with a registered model."""
    with context.session_factory() as session:
        request = session.get(Segmentation, context.params["segmentation_id"])
        image_row = session.get(Volume, request.image_id)
        model, mode, overlap = request.model, request.mode, request.overlap
        image_path = image_row.path
        image_name, dicom_zip = image_row.name, (image_row.meta or {}).get("dicom_zip")
        grid = image_row.shape, image_row.spacing
    context.progress(0.02, "loading the model", force=True)
    try:
        from syntumor_core.segmentation import LesionFilter

        cleaning = LesionFilter.from_mapping(context.params.get("lesion_filter"))
        predictor = _predictor(context, model)
        try:  # before the image is read: the numbers are in its row
            check_resampled_size(*grid, predictor.spacing_mm, name=image_name,
                                 max_voxels=context.settings.max_voxels)  # fmt: skip
        except VolumeError as error:
            raise JobFailed(str(error) + BUDGET_HINT) from None
        image = context.storage.load(image_path)
        context.progress(0.05, "segmenting", force=True)
        result = predictor.predict(
            image,
            mode=mode,
            overlap=overlap,
            progress=lambda f: context.progress(0.05 + 0.85 * f, "segmenting"),
            lesion_filter=cleaning,
        )
    except SynTumorError as error:
        raise JobFailed(str(error)) from None
    context.progress(0.92, "saving", force=True)
    lesions = lesion_rows(result.lesions)
    folder = context.storage.result_dir(context.job_id)
    provenance = {"model": model, "mode": mode, "image": image_name,
                  "lesion_filter": result.lesion_filter,
                  "lesion_filter_removed": result.lesion_report}  # fmt: skip
    write_lesion_files(folder, lesions, provenance)
    seg_path = None
    if dicom_zip:
        context.progress(0.94, "writing the DICOM-SEG", force=True)
        seg_path = _dicom_seg(context, dicom_zip, result.labels, folder, model)
    with context.session_factory() as session:
        request = session.get(Segmentation, context.params["segmentation_id"])
        label_row = store_core_volume(
            session,
            context.storage,
            result.labels,
            name=f"{image_name} – segmentation ({model})",
            kind="label",
            source="segmentation",
            owner_id=context.owner_id,
            image_id=request.image_id,
            meta={
                "labels": {"1": "liver", "2": "tumor"},
                "model": model,
                "lesion_filter": result.lesion_filter,
            },
        )
        request.label_id = label_row.id
        request.lesions = lesions
        request.dicom_seg_path = seg_path
        session.commit()
        label_id = label_row.id
    context.log(f"{len(lesions)} lesion(s); {result.seconds:.1f} s")
    return {"label_id": label_id, "lesions": len(lesions), "seconds": round(result.seconds, 2)}


def _dicom_seg(
    context: JobContext, dicom_zip: str, labels: CoreVolume, folder, model: str
) -> str | None:
    """A DICOM-SEG of the label map, referencing the uploaded series (None when it fails)."""
    try:
        from app.processing.dicom_seg import write_dicom_seg

        path = write_dicom_seg(
            context.storage.absolute(dicom_zip), labels, folder / "seg.dcm", model_name=model
        )
    except Exception as error:  # the NIfTI result stands; say why the DICOM-SEG is missing
        logger.warning("job %s: no DICOM-SEG: %s", context.job_id, error)
        context.log(f"no DICOM-SEG: {error}")
        return None
    return context.storage.relative(path)


@job_handler("synthesize")
@results_removed_on_error
def run_synthesis(context: JobContext) -> dict[str, Any]:
    """Synthesize tumors into a stored image inside a stored organ mask."""
    from syntumor_core import synthesis as engine
    from syntumor_core.synthesis import get_organ_profile, tuned_profile

    with context.session_factory() as session:
        request = session.get(Synthesis, context.params["synthesis_id"])
        image_row = session.get(Volume, request.image_id)
        mask_row = session.get(Volume, request.mask_id)
        spec = {
            "organ": request.organ,
            "tumor_type": request.tumor_type,
            "profile": request.profile,
            "seed": request.seed,
            "labels": list(request.mask_labels),
        }
        image_path, mask_path, image_name = image_row.path, mask_row.path, image_row.name
    context.progress(0.05, "loading volumes", force=True)
    try:
        image = context.storage.load(image_path)
        labels = context.storage.load(mask_path, label=True)
        if labels.shape != image.shape:
            raise JobFailed(
                f"the organ mask has shape {labels.shape} but the image {image.shape}: they must "
                "be on the same grid"
            )
        organ_mask = np.isin(np.asarray(labels.array), spec["labels"])
        protected = list(context.params.get("protect_labels") or [])
        protect = np.isin(np.asarray(labels.array), protected) if protected else None
        context.progress(0.2, "synthesizing", force=True)
        made = engine.synthesize(
            np.asarray(image.array, dtype=np.float32),
            organ_mask,
            spacing=image.spacing,
            seed=spec["seed"],
            organ_profile=tuned_profile(
                get_organ_profile(spec["organ"]),
                texture_mm=context.params.get("texture_mm"),
                rim=context.params.get("rim"),
                mass_effect=context.params.get("mass_effect"),
            ),
            tumor_type=spec["tumor_type"],
            profile=spec["profile"],
            axial_axis=image.axial_axis,
            protect=protect,
            centers=context.params.get("centers"),
            radius_mm=context.params.get("radius_mm"),
            drop_hu=context.params.get("drop_hu"),
        )
    except SynTumorError as error:
        raise JobFailed(str(error)) from None
    context.progress(0.8, "saving", force=True)
    folder = context.storage.result_dir(context.job_id)
    manifest_path = engine.save_manifest(made.manifest, folder / "manifest.json")
    title = f"{image_name} + {spec['organ']} {spec['tumor_type']} ({spec['profile']}, seed {spec['seed']})"
    with context.session_factory() as session:
        out_image = store_core_volume(
            session,
            context.storage,
            CoreVolume(made.image, image.affine),
            name=title,
            source="synthesis",
            owner_id=context.owner_id,
            meta={"synthetic": True, "synthesis_job": context.job_id},
        )
        out_label = store_core_volume(
            session,
            context.storage,
            CoreVolume(made.label, image.affine),
            name=f"{title} – label",
            kind="label",
            source="synthesis",
            owner_id=context.owner_id,
            image_id=out_image.id,
            meta={"labels": {"1": spec["organ"], "2": "tumor"}},
        )
        request = session.get(Synthesis, context.params["synthesis_id"])
        request.out_image_id, request.out_label_id = out_image.id, out_label.id
        request.manifest_path = context.storage.relative(manifest_path)
        session.commit()
        ids = {"image_id": out_image.id, "label_id": out_label.id}
    tumor_voxels = int((made.label == engine.TUMOR_LABEL).sum())
    context.log(f"{tumor_voxels} tumor voxels")
    return {**ids, "tumor_voxels": tumor_voxels}
