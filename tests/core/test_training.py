"""Training loop: settings, schedule, loss, transforms, outputs and exact resume (tiny CPU runs)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from monai import transforms as mt

from syntumor_core.checkpoints import load_checkpoint_file, load_model
from syntumor_core.errors import CheckpointError, ParameterError, VolumeError
from syntumor_core.phantom import make_phantom
from syntumor_core.training import TrainingConfig, train
from syntumor_core.training_config import (
    build_loss,
    build_optimizer,
    build_scheduler,
    sha256_of,
    warmup_cosine_factor,
)
from syntumor_core.training_data import train_transforms
from syntumor_core.transforms import RandTumorSynthesisd
from syntumor_core.volume import Volume, save_nifti

# Tiny but real: 6-mm phantoms, no resampling, 32³ crops, one crop per step.
TINY = {
    "spacing_mm": (6.0, 6.0, 6.0),
    "roi_size": (32, 32, 32),
    "batch_size": 1,
    "workers": 0,
    "epochs": 20,
    "warmup_epochs": 1,
    "val_every": 0,
    "device": "cpu",
}


def make_fold(folder: Path, seeds=(0, 1), validation_seeds=(), label_value: int = 1) -> Path:
    """Phantom CTs and liver labels as NIfTI files, listed in a decathlon JSON."""
    folder.mkdir(parents=True, exist_ok=True)

    def entry(seed: int) -> dict:
        phantom = make_phantom(seed, (64, 56, 48), (6.0, 6.0, 6.0))
        label = (phantom.labels.array == 1).astype(np.uint8) * np.uint8(label_value)
        save_nifti(phantom.image, folder / f"ct{seed}.nii.gz")
        save_nifti(Volume(label, phantom.labels.affine), folder / f"label{seed}.nii.gz")
        return {"image": f"ct{seed}.nii.gz", "label": f"label{seed}.nii.gz"}

    listing = {
        "training": [entry(seed) for seed in seeds],
        "validation": [entry(seed) for seed in validation_seeds],
        "labels": {"0": "background", "1": "liver", "2": "tumor"},
    }
    (folder / "fold.json").write_text(json.dumps(listing))
    return folder / "fold.json"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on a small shared machine, more threads mostly wait on each other."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def fold(tmp_path_factory) -> Path:
    return make_fold(tmp_path_factory.mktemp("fold"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"phantoms": 0, "data": None}, "exactly one source"),
        ({"phantoms": 2, "data": "fold.json"}, "exactly one source"),
        ({"roi_size": (8, 8, 8)}, "roi_size must be at least 16"),
        ({"roi_size": (32, 32)}, "roi_size must have 3 values"),
        ({"arch": "unett"}, "did you mean 'unet'"),
        ({"arch": "swin_unetrv2_tiny", "roi_size": (48, 48, 48)}, "divisible by 32"),
        ({"warmup_epochs": 100, "epochs": 50}, "warmup_epochs must be below epochs"),
        ({"lr": 0.0}, "lr must be in"),
        ({"syn_prob": 1.5}, "syn_prob must be in"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"max_steps": 0}, "max_steps must be a positive integer"),
        ({"syn_organ": "brain"}, "brain"),
        ({"resume": "a.pt", "init": "b.pt"}, "not both"),
    ],
)
def test_config_rejects_bad_settings(changes, message):
    settings = {"out_dir": "unused", "phantoms": 2, **changes}
    with pytest.raises(ParameterError, match=message):
        TrainingConfig(**settings)


def test_config_defaults_are_the_published_recipe():
    config = TrainingConfig(out_dir="unused", phantoms=1)
    assert config.roi_size == (96, 96, 96) and config.spacing_mm == (1.0, 1.0, 1.0)
    assert config.window_hu == (-21.0, 189.0)
    assert (config.lr, config.weight_decay, config.batch_size) == (4e-4, 1e-5, 2)
    assert (config.warmup_epochs, config.epochs, config.val_every) == (100, 4000, 200)
    assert (config.syn, config.syn_prob, config.val_overlap) == (True, 0.9, 0.5)


def test_schedule_warms_up_linearly_then_follows_a_cosine_to_zero():
    warmup, epochs = 10, 110
    factors = [warmup_cosine_factor(e, warmup, epochs) for e in range(epochs + 1)]
    assert factors[0] == 0.0 and factors[warmup - 1] == pytest.approx(1.0)
    assert np.allclose(np.diff(factors[:warmup]), 1.0 / (warmup - 1))
    assert factors[warmup] == pytest.approx(1.0)
    assert np.all(np.diff(factors[warmup:]) <= 1e-12)
    assert factors[warmup + 50] == pytest.approx(0.5)  # half way down the cosine
    assert factors[epochs] == pytest.approx(0.0, abs=1e-12)


def test_scheduler_sets_the_optimizer_learning_rate_per_epoch():
    config = TrainingConfig(out_dir="unused", phantoms=1, lr=1e-3, warmup_epochs=3, epochs=9)
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["weight_decay"] == config.weight_decay
    seen = []
    for _ in range(9):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [1e-3 * warmup_cosine_factor(e, 3, 9) for e in range(9)]
    assert np.allclose(seen, expected)


def test_loss_is_dice_plus_cross_entropy_with_squared_prediction():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 4, 3, generator=generator)
    target = torch.randint(0, 3, (2, 1, 5, 4, 3), generator=generator)
    probabilities = torch.softmax(logits, dim=1)
    one_hot = torch.nn.functional.one_hot(target[:, 0], 3).permute(0, 4, 1, 2, 3).float()
    axes = (2, 3, 4)
    intersection = (probabilities * one_hot).sum(axes)
    denominator = (probabilities**2).sum(axes) + (one_hot**2).sum(axes)
    dice_loss = (1.0 - 2.0 * intersection / (denominator + 1e-6)).mean()
    cross_entropy = torch.nn.functional.cross_entropy(logits, target[:, 0])
    assert build_loss()(logits, target).item() == pytest.approx(
        (dice_loss + cross_entropy).item(), rel=1e-5
    )


def test_training_transforms_follow_the_recipe(fold):
    config = TrainingConfig(out_dir="unused", data=str(fold), **TINY)
    steps = train_transforms(config, "files").transforms
    kinds = [type(step) for step in steps]
    synthesis = steps[kinds.index(RandTumorSynthesisd)]
    assert synthesis.prob == 0.9 and synthesis.profile == "paper"
    assert kinds.index(RandTumorSynthesisd) < kinds.index(mt.ScaleIntensityRanged)
    assert kinds[-6:] == [mt.RandFlipd] * 3 + [mt.RandRotate90d, mt.RandScaleIntensityd,
                                                mt.RandShiftIntensityd]  # fmt: skip
    assert [steps[i].prob for i in range(len(steps) - 6, len(steps))] == [0.2] * 4 + [0.15] * 2
    crop = steps[kinds.index(mt.RandCropByPosNegLabeld)].cropper
    assert (crop.pos_ratio, crop.num_samples) == (0.5, 1)
    without = train_transforms(replace(config, syn=False), "files").transforms
    assert RandTumorSynthesisd not in [type(step) for step in without]

    pipeline = train_transforms(config, "files")
    pipeline.set_random_state(seed=3)
    listing = json.loads(fold.read_text())["training"][0]
    samples = pipeline({key: str(fold.parent / listing[key]) for key in ("image", "label")})
    assert len(samples) == 1
    image, label = samples[0]["image"], samples[0]["label"]
    assert tuple(image.shape) == (1, 32, 32, 32) and tuple(label.shape) == (1, 32, 32, 32)
    assert set(torch.unique(label).tolist()) <= {0.0, 1.0, 2.0}
    assert -0.2 <= float(image.min()) and float(image.max()) <= 1.25  # [0, 1] ± scale/shift


def test_tiny_phantom_run_writes_the_published_layout(tmp_path):
    config = TrainingConfig(
        out_dir=str(tmp_path / "run"), phantoms=2, val_phantoms=1,
        phantom_shape=(64, 56, 48), phantom_spacing=(6.0, 6.0, 6.0),
        **{**TINY, "val_every": 1}, max_steps=3,
    )  # fmt: skip
    reports = []
    result = train(config, progress=reports.append)
    run = Path(result.out_dir)
    assert result.steps == 3 and result.epochs == 1  # 2 steps per epoch: stopped mid-epoch 1
    assert {p.name for p in run.iterdir()} >= {"model.pt", "model_final.pt", "metrics.jsonl",
                                               "config.json"}  # fmt: skip

    best = load_checkpoint_file(run / "model.pt")
    assert isinstance(best["best_acc"], float) and isinstance(best["epoch"], int)
    assert not any(key.startswith("module.") for key in best["state_dict"])
    assert "optimizer" not in best
    model, info = load_model(run / "model.pt")
    assert info.arch == "unet" and info.best_acc == pytest.approx(result.best_score)
    final = load_checkpoint_file(run / "model_final.pt")
    assert {"optimizer", "scheduler", "step", "epoch_step"} <= set(final)
    assert (final["step"], final["epoch"], final["epoch_step"]) == (3, 1, 1)

    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if line["event"] == "train"]
    assert [line["step"] for line in steps] == [1, 2, 3]
    assert all({"epoch", "loss", "lr", "seconds"} <= set(line) for line in steps)
    assert steps[0]["lr"] == 0.0 and steps[2]["lr"] == pytest.approx(config.lr)  # warm-up
    validations = [line for line in lines if line["event"] == "validation"]
    assert [v["step"] for v in validations] == [2, 3]  # after epoch 0, and at the end
    assert all(0.0 <= v["liver_dice"] <= 1.0 and 0.0 <= v["tumor_dice"] <= 1.0 for v in validations)

    described = json.loads((run / "config.json").read_text())
    assert described["sha256"] == sha256_of(run / "model.pt")
    assert described["arch"] == "unet" and described["window_hu"] == [-21.0, 189.0]
    assert described["spacing_mm"] == [6.0, 6.0, 6.0] and described["status"] == "finished"
    assert described["labels"] == {"0": "background", "1": "liver", "2": "tumor"}
    assert described["args"]["max_steps"] == 3 and described["result"]["steps"] == 3

    fractions = [r.fraction for r in reports if r.message == "training"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(r.message.startswith("validation") for r in reports)
    assert sum(p.numel() for p in model.parameters()) == 4_807_482


def test_resumed_run_ends_where_an_uninterrupted_run_ends(fold, tmp_path):
    base = TrainingConfig(out_dir=str(tmp_path / "whole"), data=str(fold), **TINY, max_steps=6)
    whole = train(base)
    first = train(replace(base, out_dir=str(tmp_path / "split"), max_steps=3))
    assert (first.steps, first.epochs) == (3, 1)  # stopped in the middle of epoch 1
    resumed = train(replace(base, out_dir=str(tmp_path / "split"),
                            resume=first.final_checkpoint))  # fmt: skip
    assert (resumed.steps, resumed.epochs) == (whole.steps, whole.epochs) == (6, 3)
    assert resumed.last_loss == whole.last_loss
    expected = load_checkpoint_file(whole.final_checkpoint)
    found = load_checkpoint_file(resumed.final_checkpoint)
    for key, tensor in expected["state_dict"].items():
        assert torch.equal(tensor, found["state_dict"][key]), key
    assert found["scheduler"]["last_epoch"] == expected["scheduler"]["last_epoch"] == 3
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]


def test_resume_needs_a_file_with_training_state(fold, tmp_path):
    config = TrainingConfig(out_dir=str(tmp_path / "a"), data=str(fold), **TINY, max_steps=1)
    result = train(config)
    with pytest.raises(CheckpointError, match="lacks optimizer"):
        train(replace(config, out_dir=str(tmp_path / "b"), resume=result.best_checkpoint))
    with pytest.raises(CheckpointError, match="trained as 'unet'"):
        train(replace(config, out_dir=str(tmp_path / "c"), arch="swin_unetrv2_tiny",
                      resume=result.final_checkpoint))  # fmt: skip


def test_labels_outside_the_label_map_are_refused(tmp_path):
    bad = make_fold(tmp_path / "bad", seeds=(0,), label_value=5)
    with pytest.raises(VolumeError, match=r"label0\.nii\.gz holds values \[5\]"):
        train(TrainingConfig(out_dir=str(tmp_path / "run"), data=str(bad), **TINY, max_steps=1))


def test_missing_files_in_the_data_list_are_named(tmp_path):
    listing = {"training": [{"image": "nope.nii.gz", "label": "nope_label.nii.gz"}]}
    (tmp_path / "fold.json").write_text(json.dumps(listing))
    with pytest.raises(ParameterError, match=r"training\[0\] file .*nope\.nii\.gz does not exist"):
        train(TrainingConfig(out_dir=str(tmp_path / "run"), data=str(tmp_path / "fold.json")))
    (tmp_path / "empty.json").write_text(json.dumps({"training": []}))
    with pytest.raises(ParameterError, match="no training cases"):
        train(TrainingConfig(out_dir=str(tmp_path / "run"), data=str(tmp_path / "empty.json")))


def test_amp_is_ignored_on_the_cpu(fold, tmp_path):
    result = train(TrainingConfig(out_dir=str(tmp_path / "run"), data=str(fold), **TINY,
                                  max_steps=1, amp=True))  # fmt: skip
    assert result.device == "cpu" and math.isfinite(result.last_loss)
    assert "scaler" not in load_checkpoint_file(result.final_checkpoint)


def test_init_starts_from_given_weights_at_epoch_zero(fold, tmp_path):
    donor = train(TrainingConfig(out_dir=str(tmp_path / "donor"), data=str(fold), **TINY,
                                 max_steps=3, seed=1))  # fmt: skip
    # Epoch 0 of the warm-up has learning rate 0: AdamW leaves the weights as they were.
    result = train(TrainingConfig(out_dir=str(tmp_path / "run"), data=str(fold), **TINY,
                                  max_steps=1, init=donor.best_checkpoint))  # fmt: skip
    assert (result.steps, result.epochs) == (1, 0)
    start = load_checkpoint_file(donor.best_checkpoint)["state_dict"]
    after = load_checkpoint_file(result.final_checkpoint)["state_dict"]
    assert all(torch.equal(start[key], after[key]) for key in start)


def test_initial_weights_follow_the_seed_and_leave_torch_random_state_alone(fold, tmp_path):
    before = torch.random.get_rng_state()
    runs = [train(TrainingConfig(out_dir=str(tmp_path / f"run{i}"), data=str(fold), **TINY,
                                 max_steps=1, seed=seed)) for i, seed in enumerate((5, 5, 6))]  # fmt: skip
    assert torch.equal(torch.random.get_rng_state(), before)
    weights = [load_checkpoint_file(r.final_checkpoint)["state_dict"] for r in runs]
    key = "model.0.conv.unit0.conv.weight"
    assert torch.equal(weights[0][key], weights[1][key])
    assert not torch.equal(weights[0][key], weights[2][key])
