"""What a ``syntumor segment`` run writes, and one CT segmented with a loaded predictor.

The label map (uint8 NIfTI on the CT's grid), its sidecar JSON beside it (model, checkpoint
hash, run options, lesion filter, code version, seconds) and the lesion table (JSON with the
same provenance, or CSV). Shared by the single-file and the folder runs
(:mod:`app.cli.segmentation`, :mod:`app.cli.segment_folder`) and by ``syntumor evaluate``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syntumor_core.segmentation import LesionRow, Predictor
    from syntumor_core.volume import Volume


def provenance(
    predictor: Predictor, options: dict[str, Any], model: str, checkpoint: str
) -> dict[str, Any]:
    """Model and run options of a run as the sidecar and the lesion table record them (the
    options resolved by the predictor's plan: what actually ran)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        code_version = version("syntumor")
    except PackageNotFoundError:
        code_version = "unknown"
    info, plan = predictor.checkpoint, predictor.plan(**options)
    return {
        "model": model,
        "checkpoint": checkpoint,
        "sha256": info.sha256 if info else None,
        "arch": predictor.arch,
        "mode": plan.mode,
        "overlap": plan.overlap,
        "refine_margin": plan.refine_margin,
        # the network ran through torch.compile
        "compiled": predictor.fast.compiled and plan.compile_from is not None,
        "roi_size": list(predictor.roi_size),
        "spacing_mm": list(predictor.spacing_mm),
        "hu_window": list(predictor.hu_window),
        "device": str(predictor.device),
        "code_version": code_version,
    }


def json_safe(value: Any) -> Any:
    """NaN and infinities become ``null``; tuples become lists (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")


def _lesion_csv_row(row: LesionRow) -> dict[str, Any]:
    record = asdict(row)
    for key in ("centroid_voxel", "centroid_mm"):
        for axis, value in zip(
            "xyz" if key == "centroid_mm" else "ijk", record.pop(key), strict=True
        ):
            record[f"{key}_{axis}"] = value
    return record


def write_lesions(path: Path, lesions: tuple[LesionRow, ...], provenance: dict) -> None:
    """Write the lesion table as JSON (with provenance) or CSV, chosen by the suffix.

    Args:
        path: ``.json`` or ``.csv`` file.
        lesions: the rows of :func:`syntumor_core.segmentation.lesion_table`.
        provenance: model and settings, stored in the JSON form.
    """
    if path.suffix.lower() == ".csv":
        rows = [_lesion_csv_row(row) for row in lesions]
        columns = list(_lesion_csv_row(lesions[0])) if rows else _lesion_columns()
        with path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        return
    write_json(path, {**provenance, "lesions": [asdict(row) for row in lesions]})


def _lesion_columns() -> list[str]:
    from syntumor_core.segmentation import LesionRow

    empty = LesionRow(0, 0, 0.0, 0.0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.0)
    return list(_lesion_csv_row(empty))


def sidecar_path(out_label: Path) -> Path:
    name = out_label.name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem
    return out_label.with_name(stem + ".json")


@dataclass(frozen=True)
class Segmented:
    """What one segmented CT holds, for the line the command prints."""

    liver_ml: float
    tumors: int
    tumor_ml: float
    mode: str
    seconds: float

    def describe(self) -> str:
        return (f"liver {self.liver_ml:.1f} ml, {self.tumors} tumor(s) {self.tumor_ml:.2f} ml "
                f"({self.mode} mode, {self.seconds:.1f} s)")  # fmt: skip


def segment_file(
    predictor: Predictor,
    volume: Volume,
    image: Path,
    out_label: Path,
    lesions: Path | None,
    *,
    run: dict[str, Any],
    progress,
) -> Segmented:
    """Segment one CT with a loaded predictor: the labels, their sidecar JSON and (when asked)
    the lesion table.

    Args:
        predictor: the loaded model (``app.cli.segmentation._load_predictor``).
        volume: the CT, loaded.
        image: where it was loaded from (for the sidecar).
        out_label: the label map to write (.nii or .nii.gz); its sidecar goes beside it.
        lesions: the lesion table to write (.json or .csv), or None.
        run: ``options`` (of ``predict``), ``cleaning`` (the LesionFilter), ``model`` and
            ``checkpoint`` (for the provenance).
        progress: called with the fraction done.

    Raises:
        SynTumorError: options the predictor refuses, or a CT too large for it.
    """
    import numpy as np

    from syntumor_core.volume import save_nifti

    result = predictor.predict(volume, progress=progress, lesion_filter=run["cleaning"],
                               **run["options"])  # fmt: skip
    save_nifti(result.labels, out_label, dtype=np.uint8)
    made_by = {"image": str(image),
               **provenance(predictor, run["options"], run["model"], run["checkpoint"]),
               "lesion_filter": result.lesion_filter}  # fmt: skip
    write_json(sidecar_path(out_label), {**made_by, "seconds": result.seconds,
                                         "lesion_filter_removed": result.lesion_report})  # fmt: skip
    if lesions is not None:
        write_lesions(lesions, result.lesions, made_by)
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    return Segmented(
        liver_ml=float(np.count_nonzero(result.labels.array == 1)) * voxel_ml,
        tumors=len(result.lesions),
        tumor_ml=sum(row.volume_ml for row in result.lesions),
        mode=result.mode,
        seconds=result.seconds,
    )
