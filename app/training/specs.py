"""From an admin job's parameters to its child's command line and data files.

A job's ``params`` (see :mod:`app.training.schemas`) name a model, a data set and settings. This
module checks them against the core (:class:`syntumor_core.training.TrainingConfig` refuses what
the training would refuse), writes the data set as a decathlon JSON in the job's folder
(registered volumes: links to the stored files, label maps remapped to 0/1/2 where their legend
says so; generated phantoms with synthetic tumors for evaluation), and builds the command:
``python -m app.cli train …`` (under ``python -m torch.distributed.run`` for several GPUs) or
``python -m app.cli evaluate …``.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.db.tables import Volume
from app.volumes.storage import Storage
from syntumor_core.errors import ParameterError
from syntumor_core.volume import MAX_RESAMPLED_VOXELS, check_resampled_size

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_KINDS = ("train", "evaluate")
RUN_LOG = "output.log"
DATA_FILE = "data.json"
SELECTION_FILE = "selection.json"
EVAL_PHANTOM_SEED = 200_000
KEYS = ("image", "label")
TUMOR_WORDS = ("tumor", "tumour", "lesion", "cancer", "metasta")


def _number(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _triple_text(value: Any) -> str:
    values = value if isinstance(value, list | tuple) else [value]
    return ",".join(_number(v) for v in values)


# --- checks ---------------------------------------------------------------------------------------


def training_config(params: dict[str, Any], out_dir: str, data_file: str | None = None):
    """The core's :class:`TrainingConfig` for ``params`` (raises ParameterError if refused)."""
    from syntumor_core.training import TrainingConfig

    dataset = params["dataset"]
    phantoms = dataset.get("phantoms", 0) if dataset["source"] == "phantoms" else 0
    return TrainingConfig(
        out_dir=out_dir, arch=params["arch"], phantoms=phantoms,
        data=None if phantoms else (data_file or "data.json"),
        val_phantoms=dataset.get("val_phantoms", 0) if phantoms else 0,
        phantom_shape=tuple(dataset.get("phantom_shape", (192, 160, 120))),
        phantom_spacing=(float(dataset.get("phantom_spacing", 2.0)),) * 3,
        roi_size=(params["roi_size"],) * 3, spacing_mm=(params["spacing_mm"],) * 3,
        epochs=params["epochs"], warmup_epochs=params["warmup_epochs"],
        max_steps=params.get("max_steps"), val_every=params["val_every"], lr=params["lr"],
        batch_size=params["batch_size"], syn=params["syn"], syn_organ=params["syn_organ"],
        syn_profile=params["syn_profile"], syn_prob=params["syn_prob"],
        syn_types=params.get("syn_types"), seed=params["seed"], workers=params["workers"],
        amp=params["amp"],
    )  # fmt: skip


