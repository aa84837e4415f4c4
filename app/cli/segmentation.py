"""``syntumor segment`` and ``syntumor evaluate``: run a segmentation model on CT scans.

:func:`register` adds both commands to the main Typer app. ``--model`` takes a registry name
(``syntumor models list``) or a checkpoint path, resolved by
:func:`app.registry.catalog.resolve_model`. Errors are one line on stderr with exit status 2
(``app.cli.user_errors``); heavy imports happen inside the commands.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.cli.segment_outputs import provenance, segment_file, sidecar_path, write_json
from syntumor_core.segmentation.options import (  # torch-free: the defaults only
    DEFAULT_MIN_LESION_MM3,
    DEFAULT_MODE,
    DEFAULT_OVERLAP,
    REFINE_MARGIN,
)

if TYPE_CHECKING:
    from syntumor_core.segmentation import Predictor

logger = logging.getLogger(__name__)

COMMAND_NAMES = ("segment", "evaluate")
DEFAULT_DATA_DIR = Path("var")
DEFAULT_REFINE_MARGIN = REFINE_MARGIN  # the core's defaults (syntumor_core.segmentation.options)
METRIC_COLUMNS = ("liver_dice", "liver_nsd", "tumor_dice", "tumor_nsd")
EMPTY_CASES_NOTE = (
    "A structure absent from both the truth and the prediction of a case scores NaN (as in the "
    "original evaluation; null in this file). 'mean' is the plain mean over cases, which is "
    "NaN/null as soon as one case is NaN (the original's np.mean); 'mean_excluding_empty' "
    "skips those cases; 'empty_cases' counts them. One of truth/prediction empty scores 0."
)

DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="SYNTUMOR_DATA_DIR",
        help="Data folder holding pulled and added models (default ./var).",
    ),
]
ModelOption = Annotated[
    str, typer.Option("--model", help="Registry name (see `syntumor models list`) or a model.pt.")
]
ArchOption = Annotated[
    str | None, typer.Option("--arch", help="Architecture; detected from the weights if omitted.")
]
ModeOption = Annotated[
    str, typer.Option("--mode", help="fast (default) or parity (the authors' exact arithmetic).")
]
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="cpu or cuda (default: cuda when available).")
]
OverlapOption = Annotated[
    float, typer.Option("--overlap", help="Sliding-window overlap (default: the authors' setting).")
]

RefineOption = Annotated[
    float,
    typer.Option(
        "--refine-margin",
        help="Fast mode: after a coarse pass (every other window), the other windows run only "
        "where the coarse labels are in doubt (top two logits closer than this); 0: the coarse "
        "pass only; negative: the full window grid everywhere.",
    ),
]
CompileOption = Annotated[
    bool | None,
    typer.Option(
        "--compile/--no-compile",
        help="Fast mode: run the network through torch.compile (default: the U-Net on the CPU "
        "for large volumes).",
        show_default=False,
    ),
]


MinLesionOption = Annotated[
    float,
    typer.Option(
        "--min-lesion-mm3",
        help="Drop tumor components smaller than this many mm³ (1000 mm³ = 1 ml; 0 keeps all).",
    ),
]
OrganContactOption = Annotated[
    bool,
    typer.Option(
        "--organ-contact/--no-organ-contact",
        help="Keep only tumors inside or touching the predicted liver.",
    ),
]
TumorProbabilityOption = Annotated[
    float | None,
    typer.Option(
        "--tumor-probability",
        help="Tumor where the network's softmax tumor probability is at least this (0-1); "
        "default: the plain argmax.",
    ),
]


def lesion_filter_options(min_volume_mm3: float, organ_contact: bool, probability: float | None):
    """The :class:`~syntumor_core.segmentation.options.LesionFilter` of the command line.

    Raises:
        ParameterError: a bad value (a one-line error through ``user_errors``).
    """
    from syntumor_core.segmentation import LesionFilter

    return LesionFilter(min_volume_mm3, organ_contact, probability)


def _speed_options(mode: str, overlap: float, refine: float, compile: bool | None) -> dict:
    """Run-time options of ``predict`` from the command line (parity mode ignores the
    refinement and refuses ``--compile`` with a message that says why)."""
    margin = refine if refine >= 0 else None
    return {"mode": mode, "overlap": overlap, "refine_margin": margin, "compile": compile}


def register(app: typer.Typer) -> None:
    """Add ``segment`` and ``evaluate`` to ``app`` (a second call changes nothing).

    Args:
        app: the ``syntumor`` Typer application.
    """
    present = {info.name for info in app.registered_commands}
    if "segment" not in present:
        app.command("segment")(segment)
    if "evaluate" not in present:
        app.command("evaluate")(evaluate)


def _load_predictor(
    model: str, arch: str | None, data_dir: Path, **settings: Any
) -> tuple[Predictor, str]:
    from app.registry.catalog import resolve_model
    from app.settings import Settings
    from syntumor_core.segmentation import Predictor

    checkpoint, resolved_arch = resolve_model(model, data_dir, arch=arch)
    settings.setdefault("max_voxels", Settings().max_voxels)  # SYNTUMOR_MAX_VOXELS
    return Predictor.from_checkpoint(checkpoint, arch=resolved_arch, **settings), str(checkpoint)


def _check_outputs(out_label: Path, lesions: Path | None) -> None:
    from app.cli.common import fail

    if not out_label.name.lower().endswith((".nii", ".nii.gz")):
        fail(f"--out-label must end in .nii or .nii.gz, got {out_label.name!r}")
    if lesions is not None and lesions.suffix.lower() not in (".json", ".csv"):
        fail(f"--lesions must end in .json or .csv, got {lesions.name!r}")
    if lesions is not None and lesions.resolve() == sidecar_path(out_label).resolve():
        fail(f"--lesions {lesions} is the label's sidecar file; choose another name")
    for path in (out_label, lesions):
        if path is not None and not path.parent.is_dir():
            fail(f"folder does not exist: {path.parent}")


def segment(
    model: ModelOption,
    image: Annotated[
        Path | None, typer.Option("--image", help="CT: NIfTI, DICOM folder or .zip.")
    ] = None,
    out_label: Annotated[
        Path | None, typer.Option("--out-label", help="Where to write the labels (.nii.gz).")
    ] = None,
    lesions: Annotated[
        Path | None, typer.Option("--lesions", help="Where to write the tumor table (.json/.csv).")
    ] = None,
    image_dir: Annotated[
        Path | None,
        typer.Option(
            "--image-dir",
            help="Segment every .nii/.nii.gz in this folder instead "
            "(with --out-dir; the model is loaded once).",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir",
            help="With --image-dir: where each CT's labels, sidecar and "
            "lesion table go, and summary.csv.",
        ),
    ] = None,
    arch: ArchOption = None,
    mode: ModeOption = DEFAULT_MODE,
    device: DeviceOption = None,
    overlap: OverlapOption = DEFAULT_OVERLAP,
    refine_margin: RefineOption = DEFAULT_REFINE_MARGIN,
    compile: CompileOption = None,
    min_lesion_mm3: MinLesionOption = DEFAULT_MIN_LESION_MM3,
    organ_contact: OrganContactOption = True,
    tumor_probability: TumorProbabilityOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Segment liver (1) and liver tumors (2) in a CT (--image, --out-label) or in every NIfTI
    of a folder (--image-dir, --out-dir); write labels on each CT's own grid.

    The tumor label is cleaned after the original post-processing (small specks and blobs
    away from the liver dropped; options below, recorded in the sidecar JSON). A folder run
    prints a line per file and a summary; a file that cannot be segmented is reported and
    skipped, and the exit status is 1 when any failed."""
    from app.cli.common import fail, progress_bar, user_errors
    from app.cli.segment_folder import check_folders, segment_folder
    from syntumor_core.volume import load_volume

    folder_run = image_dir is not None or out_dir is not None
    if folder_run:
        files = check_folders(image_dir, out_dir, single=(image, out_label, lesions))
    elif image is None or out_label is None:
        fail("give --image and --out-label (one CT), or --image-dir and --out-dir (a folder)")
    else:
        _check_outputs(out_label, lesions)
    with user_errors():
        cleaning = lesion_filter_options(min_lesion_mm3, organ_contact, tumor_probability)
        options = _speed_options(mode, overlap, refine_margin, compile)
        volume = None if folder_run else load_volume(image)
        predictor, checkpoint = _load_predictor(model, arch, data_dir, device=device)
        run = {"options": options, "cleaning": cleaning, "model": model, "checkpoint": checkpoint}
        if folder_run:
            failed = segment_folder(predictor, files, out_dir, run=run)
        else:
            with progress_bar("segment") as progress:
                done = segment_file(predictor, volume, image, out_label, lesions, run=run,
                                    progress=progress)  # fmt: skip
    if folder_run:
        if failed:
            raise typer.Exit(1)
        return
    typer.echo(
        f"{done.describe()} -> {out_label}" + (f", {lesions}" if lesions is not None else "")
    )


