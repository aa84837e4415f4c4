"""``syntumor train``: flags, one-line errors, a tiny run, and two processes under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from app.cli import app
from app.cli.training import register
from syntumor_core.checkpoints import load_checkpoint_file
from syntumor_core.phantom import make_phantom
from syntumor_core.volume import Volume, save_nifti

register(app)
register(app)  # a second call must not add the command twice
runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]

TINY_FLAGS = ["--spacing", "6", "--roi-size", "32", "--batch-size", "1", "--workers", "0",
              "--epochs", "20", "--warmup-epochs", "1", "--val-every", "0",
              "--device", "cpu", "--threads", "1"]  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on a small shared machine, more threads mostly wait on each other."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def fold(tmp_path_factory) -> Path:
    """Two 6-mm phantoms with liver labels, listed in a decathlon JSON (no validation)."""
    folder = tmp_path_factory.mktemp("fold")
    entries = []
    for seed in (0, 1):
        phantom = make_phantom(seed, (64, 56, 48), (6.0, 6.0, 6.0))
        label = (phantom.labels.array == 1).astype(np.uint8)
        save_nifti(phantom.image, folder / f"ct{seed}.nii.gz")
        save_nifti(Volume(label, phantom.labels.affine), folder / f"label{seed}.nii.gz")
        entries.append({"image": f"ct{seed}.nii.gz", "label": f"label{seed}.nii.gz"})
    (folder / "fold.json").write_text(json.dumps({"training": entries}))
    return folder / "fold.json"


def test_train_is_registered_once_and_every_setting_is_a_flag():
    assert [c.name for c in app.registered_commands].count("train") == 1
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for flag in ("--roi-size", "--max-steps", "--epochs", "--val-every", "--lr", "--batch-size",
                 "--syn", "--no-syn", "--syn-organ", "--syn-profile", "--syn-prob", "--arch",
                 "--data", "--root", "--phantoms", "--out", "--resume", "--seed", "--workers",
                 "--amp", "--no-amp", "--device", "--warmup-epochs", "--weight-decay",
                 "--spacing", "--window", "--val-overlap", "--init"):  # fmt: skip
        assert flag in result.output, flag


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--phantoms", "2"], "exactly one source"),
        (["--roi-size", "32,32"], "--roi-size must be one or three numbers"),
        (["--window", "5"], "--window must be two numbers"),
        (["--arch", "unet3"], "did you mean 'unet'"),
        (["--lr", "-1"], "lr must be in"),
    ],
)
def test_bad_usage_is_one_line_and_exit_code_2(fold, tmp_path, extra, message):
    args = ["train", "--data", str(fold), "--out", str(tmp_path / "run"), *TINY_FLAGS, *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert result.output.strip().startswith("error:") and "Traceback" not in result.output


def test_missing_data_list_is_named(tmp_path):
    args = ["train", "--data", str(tmp_path / "none.json"), "--out", str(tmp_path / "run")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "none.json does not exist" in result.output


def test_tiny_run_from_the_command_line(fold, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(fold), "--out", str(out), *TINY_FLAGS, "--max-steps", "2",
            "--no-syn", "--seed", "4"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trained 2 steps (1 epochs)" in result.output
    described = json.loads((out / "config.json").read_text())
    assert described["args"]["syn"] is False and described["args"]["seed"] == 4
    assert described["args"]["roi_size"] == [32, 32, 32]
    checkpoint = load_checkpoint_file(out / "model_final.pt")
    assert checkpoint["step"] == 2 and checkpoint["epoch"] == 1


def _layout(checkpoint: dict) -> tuple:
    return sorted(checkpoint), list(checkpoint["state_dict"]), type(checkpoint["best_acc"])


def test_two_processes_under_torchrun_write_the_same_layout(fold, tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    common = ["--data", str(fold), *TINY_FLAGS, "--max-steps", "2", "--no-syn"]
    result = runner.invoke(app, ["train", "--out", str(single), *common])
    assert result.exit_code == 0, result.output
    # python -m app.cli runs the syntumor app (train included) under torchrun.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "app.cli", "train", "--out", str(double),
               *common]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    completed = subprocess.run(command, cwd=REPO, env=environment, capture_output=True,
                               text=True, timeout=240)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "x2" in completed.stdout  # one summary line, from rank 0
    assert completed.stdout.count("trained 2 steps") == 1
    for name in ("model.pt", "model_final.pt"):
        assert _layout(load_checkpoint_file(double / name)) == _layout(
            load_checkpoint_file(single / name)
        )
    lines = [json.loads(x) for x in (double / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]  # rank 0 alone writes the log
    described = json.loads((double / "config.json").read_text())
    assert described["result"]["world_size"] == 2
    # One epoch of two cases is one step per rank: two steps are two epochs.
    assert load_checkpoint_file(double / "model_final.pt")["epoch"] == 2