def read_decathlon(path: str, root: str | None, split: str) -> list[dict[str, str]]:
    """The ``split`` list of a decathlon JSON on the server, every file checked to exist."""
    file_path = Path(path)
    if not file_path.is_absolute():
        raise ParameterError(f"give the data list as an absolute path on the server, got {path!r}")
    if not file_path.is_file():
        raise ParameterError(f"data list {path} does not exist on the server")
    try:
        listing = json.loads(file_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ParameterError(f"data list {path} is not readable JSON: {error}") from None
    cases = listing.get(split) if isinstance(listing, dict) else None
    if not isinstance(cases, list) or not cases:
        keys = sorted(listing) if isinstance(listing, dict) else []
        raise ParameterError(f"data list {path} has no non-empty list {split!r} (keys: {keys})")
    base = Path(root) if root else file_path.parent
    for index, case in enumerate(cases):
        where = f"data list {path}: {split}[{index}]"
        if not (isinstance(case, dict) and all(isinstance(case.get(k), str) for k in KEYS)):
            raise ParameterError(f"{where} needs 'image' and 'label'")
        for key in KEYS:
            if not (base / case[key]).is_file():
                raise ParameterError(f"{where}: {base / case[key]} is missing")
    return cases


def check_volume_pairs(
    session: Session,
    label_ids: list[int],
    *,
    spacing_mm: float | None = None,
    max_voxels: int = MAX_RESAMPLED_VOXELS,
) -> list[tuple[Volume, Volume]]:
    """(image, label map) rows for label-map ids; refuses ids that are no image's label map,
    and (given the run's ``spacing_mm``) images whose grid would not fit ``max_voxels``."""
    pairs = []
    for label_id in label_ids:
        label = session.get(Volume, label_id)
        if label is None or label.kind != "label" or label.image_id is None:
            raise ParameterError(f"volume {label_id} is not a label map of a stored image")
        image = session.get(Volume, label.image_id)
        if image is None:
            raise ParameterError(f"the image of label map {label_id} is gone")
        if spacing_mm is not None:
            check_resampled_size(image.shape, image.spacing, spacing_mm, max_voxels=max_voxels,
                                 name=f"volume {image.id} ({image.name})")  # fmt: skip
        pairs.append((image, label))
    return pairs


def steps_planned(params: dict[str, Any], train_cases: int) -> int:
    """Optimizer steps the run will make (as the core counts them)."""
    world = max(1, int(params.get("gpus", 0)))
    per_epoch = math.ceil(math.ceil(max(train_cases, 1) / world) / params["batch_size"])
    planned = params["epochs"] * per_epoch
    return min(planned, params["max_steps"]) if params.get("max_steps") else planned


# --- data sets ----------------------------------------------------------------------------------


def label_mapping(legend: dict[str, str] | None, organ: str) -> dict[int, int] | None:
    """How a label map's values become 0 / 1 (organ) / 2 (tumor); None: use it as it is.

    Args:
        legend: the label map's ``{value: name}`` (e.g. a phantom's organs); None if unknown.
        organ: the organ that becomes label 1 (``liver``, ``pancreas``, ``kidney``).
    """
    if not legend:
        return None
    mapping: dict[int, int] = {}
    for value, name in legend.items():
        lowered = str(name).lower()
        if any(word in lowered for word in TUMOR_WORDS):
            mapping[int(value)] = 2
        elif lowered.startswith(organ):
            mapping[int(value)] = 1
    if 1 not in mapping.values():
        raise ParameterError(f"the label map has no {organ} label (its labels: {legend})")
    if all(key == value for key, value in mapping.items()) and set(mapping) == {
        int(v) for v in legend
    }:
        return None
    return mapping


def _safe_name(text: str) -> str:
    """A file-name stem from a volume's name (no extension, no odd characters)."""
    stem = re.sub(r"(\.nii(\.gz)?|\.zip|\.dcm)$", "", text.strip(), flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:60] or "volume"


def _link(target: Path, link: Path) -> str:
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        os.symlink(target, link)
    return str(link)


def _remapped(storage: Storage, label: Volume, mapping: dict[int, int], path: Path) -> str:
    import numpy as np

    from syntumor_core.volume import Volume as CoreVolume
    from syntumor_core.volume import save_nifti

    source = storage.load(label.path, label=True)
    table = np.zeros(int(max(int(source.array.max()), max(mapping))) + 1, dtype=np.uint8)
    for value, target in mapping.items():
        table[value] = target
    path.parent.mkdir(parents=True, exist_ok=True)
    save_nifti(CoreVolume(table[source.array], source.affine), path, dtype=np.uint8)
    return str(path)


def export_volume_pairs(
    session: Session, storage: Storage, label_ids: list[int], organ: str, folder: Path
) -> list[dict[str, str]]:
    """Decathlon entries (absolute paths) for stored image/label pairs, named after the volumes."""
    entries = []
    for image, label in check_volume_pairs(session, label_ids):
        stem = f"{image.id}-{_safe_name(image.name)}"
        suffix = ".nii.gz" if image.path.endswith(".gz") else ".nii"
        image_path = _link(storage.absolute(image.path), folder / f"{stem}{suffix}")
        mapping = label_mapping((label.meta or {}).get("labels"), organ)
        label_file = folder / f"{stem}_label.nii.gz"
        if mapping is None:
            label_path = _link(storage.absolute(label.path), label_file)
        elif label_file.exists():
            label_path = str(label_file)
        else:
            label_path = _remapped(storage, label, mapping, label_file)
        entries.append({"image": image_path, "label": label_path})
    return entries


def export_eval_phantoms(
    dataset: dict[str, Any], folder: Path, check_cancelled: Callable[[], None]
) -> list[dict[str, str]]:
    """Phantoms with one synthetic tumor each (types cycling), liver 1 / tumor 2, as NIfTI."""
    import numpy as np

    from syntumor_core.errors import OrganTooSmallError
    from syntumor_core.phantom import LABELS, make_phantom
    from syntumor_core.synthesis import get_organ_profile, synthesize
    from syntumor_core.volume import Volume as CoreVolume
    from syntumor_core.volume import save_nifti

    organ = "liver"
    types = list(get_organ_profile(organ).type_probabilities)
    shape = tuple(dataset["phantom_shape"])
    spacing = (float(dataset["phantom_spacing"]),) * 3
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(dataset["phantoms"]):
        check_cancelled()
        seed = EVAL_PHANTOM_SEED + index
        name = f"eval-phantom-{seed}"
        image_path, label_path = folder / f"{name}.nii.gz", folder / f"{name}_label.nii.gz"
        if not (image_path.exists() and label_path.exists()):
            phantom = make_phantom(seed=seed, shape=shape, spacing=spacing)
            liver = phantom.labels.array == LABELS[organ]
            image, label = phantom.image.array, liver.astype(np.uint8)
            try:
                tumor_type = types[index % len(types)]
                result = synthesize(image, liver, spacing=spacing, seed=seed, organ=organ,
                                    tumor_type=tumor_type, checksums=False)  # fmt: skip
                image, label = result.image, result.label.astype(np.uint8)
            except OrganTooSmallError:
                pass  # a tumor-free case: scored for specificity
            save_nifti(CoreVolume(label, phantom.image.affine), label_path, dtype=np.uint8)
            save_nifti(CoreVolume(image, phantom.image.affine), image_path, dtype=np.float32)
        entries.append({"image": str(image_path), "label": str(label_path)})
    return entries


def training_data(
    session: Session, storage: Storage, params: dict[str, Any], run_dir: Path
) -> tuple[Path | None, str | None, int]:
    """A training job's data list, the root of its paths, and its number of training cases
    (phantoms: no list; registered volumes: exported to ``run_dir/data.json``)."""
    dataset = params["dataset"]
    if dataset["source"] == "phantoms":
        return None, None, dataset["phantoms"]
    if dataset["source"] == "decathlon":
        cases = read_decathlon(dataset["path"], dataset.get("root"), "training")
        root = dataset.get("root") or str(Path(dataset["path"]).parent)
        return Path(dataset["path"]), root, len(cases)
    folder, organ = run_dir / "data", params["syn_organ"]
    training = export_volume_pairs(session, storage, dataset["train_labels"], organ, folder)
    validation = export_volume_pairs(session, storage, dataset["val_labels"], organ, folder)
    description = "registered volumes of the SynTumor database"
    data_file = write_data_list(run_dir / DATA_FILE, training, validation, description)
    return data_file, None, len(training)


def evaluation_cases(
    session: Session,
    storage: Storage,
    dataset: dict[str, Any],
    folder: Path,
    check_cancelled: Callable[[], None],
) -> list[dict[str, str]]:
    """An evaluation job's cases as decathlon entries with absolute paths."""
    if dataset["source"] == "phantoms":
        return export_eval_phantoms(dataset, folder, check_cancelled)
    if dataset["source"] == "volumes":
        return export_volume_pairs(session, storage, dataset["labels"], "liver", folder)
    root = Path(dataset.get("root") or Path(dataset["path"]).parent)
    split = dataset.get("split", "validation")
    listed = read_decathlon(dataset["path"], dataset.get("root"), split)
    return [{key: str(root / case[key]) for key in KEYS} for case in listed]


def write_data_list(path: Path, training: list, validation: list, description: str) -> Path:
    """A decathlon JSON with absolute paths (any root works)."""
    document = {
        "description": description,
        "labels": {"0": "background", "1": "organ", "2": "tumor"},
        "training": training,
        "validation": validation,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


# --- commands -----------------------------------------------------------------------------------


def train_arguments(
    params: dict[str, Any], run_dir: Path, data_file: Path | None, root: str | None = None
) -> list[str]:
    """``syntumor train`` arguments for ``params`` (``data_file``'s paths start at ``root``)."""
    dataset = params["dataset"]
    arguments = [
        "train", "--out", str(run_dir), "--arch", params["arch"],
        "--roi-size", _triple_text(params["roi_size"]),
        "--spacing", _triple_text(params["spacing_mm"]),
        "--epochs", str(params["epochs"]), "--warmup-epochs", str(params["warmup_epochs"]),
        "--val-every", str(params["val_every"]), "--lr", _number(params["lr"]),
        "--batch-size", str(params["batch_size"]), "--seed", str(params["seed"]),
        "--workers", str(params["workers"]), "--threads", str(params.get("threads", 0)),
        "--device", "cuda" if params.get("gpus", 0) else "cpu",
        "--amp" if params["amp"] else "--no-amp", "--syn" if params["syn"] else "--no-syn",
        "--syn-organ", params["syn_organ"], "--syn-profile", params["syn_profile"],
        "--syn-prob", _number(params["syn_prob"]),
    ]  # fmt: skip
    if params.get("syn_types"):
        weights = ",".join(f"{k}={_number(v)}" for k, v in params["syn_types"].items())
        arguments += ["--syn-types", weights]
    if params.get("max_steps"):
        arguments += ["--max-steps", str(params["max_steps"])]
    if dataset["source"] == "phantoms":
        arguments += ["--phantoms", str(dataset["phantoms"]),
                      "--val-phantoms", str(dataset["val_phantoms"]),
                      "--phantom-shape", _triple_text(dataset["phantom_shape"]),
                      "--phantom-spacing", _number(float(dataset["phantom_spacing"]))]  # fmt: skip
    else:
        arguments += ["--data", str(data_file), "--root", str(root or run_dir)]
    return arguments


def evaluate_arguments(
    params: dict[str, Any], run_dir: Path, data_file: Path, selection_file: Path, data_dir: Path
) -> list[str]:
    """``syntumor evaluate`` arguments for ``params``."""
    return [
        "evaluate", "--data", str(data_file), "--root", str(run_dir), "--split", "validation",
        "--selection-data", str(selection_file), "--selection-split", "validation",
        "--model", params["model"], "--out", str(run_dir), "--mode", params["mode"],
        "--overlap", _number(params["overlap"]),
        "--device", "cuda" if params.get("gpus") else "cpu",
        "--data-dir", str(data_dir),
    ]  # fmt: skip


def child_command(arguments: list[str], processes: int) -> list[str]:
    """``python -m app.cli …``, under torchrun (one process per GPU) when ``processes > 1``."""
    if processes > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", str(processes), "-m", "app.cli", *arguments]  # fmt: skip
    return [sys.executable, "-m", "app.cli", *arguments]


def child_environment(devices: list[int]) -> dict[str, str]:
    """The child's environment: only its GPUs visible (none for a CPU job), output unbuffered."""
    environment = dict(os.environ)
    environment.update({
        "CUDA_VISIBLE_DEVICES": ",".join(str(d) for d in devices),
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(
            path for path in (str(REPO_ROOT), environment.get("PYTHONPATH")) if path
        ),
    })  # fmt: skip
    return environment