# ----------------------------------------------------------------------------- evaluate


def _case_name(image: str) -> str:
    name = Path(image).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def read_decathlon_split(path: Path, split: str) -> list[dict[str, str]]:
    """The ``split`` list of a decathlon JSON: ``[{"image": ..., "label": ...}, ...]``.

    Args:
        path: the JSON file.
        split: the key, e.g. ``"validation"`` or ``"training"``.

    Raises:
        ManifestError: unreadable JSON, missing split, or entries without image and label.
    """
    from syntumor_core.errors import ManifestError

    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: cannot read the data list ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get(split), list):
        keys = sorted(document) if isinstance(document, dict) else []
        raise ManifestError(f"{path}: no list {split!r} in the data list; keys: {keys}")
    cases = document[split]
    for position, case in enumerate(cases):
        if not (
            isinstance(case, dict) and all(isinstance(case.get(k), str) for k in ("image", "label"))
        ):
            raise ManifestError(
                f'{path}: {split}[{position}] must be {{"image": path, "label": path}}, got {case!r}'
            )
    if not cases:
        raise ManifestError(f"{path}: the {split!r} list is empty")
    names = [_case_name(case["image"]) for case in cases]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ManifestError(f"{path}: case names must be unique in {split!r}; repeated: {twice}")
    return cases


