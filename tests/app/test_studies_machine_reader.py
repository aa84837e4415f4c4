"""The machine reader beside the human readers on a study's results page (issue 16)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import _register_command_groups, app
from tests.app.studies_support import ready_study_without_images, store_case
from tests.realism_support import make_lesion_case

runner = CliRunner()
_register_command_groups()


@dataclass
class Researcher:
    username: str
    client: httpx.Client  # logged in (session cookie)


@pytest.fixture(scope="module")
def researcher(server):
    username, password = server.create_user("researcher")
    client = server.login(username, password)
    yield Researcher(username, client)
    client.close()


def _results_page(researcher, study_id: int) -> tuple[str, str]:
    answer = researcher.client.get(f"/studies/{study_id}/results")
    assert answer.status_code == 200, answer.text
    found = re.search(r'id="machine-reader" data-state="(\w+)">(.*?)</p>', answer.text, re.S)
    assert found, "the results page shows no machine reader"
    return found.group(1), re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", found.group(2))).strip()


def _labelled_study(server, researcher) -> int:
    """Two real cases (4 round lesions each) and two synthetic ones (paper, small tumors)."""
    from app.db.study_tables import Study, StudyArm, StudyCase
    from app.db.tables import User
    from syntumor_core.synthesis import synthesize
    from syntumor_core.volume import Volume

    volumes = {"real": [], "synthetic": []}
    for seed in (0, 1):
        case = make_lesion_case(seed)
        affine = np.diag([*case.spacing, 1.0])
        volumes["real"].append(
            store_case(server, Volume(case.image, affine), Volume(case.label, affine), f"r{seed}")
        )
        made = synthesize(case.image, case.label == 1, spacing=case.spacing, seed=seed,
                          tumor_type="small")  # fmt: skip
        volumes["synthetic"].append(
            store_case(server, Volume(made.image, affine), Volume(made.label, affine), f"s{seed}")
        )
    with server.session() as session:
        user = session.scalar(select(User).where(User.username == researcher.username))
        study = Study(title="Machine reader", owner_id=user.id, status="ready", seed=1, design={})
        for position, truth in enumerate(("real", "synthetic")):
            arm = StudyArm(position=position, name=truth.title(), truth=truth, source="volumes",
                           settings={})  # fmt: skip
            study.arms.append(arm)
            for image_id, label_id in volumes[truth]:
                study.cases.append(StudyCase(arm=arm, role="test", status="ready", plan={},
                                             image_id=image_id, label_id=label_id))  # fmt: skip
        session.add(study)
        session.commit()
        return study.id


def test_without_lesion_labels_in_the_real_arm_it_says_so(server, researcher):
    study_id = ready_study_without_images(server, researcher.username, 2, 2)
    state, text = _results_page(researcher, study_id)
    assert (state, text) == (
        "unavailable",
        "Machine reader: not available: the real arm has no lesion labels",
    )


def test_computed_by_the_command_and_shown_beside_the_readers(server, researcher):
    study_id = _labelled_study(server, researcher)
    state, text = _results_page(researcher, study_id)
    assert state == "missing"
    assert f"`syntumor realism --study {study_id}`" in text
    environment = {"SYNTUMOR_DATABASE_URL": server.database_url}
    result = runner.invoke(
        app,
        ["realism", "--study", str(study_id), "--data-dir", str(server.data_dir)],
        env=environment,
    )
    assert result.exit_code == 0, result.output
    line = re.fullmatch(
        rf"study {study_id}: machine reader AUC (\d\.\d\d) \[(\d\.\d\d), (\d\.\d\d)\]\n",
        result.output,
    )
    assert line, result.output
    state, text = _results_page(researcher, study_id)
    assert state == "done"
    assert text.startswith(f"Machine reader: machine reader AUC {line.group(1)} [")
    assert "8 real and" in text


def test_an_unknown_study_is_one_line(server):
    result = runner.invoke(
        app,
        ["realism", "--study", "999999", "--data-dir", str(server.data_dir)],
        env={"SYNTUMOR_DATABASE_URL": server.database_url},
    )
    assert result.exit_code == 2 and result.output.strip() == "error: no study 999999"


@pytest.mark.parametrize(
    ("legend", "expected"),
    [
        (None, 2),
        ({"1": "liver", "2": "tumor"}, 2),
        ({"1": "organ", "3": "Liver lesion"}, 3),
        ({"1": "liver", "2": "spleen", "3": "right kidney"}, None),  # a phantom's organs
    ],
)
def test_the_lesion_value_follows_the_label_maps_legend(legend, expected):
    from app.db.tables import Volume
    from app.studies.machine_reader import tumor_value

    meta = {"labels": legend} if legend else {}
    assert tumor_value(Volume(kind="label", meta=meta)) == expected
