"""From job parameters to the child's command and data: argument lists, label-map remapping,
registered volumes exported as a decathlon list, stopping a real process tree."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from app.db import make_engine, make_session_factory, upgrade_database
from app.training import specs as training_specs
from app.training.process import find_child, is_alive, launch, stop_tree
from app.volumes.service import store_core_volume
from app.volumes.storage import Storage
from syntumor_core.errors import ParameterError
from tests.app.admin_support import TINY_TRAINING

PHANTOM_LEGEND = {"1": "liver", "2": "spleen", "3": "kidney_right", "4": "kidney_left"}


def _params(**changes):
    return {**TINY_TRAINING, "gpus": 0, "seed": 0, "lr": 4e-4, "amp": True, "syn": True,
            "syn_organ": "liver", "syn_profile": "paper", "syn_prob": 0.9, "syn_types": None,
            **changes}  # fmt: skip


def test_train_arguments_carry_every_setting(tmp_path):
    params = _params(syn_types={"small": 0.5, "large": 0.5}, syn=False)
    arguments = training_specs.train_arguments(params, tmp_path, None)
    text = " ".join(arguments)
    expected_flags = ["--max-steps 20", "--phantoms 2", "--val-phantoms 1", "--roi-size 32",
                      "--phantom-shape 64,56,40", "--spacing 4.0", "--device cpu", "--no-syn",
                      "--syn-types small=0.5,large=0.5", "--batch-size 1", "--threads 1"]  # fmt: skip
    for expected in expected_flags:
        assert expected in text, expected
    command = training_specs.child_command(arguments, 1)
    assert command[:3] == [sys.executable, "-m", "app.cli"]
    distributed = training_specs.child_command(arguments, 2)
    assert distributed[1:6] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    assert training_specs.child_environment([1, 3])["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert training_specs.child_environment([])["CUDA_VISIBLE_DEVICES"] == ""


def test_the_cli_accepts_the_arguments(tmp_path):
    params = _params(syn_types={"small": 1.0})
    arguments = training_specs.train_arguments(params, tmp_path / "run", None)
    completed = subprocess.run(
        [sys.executable, "-m", "app.cli", *arguments, "--help"], capture_output=True, text=True,
        cwd=training_specs.REPO_ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "--syn-types" in completed.stdout


def test_core_checks_apply_at_submission():
    with pytest.raises(ParameterError, match="warmup_epochs must be below epochs"):
        training_specs.training_config(_params(warmup_epochs=20), "unused")
    with pytest.raises(ParameterError, match="syn_types must give some type a weight > 0"):
        training_specs.training_config(_params(syn_types={"small": 0.0}), "unused")
    config = training_specs.training_config(_params(syn_types={"small": 2, "mix": 1}), "unused")
    assert config.syn_types == {"small": 2.0, "mix": 1.0}


def test_label_mapping():
    assert training_specs.label_mapping(None, "liver") is None
    assert training_specs.label_mapping({"1": "liver", "2": "tumor"}, "liver") is None
    assert training_specs.label_mapping(PHANTOM_LEGEND, "liver") == {1: 1}
    assert training_specs.label_mapping(PHANTOM_LEGEND, "kidney") == {3: 1, 4: 1}
    assert training_specs.label_mapping({"3": "Liver", "7": "liver tumour"}, "liver") == {
        3: 1,
        7: 2,
    }
    with pytest.raises(ParameterError, match="has no pancreas label"):
        training_specs.label_mapping({"1": "liver"}, "pancreas")


def test_registered_volumes_are_exported_with_labels_remapped(tmp_path):
    from syntumor_core.volume import Volume, load_label_nifti, load_nifti

    url = f"sqlite:///{tmp_path / 'syntumor.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    storage = Storage(tmp_path / "data")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    organs = np.zeros((20, 18, 16), dtype=np.uint8)
    organs[2:8, 2:8, 2:8], organs[10:14, 10:14, 10:14] = 1, 2  # liver, spleen
    ct = np.full(organs.shape, 40.0, dtype=np.float32)
    with make_session_factory(engine)() as session:
        image = store_core_volume(
            session, storage, Volume(ct, affine), name="case one.nii.gz", source="test"
        )
        legend = {"labels": PHANTOM_LEGEND}
        label = store_core_volume(session, storage, Volume(organs, affine), name="organs",
                                  kind="label", source="test", image_id=image.id, meta=legend)  # fmt: skip
        session.commit()
        entries = training_specs.export_volume_pairs(
            session, storage, [label.id], "liver", tmp_path / "run"
        )
        with pytest.raises(ParameterError, match="volume 12345 is not a label map"):
            training_specs.check_volume_pairs(session, [12345])
    engine.dispose()
    assert len(entries) == 1
    exported_image, exported_label = entries[0]["image"], entries[0]["label"]
    assert exported_image.endswith(f"{image.id}-case_one.nii.gz")
    assert np.array_equal(load_nifti(exported_image).array, ct)
    remapped = load_label_nifti(exported_label)
    assert sorted(np.unique(remapped.array)) == [0, 1]
    assert np.array_equal(remapped.array == 1, organs == 1)
    assert np.allclose(remapped.affine, affine)
    data_list = training_specs.write_data_list(tmp_path / "run" / "data.json", entries, [], "test")
    assert json.loads(data_list.read_text())["training"] == entries


def test_stop_tree_ends_a_process_and_its_children(tmp_path):
    script = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)"
    )
    child = launch([sys.executable, "-c", script], env={"PATH": "/usr/bin:/bin"},
                   cwd=tmp_path, log_path=tmp_path / "out.log", job_id=987654)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(child_tree := _tree(child.pid)) < 2:
        time.sleep(0.1)
    assert len(child_tree) == 2
    assert find_child(child.pid, [sys.executable, "-c", script], child.started) is not None
    assert find_child(child.pid, [sys.executable, "-c", "other"], child.started) is None
    started = time.monotonic()
    stopped = stop_tree(child, job_id=987654, grace_s=2.0)
    assert time.monotonic() - started < 5
    assert sorted(stopped) == sorted(child_tree)
    assert not any(is_alive(pid) for pid in child_tree)
    assert find_child(child.pid, [sys.executable, "-c", script], child.started) is None


def _tree(pid: int) -> list[int]:
    import psutil

    root = psutil.Process(pid)
    return [root.pid, *(c.pid for c in root.children(recursive=True))]
