"""The memory budget of resampled grids (issue 17, item 4): one rule in the core
(:func:`syntumor_core.volume.check_resampled_size`), used at upload, at job start and by the CLI;
complex voxels refused by the CLI as by the upload."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from app.cli.segmentation import register
from syntumor_core.errors import VolumeError
from syntumor_core.volume import (
    MAX_RESAMPLED_VOXELS,
    check_resampled_size,
    load_nifti,
    resampled_shape,
)
from tests.app.api_support import assert_error, ct_array, nifti_bytes, volume_count
from tests.live_server import LiveServer

runner = CliRunner()
register(cli)  # what `syntumor` does at start (a second call changes nothing)
BIG = (
    "shape (64, 64, 64) at (20.0, 20.0, 20.0) mm resampled to the 1 mm grid would be "
    "(1280, 1280, 1280) = 2,097,152,000 voxels (7.8 GiB as float32), over the budget of "
    "268,435,456 voxels"
)
# The demo model runs on a 1.5 mm grid (models/demo/config.json): what segmenting with it needs.
BIG_DEMO = (
    "shape (64, 64, 64) at (20.0, 20.0, 20.0) mm resampled to the 1.5 mm grid would be "
    "(854, 854, 854) = 622,835,864 voxels (2.3 GiB as float32), over the budget of "
    "268,435,456 voxels"
)
HINT = "; crop or downsample the volume, or ask an admin to raise SYNTUMOR_MAX_VOXELS"


def _nifti(path, array, spacing=(20.0, 20.0, 20.0)):
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), path)
    return path


def test_the_resampled_shape_is_counted_at_the_finest_target_spacing():
    assert resampled_shape((64, 64, 64), (20, 20, 20), 1.0) == (1280, 1280, 1280)
    assert resampled_shape((512, 512, 100), (0.7, 0.7, 5.0), (1.0, 1.0, 2.0)) == (359, 359, 500)
    assert check_resampled_size((512, 512, 300), (0.8, 0.8, 1.0), 1.0) == (410, 410, 300)
    assert MAX_RESAMPLED_VOXELS == 2**28


def test_a_grid_over_the_budget_is_refused_with_the_numbers():
    with pytest.raises(VolumeError) as raised:
        check_resampled_size((64, 64, 64), (20.0, 20.0, 20.0), (1.0, 1.0, 1.0), name="ct")
    assert str(raised.value) == f"ct: {BIG}"


def test_complex_voxels_are_refused_by_the_core_loader(tmp_path):
    path = _nifti(tmp_path / "complex.nii.gz", np.ones((8, 8, 8), np.complex64), (1, 1, 1))
    with pytest.raises(VolumeError, match="unsupported NIfTI voxel type complex64; use real"):
        load_nifti(path)


def test_the_cli_refuses_an_absurd_spacing_in_one_line(tmp_path):
    image = _nifti(tmp_path / "big.nii.gz", ct_array(1, (64, 64, 64)).astype(np.int16))
    out = tmp_path / "labels.nii.gz"
    result = runner.invoke(cli, ["segment", "--image", str(image), "--model", "demo",
                                 "--out-label", str(out), "--data-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: image to segment: {BIG_DEMO}"]
    assert not out.exists()


def test_the_cli_refuses_complex_voxels_in_one_line(tmp_path):
    image = _nifti(tmp_path / "complex.nii.gz", np.ones((16, 16, 16), np.complex64), (1, 1, 1))
    result = runner.invoke(cli, ["segment", "--image", str(image), "--model", "demo",
                                 "--out-label", str(tmp_path / "l.nii.gz")])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"error: {image}: unsupported NIfTI voxel type complex64; use real numbers"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live = LiveServer(tmp_path_factory.mktemp("budget")).start()
    yield live
    live.close()


def test_an_upload_over_the_budget_is_refused_and_nothing_stays(server):
    with server.token_client("researcher") as client:
        before = volume_count(server)
        data = nifti_bytes(ct_array(2, (64, 64, 64)), spacing=(20.0, 20.0, 20.0))
        answer = client.post("/api/v1/volumes", params={"name": "big.nii.gz"}, content=data)
        assert_error(answer, 422, f"big.nii.gz: {BIG}{HINT}")
        assert volume_count(server) == before
        assert list((server.data_dir / "tmp").iterdir()) == []
        assert not list((server.data_dir / "volumes").rglob("*.nii*"))


def test_a_job_over_the_budget_fails_at_start_with_the_numbers(server):
    from app.db.tables import Volume

    with server.token_client("researcher") as client:
        image = client.post("/api/v1/volumes", params={"name": "ct.nii.gz"},
                            content=nifti_bytes(ct_array(3, (64, 64, 64)))).json()  # fmt: skip
        with server.session() as session:  # as if the budget had been lowered since
            session.get(Volume, image["id"]).spacing = [20.0, 20.0, 20.0]
            session.commit()
        answer = client.post("/api/v1/segmentations", json={"image_id": image["id"]})
        assert answer.status_code == 202, answer.text
        job = server.wait_for_job(client, answer.json()["job"]["id"], timeout=120)
    assert job["status"] == "failed"
    assert job["error"] == f"ct.nii.gz: {BIG_DEMO}{HINT}"


def test_a_training_run_whose_grid_is_over_the_budget_is_refused(server):
    from tests.app.admin_support import TINY_TRAINING, admin_token, bearer

    with bearer(server, admin_token(server)) as admin:
        image = admin.post("/api/v1/volumes", params={"name": "train.nii.gz"},
                           content=nifti_bytes(ct_array(4, (64, 64, 64)))).json()  # fmt: skip
        labels = (ct_array(4, (64, 64, 64)) > 0).astype(np.uint8)
        label = admin.post("/api/v1/volumes",
                           params={"name": "l.nii.gz", "kind": "label", "image_id": image["id"]},
                           content=nifti_bytes(labels)).json()  # fmt: skip
        body = {**TINY_TRAINING, "spacing_mm": 0.1,
                "dataset": {"source": "volumes", "train_labels": [label["id"]]}}  # fmt: skip
        answer = admin.post("/api/v1/admin/training-jobs", json=body)
    assert_error(answer, 422, f"volume {image['id']} (train.nii.gz): shape (64, 64, 64) at "
                 "(2.0, 2.0, 2.5) mm resampled to the 0.1 mm grid would be (1280, 1280, 1600) "
                 "= 2,621,440,000 voxels (9.8 GiB as float32), over the budget of 268,435,456 "
                 "voxels")  # fmt: skip


def test_the_train_cli_refuses_grids_over_the_budget(tmp_path):
    import json

    from app.cli.training import register as register_train

    register_train(cli)
    phantoms = runner.invoke(cli, ["train", "--out", str(tmp_path / "run"), "--phantoms", "2",
                                   "--phantom-spacing", "20", "--spacing", "1"])  # fmt: skip
    assert phantoms.exit_code == 2, phantoms.output
    assert phantoms.output.strip() == (
        "error: a phantom: shape (192, 160, 120) at (20.0, 20.0, 20.0) mm resampled to the 1 mm "
        "grid would be (3840, 3200, 2400) = 29,491,200,000 voxels (109.9 GiB as float32), over "
        "the budget of 268,435,456 voxels"
    )
    image = _nifti(tmp_path / "big.nii.gz", ct_array(1, (64, 64, 64)).astype(np.int16))
    label = _nifti(tmp_path / "big_label.nii.gz", np.zeros((64, 64, 64), np.uint8))
    listing = tmp_path / "data.json"
    pairs = [{"image": image.name, "label": label.name}]
    listing.write_text(json.dumps({"training": pairs, "validation": pairs}))
    files = runner.invoke(cli, ["train", "--out", str(tmp_path / "run2"), "--data", str(listing),
                                "--epochs", "2", "--warmup-epochs", "0"])  # fmt: skip
    assert files.exit_code == 2, files.output
    assert files.output.strip() == f"error: {image}: {BIG}"
