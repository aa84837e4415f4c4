"""What finished admin jobs leave: a registered model with its model card, evaluation results.

A trained checkpoint is registered with :func:`app.registry.catalog.add` (it lands in
``<data_dir>/models/<name>/`` and becomes selectable for segmentation and evaluation); beside it
go ``MODEL_CARD.md`` (configuration, data, metrics, files) and ``training.json`` (the run's
``config.json``, its validation history and the cases that selected the checkpoint).
"""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.registry.catalog import ModelRegistryError, add, all_entries, check_model_name

MODEL_CARD = "MODEL_CARD.md"
TRAINING_RECORD = "training.json"
MAX_RESULT_CASES = 1000
SIZE_BIN_LABELS = ("< 5 mm", "5–10 mm", "10–15 mm", "15–20 mm", "≥ 20 mm")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def validation_records(run_dir: Path) -> list[dict[str, Any]]:
    """The validation lines of a run's ``metrics.jsonl``."""
    records = []
    try:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return records
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "validation":
            records.append(record)
    return records


def free_model_name(wanted: str, data_dir: Path, job_id: int) -> str:
    """``wanted`` if no model has that name yet, else ``wanted-<job id>``."""
    taken = set(all_entries(data_dir))
    if wanted not in taken:
        return wanted
    return check_model_name(f"{wanted[: 63 - len(str(job_id))]}-{job_id}")


def tumors_kind(params: dict[str, Any]) -> str:
    """What the model learnt tumors from, for the registry."""
    if params["dataset"]["source"] == "phantoms":
        return "synthetic" if params["syn"] else "unknown"
    return "mixed" if params["syn"] else "real"


def _table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| setting | value |", "| --- | --- |"]
    lines += [f"| {name} | `{json.dumps(value)}` |" for name, value in rows]
    return "\n".join(lines)


def model_card(name: str, job: dict[str, Any], config: dict[str, Any], validations: list) -> str:
    """The model card (Markdown) of a model trained by an admin job."""
    result = config.get("result") or {}
    args = config.get("args") or {}
    data = config.get("training_data") or {}
    last = validations[-1] if validations else None
    score = result.get("best_score")
    lines = [
        f"# Model card: `{name}`",
        "",
        f"Trained by SynTumor admin job {job['id']} (started by {job['owner']}, finished "
        f"{job['finished']}). Research software: not for clinical use.",
        "",
        "## Model",
        f"- architecture: `{config.get('arch')}`; input 1 channel (CT window "
        f"{config.get('window_hu')} HU → [0, 1]), output 3 classes {config.get('labels')}",
        f"- preprocessing: RAS, spacing {config.get('spacing_mm')} mm, crop / window "
        f"{config.get('roi_size')} voxels",
        f"- checkpoint: `model.pt`, sha256 `{config.get('sha256')}`",
        "",
        "## Data",
        *[f"- {key}: `{json.dumps(value)}`" for key, value in data.items()],
        "",
        "## Training configuration",
        _table(sorted(args.items())),
        "",
        "## Metrics",
        f"- steps: {result.get('steps')}, epochs: {result.get('epochs')}, wall time: "
        f"{result.get('seconds', 0):.0f} s on {result.get('device')} × {result.get('world_size')}",
        f"- last training loss: {result.get('last_loss')}",
        f"- best validation score (mean of organ and tumor Dice): {score} at step "
        f"{result.get('best_step')}",
    ]
    if last is not None:
        lines.append(
            f"- last validation (step {last.get('step')}): organ Dice {last.get('liver_dice')}, "
            f"tumor Dice {last.get('tumor_dice')} on {len(last.get('cases') or [])} case(s)"
        )
    lines += ["", f"Hardware: {config.get('hardware')}; software: {config.get('software')}.", ""]
    return "\n".join(lines)


def register_trained_model(
    params: dict[str, Any], run_dir: Path, data_dir: Path, job: dict[str, Any]
) -> dict[str, Any]:
    """Register ``run_dir/model.pt`` as a user model; write its card and training record.

    Args:
        params: the job's parameters.
        run_dir: the training folder (``model.pt``, ``config.json``, ``metrics.jsonl``).
        data_dir: the data folder holding the user registry.
        job: ``id``, ``owner`` and ``finished`` of the job, for the card.

    Returns:
        ``name``, ``arch``, ``tumors``, ``card`` (Markdown) and ``folder``.
    """
    config = read_json(run_dir / "config.json") or {}
    validations = validation_records(run_dir)
    name = free_model_name(params.get("model_name") or f"trained-{job['id']}", data_dir, job["id"])
    result = config.get("result") or {}
    score = result.get("best_score")
    summary = f"best Dice {score:.3f}" if isinstance(score, float) else "no validation"
    description = (
        f"Trained by admin job {job['id']}: {params['arch']} on {params['dataset']['source']}, "
        f"{result.get('steps')} steps, {summary}"
    )
    try:
        entry = add(run_dir / "model.pt", params["arch"], name, data_dir,
                    tumors=tumors_kind(params), description=description)  # fmt: skip
    except ModelRegistryError:  # taken in the meantime
        name = free_model_name(f"{name}-{job['id']}", data_dir, job["id"])
        entry = add(run_dir / "model.pt", params["arch"], name, data_dir,
                    tumors=tumors_kind(params), description=description)  # fmt: skip
    folder = Path(data_dir) / "models" / entry.name
    card = model_card(entry.name, job, config, validations)
    (folder / MODEL_CARD).write_text(card, encoding="utf-8")
    selection = (validations[-1].get("cases") if validations else None) or []
    record = {
        "job_id": job["id"],
        "params": params,
        "config": config,
        "validations": validations,
        "selection_cases": [case.get("name") for case in selection],
    }
    (folder / TRAINING_RECORD).write_text(
        json.dumps(_finite(record), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return {"name": entry.name, "arch": entry.arch, "tumors": entry.tumors, "card": card,
            "folder": str(folder)}  # fmt: skip


def selection_cases(model: str, data_dir: Path) -> list[str] | None:
    """Names of the cases that selected a model's checkpoint, when an admin job trained it."""
    record = read_json(Path(data_dir) / "models" / model / TRAINING_RECORD)
    if record is None:
        return None
    return [str(name) for name in record.get("selection_cases") or []]


def evaluation_result(run_dir: Path) -> dict[str, Any]:
    """The summary and per-case rows ``syntumor evaluate`` wrote, for the job's result."""
    summary = read_json(run_dir / "summary.json")
    if summary is None:
        raise FileNotFoundError(f"{run_dir / 'summary.json'} is missing or unreadable")
    with (run_dir / "metrics.csv").open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    cases = [
        {key: (value if key == "name" else _float(value)) for key, value in row.items()}
        for row in rows[:MAX_RESULT_CASES]
    ]
    return _finite({
        "means": summary.get("means"),
        "detection": summary.get("detection"),
        "size_bins": list(SIZE_BIN_LABELS),
        "checkpoint_selection": summary.get("checkpoint_selection"),
        "model": summary.get("model"),
        "checkpoint_sha256": summary.get("sha256"),
        "cases": cases,
        "case_count": len(rows),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    })  # fmt: skip


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None
