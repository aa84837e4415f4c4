"""The machine reader beside a study's human readers (issue 16, item 5).

The lesions of the study's test cases, real arm against synthetic arm, are measured from the
cases' label maps (1 organ, 2 tumor: the convention of the study's own measurements and of the
synthesized label maps; a map whose legend names no tumor or lesion has no lesion labels) and
scored by :func:`syntumor_core.realism.reader.machine_reader_auc`.

Computing it loads every test case's volumes, which no page request should do, so it is a
command (``syntumor realism --study ID``, :func:`compute_study_machine_reader`) that stores its
result in ``<data_dir>/realism/studies/study_<id>.json``; the results page only reads that file
(:func:`stored_study_machine_reader`). A stored result counts only while the study's test
cases (and their image and label maps) are the ones it was computed on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.db.study_tables import Study
from app.db.tables import Volume
from app.realism.service import realism_folder
from app.volumes.storage import Storage

logger = logging.getLogger(__name__)

ORGAN_LABEL, TUMOR_LABEL = 1, 2
TUMOR_WORDS = ("tumor", "tumour", "lesion")
MIN_LESION_VOXELS = 27
"""Smaller lesion components (under 3×3×3 voxels) are too small for texture and shape features."""
NO_REAL_LABELS = "not available: the real arm has no lesion labels"
NO_SYNTHETIC_LABELS = "not available: the synthetic arm has no lesion labels"


def _test_cases(study: Study) -> list:
    return sorted((c for c in study.cases if c.role == "test"), key=lambda c: c.id)


def _fingerprint(study: Study) -> str:
    cases = [[c.id, c.arm.truth, c.image_id, c.label_id] for c in _test_cases(study)]
    return hashlib.sha256(json.dumps(cases).encode()).hexdigest()[:16]


def _result_path(storage: Storage, study_id: int) -> Path:
    return realism_folder(storage.root) / "studies" / f"study_{study_id}.json"


def _without_labels(study: Study, truth: str) -> bool:
    return not any(c.label_id for c in _test_cases(study) if c.arm.truth == truth)


def _unavailable(study: Study) -> str | None:
    if _without_labels(study, "real"):
        return NO_REAL_LABELS
    if _without_labels(study, "synthetic"):
        return NO_SYNTHETIC_LABELS
    return None


def stored_study_machine_reader(study: Study, storage: Storage) -> dict[str, Any]:
    """What the results page shows: ``{"state", "text", …}`` (reads one small file at most).

    States: ``"unavailable"`` (an arm has no lesion labels: ``text`` says which), ``"missing"``
    (not computed for the study's current cases: ``text`` gives the command) and ``"done"``
    (``text`` like ``machine reader AUC 0.61 [0.52, 0.70]``, plus the counts).
    """
    reason = _unavailable(study)
    if reason:
        return {"state": "unavailable", "text": reason}
    path = _result_path(storage, study.id)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        stored = None
    except (OSError, ValueError):
        logger.warning("unreadable machine-reader result %s", path)
        stored = None
    if not stored or stored.get("fingerprint") != _fingerprint(study):
        return {
            "state": "missing",
            "text": f"not computed for these cases yet: `syntumor realism --study {study.id}`",
        }
    return stored


def tumor_value(label: Volume) -> int | None:
    """The lesion value of a label map: by its legend when it has one, else 2 (None: none).

    A legend without a tumor or lesion entry (e.g. a phantom's organs, where 2 is the spleen)
    means the map has no lesion labels.
    """
    legend = (label.meta or {}).get("labels")
    if not legend:
        return TUMOR_LABEL
    for value, name in sorted(legend.items(), key=lambda item: int(item[0])):
        if any(word in str(name).lower() for word in TUMOR_WORDS):
            return int(value)
    return None


def _case_features(storage: Storage, image: Volume, label: Volume) -> list[np.ndarray]:
    from syntumor_core.realism.lesion_stats import crop_lesions
    from syntumor_core.realism.reader import lesion_features

    value = tumor_value(label)
    if value is None:
        return []
    ct, labels = storage.load(image.path), storage.load(label.path, label=True)
    crops = crop_lesions(
        np.asarray(ct.array),
        np.asarray(labels.array),
        spacing=ct.spacing,
        organ_value=ORGAN_LABEL,
        tumor_value=value,
        min_voxels=MIN_LESION_VOXELS,
    )
    return [lesion_features(crop, axial_axis=ct.axial_axis) for crop in crops]


def compute_study_machine_reader(
    session: Session, storage: Storage, study: Study, *, seed: int = 0
) -> dict[str, Any]:
    """Measure the study's test cases, score the machine reader and store the result."""
    from syntumor_core.realism.reader import machine_reader_auc

    record: dict[str, Any] = {
        "fingerprint": _fingerprint(study),
        "computed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "min_lesion_voxels": MIN_LESION_VOXELS,
    }
    features: dict[str, list[np.ndarray]] = {"real": [], "synthetic": []}
    reason = _unavailable(study)
    for case in _test_cases(study) if reason is None else []:
        image = session.get(Volume, case.image_id) if case.image_id else None
        label = session.get(Volume, case.label_id) if case.label_id else None
        if image is not None and label is not None:
            features[case.arm.truth] += _case_features(storage, image, label)
    counts = {truth: len(rows) for truth, rows in features.items()}
    if reason is None and min(counts.values()) < 2:
        short = "real" if counts["real"] < 2 else "synthetic"
        reason = (
            NO_REAL_LABELS
            if short == "real" and counts["real"] == 0
            else f"not available: the {short} arm has {counts[short]} lesion(s) of "
            f"≥ {MIN_LESION_VOXELS} voxels; the machine reader needs 2 per arm"
        )
    if reason is not None:
        record.update(state="unavailable", text=reason, n_real=counts["real"],
                      n_synthetic=counts["synthetic"])  # fmt: skip
    else:
        result = machine_reader_auc(features["real"], features["synthetic"], seed=seed)
        record.update(state="done", text=result.describe(), **result.to_dict())
    path = _result_path(storage, study.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record