def selection_overlap(
    cases: list[dict[str, str]], selection_cases: list[dict[str, str]]
) -> list[str]:
    """Names of evaluated cases that also served to select the checkpoint (by image name).

    Args:
        cases: the evaluated entries.
        selection_cases: the entries used for checkpoint selection during training.
    """
    chosen = {_case_name(case["image"]) for case in selection_cases}
    return sorted({_case_name(case["image"]) for case in cases} & chosen)


def _warn_overlap(overlap: list[str], total: int, source: str) -> dict[str, Any]:
    if not overlap:
        return {"overlapping_cases": [], "warning": None}
    message = (
        f"{len(overlap)} of {total} evaluated cases were also used to select the checkpoint "
        f"({source}); their scores are optimistic (the original evaluation had the same flaw)"
    )
    logger.warning(message)
    typer.echo(f"warning: {message}", err=True)
    return {"overlapping_cases": overlap, "warning": message}


def _load_case(root: Path, case: dict[str, str]):
    import numpy as np

    from syntumor_core.errors import MaskError
    from syntumor_core.volume import load_label_nifti, load_volume

    image = load_volume(root / case["image"])
    label = load_label_nifti(root / case["label"])
    if label.shape != image.shape or not np.allclose(label.affine, image.affine, atol=1e-3):
        raise MaskError(
            f"{case['label']}: the label is not on the image's grid (shape {label.shape} vs "
            f"{image.shape}, or a different affine)"
        )
    return image, label


