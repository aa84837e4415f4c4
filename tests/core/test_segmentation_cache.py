"""PredictorCache: one loaded network per (checkpoint hash, device), least recently used out."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from syntumor_core.checkpoints import save_checkpoint, sha256_of_file
from syntumor_core.errors import CheckpointError, ParameterError
from syntumor_core.models import build_model
from syntumor_core.segmentation import Predictor, PredictorCache
from syntumor_core.volume import Volume

SETTINGS = {"roi_size": 32, "spacing_mm": 8.0}


def _unet(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("unet").eval()


@pytest.fixture
def checkpoints(tmp_path):
    """Three checkpoints of different weights, and a copy of the first under another name."""
    paths = []
    for seed in range(3):
        folder = tmp_path / f"model{seed}"
        folder.mkdir()
        paths.append(save_checkpoint(folder / "model.pt", _unet(seed), arch="unet",
                                     epoch=seed, best_acc=0.0))  # fmt: skip
    copy = tmp_path / "copy" / "model.pt"
    copy.parent.mkdir()
    shutil.copyfile(paths[0], copy)
    return [*paths, copy]


@pytest.fixture
def loads(monkeypatch):
    """Counts the checkpoints the cache loads."""
    loaded = []
    original = Predictor.from_checkpoint.__func__

    def counted(cls, path, **options):
        loaded.append((str(path), options.get("device")))
        return original(cls, path, **options)

    monkeypatch.setattr(Predictor, "from_checkpoint", classmethod(counted))
    return loaded


def test_the_same_key_is_loaded_once_and_reused(checkpoints, loads):
    cache = PredictorCache(maxsize=2, **SETTINGS)
    first = cache.get(checkpoints[0], device="cpu", arch="unet")
    assert cache.get(checkpoints[0], device="cpu") is first
    assert cache.get(checkpoints[3], device="cpu") is first  # the same bytes elsewhere
    assert len(loads) == 1 and len(cache) == 1
    assert cache.keys() == [(sha256_of_file(checkpoints[0]), "cpu")]
    assert first.roi_size == (32, 32, 32) and first.checkpoint.epoch == 0  # the cache's settings


def test_another_overlap_or_mode_uses_the_loaded_predictor(checkpoints, loads):
    """Run-time options are arguments of predict, never part of the key: no second copy."""
    cache = PredictorCache(maxsize=2, **SETTINGS)
    rng = np.random.default_rng(0)
    volume = Volume(rng.normal(60, 40, (24, 24, 16)).astype(np.float32), np.diag([4, 4, 4, 1.0]))
    results = []
    for options in ({"overlap": 0.5}, {"overlap": 0.75}, {"mode": "parity", "overlap": 0.25}):
        predictor = cache.get(checkpoints[0], device="cpu")
        results.append(predictor.predict(volume, compile=False, **options))
    assert len(loads) == 1 and len(cache) == 1
    assert [r.options["overlap"] for r in results] == [0.5, 0.75, 0.25]
    assert [r.mode for r in results] == ["fast", "fast", "parity"]


def test_the_least_recently_used_predictor_is_dropped(checkpoints, loads):
    cache = PredictorCache(maxsize=2, **SETTINGS)
    first = cache.get(checkpoints[0], device="cpu")
    second = cache.get(checkpoints[1], device="cpu")
    assert cache.get(checkpoints[0], device="cpu") is first  # now the most recently used
    cache.get(checkpoints[2], device="cpu")  # drops the second, not the first
    keys = cache.keys()
    assert len(cache) == 2 and keys[-1][0] == sha256_of_file(checkpoints[2])
    assert cache.get(checkpoints[0], device="cpu") is first and len(loads) == 3
    reloaded = cache.get(checkpoints[1], device="cpu")  # loaded again: a new predictor
    assert reloaded is not second and len(loads) == 4
    assert sha256_of_file(checkpoints[2]) not in {key[0] for key in cache.keys()}


def test_the_device_is_part_of_the_key(checkpoints, loads, monkeypatch):
    cache = PredictorCache(maxsize=2, **SETTINGS)
    on_cpu = cache.get(checkpoints[0], device="cpu")
    assert cache.get(checkpoints[0], device=torch.device("cpu")) is on_cpu
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cache.get(checkpoints[0]) is on_cpu  # the default device is the CPU here
    assert cache.key(checkpoints[0], "cuda:1") == (sha256_of_file(checkpoints[0]), "cuda:1")
    assert len(loads) == 1


def test_a_changed_file_is_loaded_afresh(checkpoints, loads):
    cache = PredictorCache(maxsize=2, **SETTINGS)
    before = cache.get(checkpoints[0], device="cpu")
    save_checkpoint(checkpoints[0], _unet(7), arch="unet", epoch=7, best_acc=0.0)
    after = cache.get(checkpoints[0], device="cpu")
    assert after is not before and after.checkpoint.epoch == 7 and len(loads) == 2


def test_bad_arguments_are_refused(tmp_path):
    for maxsize in (0, -1, 1.5, True):
        with pytest.raises(ParameterError, match="maxsize must be a positive integer"):
            PredictorCache(maxsize=maxsize)
    with pytest.raises(ParameterError, match="device: pass to get"):
        PredictorCache(device="cpu")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        PredictorCache().get(tmp_path / "missing.pt", device="cpu")