def _means(rows: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    summary = {}
    for column in METRIC_COLUMNS:
        values = np.array([float(row[column]) for row in rows])
        empty = int(np.isnan(values).sum())
        summary[column] = {
            "mean": float(np.mean(values)),
            "mean_excluding_empty": float(np.nanmean(values)) if empty < len(values) else None,
            "empty_cases": empty,
        }
    return summary


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def evaluate(
    data: Annotated[Path, typer.Option("--data", help="Decathlon JSON listing the cases.")],
    root: Annotated[Path, typer.Option("--root", help="Folder the JSON's paths start from.")],
    model: ModelOption,
    out: Annotated[Path, typer.Option("--out", help="Folder for metrics, summary, predictions.")],
    split: Annotated[
        str, typer.Option("--split", help="Which list of --data to score.")
    ] = "validation",
    selection_data: Annotated[
        Path | None,
        typer.Option(
            "--selection-data", help="Data list the checkpoint was selected on (default: --data)."
        ),
    ] = None,
    selection_split: Annotated[
        str, typer.Option("--selection-split", help="Its list used for checkpoint selection.")
    ] = "validation",
    arch: ArchOption = None,
    mode: ModeOption = "fast",
    device: DeviceOption = None,
    overlap: OverlapOption = DEFAULT_OVERLAP,
    refine_margin: RefineOption = DEFAULT_REFINE_MARGIN,
    compile: CompileOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Score a model on a data list: per-case CSV, summary JSON, predictions as NIfTI."""
    from app.cli.common import user_errors

    with user_errors():
        cases = read_decathlon_split(data, split)
        selection_file = selection_data or data
        selection = read_decathlon_split(selection_file, selection_split)
        overlap_report = _warn_overlap(
            selection_overlap(cases, selection), len(cases), f"{selection_file} [{selection_split}]"
        )
        options = _speed_options(mode, overlap, refine_margin, compile)
        predictor, checkpoint = _load_predictor(model, arch, data_dir, device=device)
        rows, detection = _score_cases(predictor, options, cases, root, out)
        _write_rows(out / "metrics.csv", rows)
        summary = {
            "data": {"file": str(data), "split": split, "root": str(root), "cases": len(cases)},
            **provenance(predictor, options, model, checkpoint),
            "scoring": {
                "empty_cases": EMPTY_CASES_NOTE,
                "liver": "label 1 only, as the original",
                "nsd_tolerance_mm": 2.0,
                "lesions": "26-connected components of label 2; radius bins in mm",
            },
            "means": _means(rows),
            "detection": detection,
            "checkpoint_selection": {
                "data": str(selection_file),
                "split": selection_split,
                **overlap_report,
            },
        }
        write_json(out / "summary.json", summary)
    means = summary["means"]
    typer.echo(
        f"{len(cases)} cases: liver Dice {means['liver_dice']['mean']:.4f}, tumor Dice "
        f"{means['tumor_dice']['mean']:.4f} (plain means; NaN if a case has neither truth nor "
        f"prediction) -> {out}"
    )


def _score_cases(
    predictor: Predictor,
    options: dict[str, Any],
    cases: list[dict[str, str]],
    root: Path,
    out: Path,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Predict, save and score every case; returns the CSV rows and the pooled detection."""
    from app.cli.common import progress_bar
    from syntumor_core.metrics import evaluate_case, lesion_detection, summarize_detection
    from syntumor_core.volume import Volume, save_nifti

    predictions = out / "predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    rows, detections = [], []
    with progress_bar(f"evaluate {len(cases)} cases") as progress:
        for index, case in enumerate(cases):
            name = _case_name(case["image"])
            image, label = _load_case(root, case)
            result = predictor.predict(
                image, progress=lambda done, i=index: progress((i + done) / len(cases)),
                **options,
            )  # fmt: skip
            predicted = result.labels.array
            save_nifti(Volume(predicted, label.affine), predictions / f"{name}.nii.gz")
            rows.append({"name": name, **evaluate_case(predicted, label.array, label.spacing)})
            detections.append(lesion_detection(predicted == 2, label.array == 2, label.spacing))
    return rows, asdict(summarize_detection(detections))
