"""Settings, results and the optimisation recipe of :mod:`syntumor_core.training`.

:class:`TrainingConfig` holds every setting of a run with the published recipe as defaults and
checks them when built; :func:`build_loss`, :func:`build_optimizer` and :func:`build_scheduler`
make the loss, AdamW and the warm-up + cosine schedule; :func:`write_run_config` writes the
``config.json`` that describes a trained model (architecture, spacing, intensity window, label
map, checkpoint sha256, training data and settings).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import platform
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.losses import DiceCELoss
from torch import nn

from syntumor_core.errors import ParameterError
from syntumor_core.models import ARCHITECTURES
from syntumor_core.synthesis.config import check_profile_name
from syntumor_core.synthesis.organs import get_organ_profile
from syntumor_core.volume import check_resampled_size

BEST_CHECKPOINT = "model.pt"
FINAL_CHECKPOINT = "model_final.pt"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"

# Phantom label names that make up each organ the synthesis knows.
PHANTOM_ORGAN_LABELS: dict[str, tuple[str, ...]] = {
    "liver": ("liver",),
    "pancreas": ("pancreas",),
    "kidney": ("kidney_right", "kidney_left"),
}


def _triple(name: str, value, cast) -> tuple:
    try:
        values = tuple(cast(item) for item in value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be three numbers, got {value!r}") from None
    if len(values) != 3:
        raise ParameterError(f"{name} must have 3 values (one per axis), got {value!r}")
    return values


def check_tumor_types(organ: str, probabilities: Mapping[str, float]) -> dict[str, float]:
    """Tumor-type probabilities as a plain dict, refusing unknown names and bad values.

    Args:
        organ: the organ profile whose types the names must be.
        probabilities: ``{type name: weight}``; weights >= 0, not all 0 (they are normalised
            where they are used).
    """
    profile = get_organ_profile(organ)
    checked = {}
    for name, value in dict(probabilities).items():
        profile.tumor_type(str(name))
        weight = float(value)
        if not (math.isfinite(weight) and weight >= 0):
            raise ParameterError(f"syn_types[{name!r}] must be a number >= 0, got {value!r}")
        checked[str(name)] = weight
    if not checked or sum(checked.values()) <= 0:
        raise ParameterError(f"syn_types must give some type a weight > 0, got {probabilities!r}")
    return checked


def _check_arch(arch: str) -> None:
    """Refuse an unknown architecture name, suggesting the closest known one."""
    if arch in ARCHITECTURES:
        return
    close = difflib.get_close_matches(str(arch), ARCHITECTURES, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ParameterError(
        f"unknown architecture {arch!r}: must be one of {', '.join(ARCHITECTURES)}{hint}"
    )


@dataclass(frozen=True)
class TrainingConfig:
    """Every setting of a training run; the defaults are the published recipe.

    Args:
        out_dir: folder for checkpoints, ``metrics.jsonl`` and ``config.json``.
        arch: network, one of :data:`syntumor_core.models.ARCHITECTURES`.
        data: decathlon JSON (``training`` / ``validation`` lists of image/label paths) or None.
        root: folder the JSON's relative paths start from (default: the JSON's folder).
        phantoms: instead of ``data``: train on this many procedural phantoms (seeds
            ``seed`` .. ``seed + phantoms - 1``), organ label 1, no tumors.
        val_phantoms: held-out phantoms (seeds from ``seed + 100000``) for validation, each
            with synthetic tumors placed once (fixed by its seed).
        phantom_shape: voxels of a generated phantom (x, y, z).
        phantom_spacing: voxel size of a generated phantom, mm.
        phantom_margin_mm: crop generated phantoms to the organ's box grown by this margin
            (smaller volumes train faster); None keeps the whole field of view.
        roi_size: training crop and sliding-window size, voxels (96³ published).
        spacing_mm: voxel size the data are resampled to (1 mm published).
        window_hu: HU range mapped to [0, 1] (clipped).
        epochs: epochs in all (the cosine reaches 0 here).
        warmup_epochs: epochs of linear warm-up from 0 to ``lr``.
        max_steps: stop after this many optimizer steps in all (None: run all epochs).
        val_every: validate every this many epochs (0: only at the end).
        val_overlap: sliding-window overlap during validation.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        batch_size: crops per step and rank.
        syn: synthesize tumors on the fly into tumor-free training labels.
        syn_organ: organ the tumors grow in (``liver``, ``pancreas``, ``kidney``).
        syn_profile: ``paper`` (the released method) or ``realistic``.
        syn_prob: probability of synthesizing into a training case.
        seed: seed of the initial weights, the data order, crops and augmentations.
        workers: data-loader worker processes per rank.
        cache: keep the resampled volumes in memory (MONAI CacheDataset).
        amp: mixed precision (float16 autocast and gradient scaling) — on CUDA only.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        resume: ``model_final.pt`` of an earlier run: continue it (weights, optimizer,
            scheduler, step and epoch).
        init: a checkpoint whose weights start this run (epoch 0, fresh optimizer).
        syn_types: probability of each tumor type when synthesizing (normalised; names from the
            organ profile); None: the organ profile's own probabilities.
    """

    out_dir: str
    arch: str = "unet"
    data: str | None = None
    root: str | None = None
    phantoms: int = 0
    val_phantoms: int = 2
    phantom_shape: tuple[int, int, int] = (192, 160, 120)
    phantom_spacing: tuple[float, float, float] = (2.0, 2.0, 2.0)
    phantom_margin_mm: float | None = 24.0
    roi_size: tuple[int, int, int] = (96, 96, 96)
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    window_hu: tuple[float, float] = (-21.0, 189.0)
    epochs: int = 4000
    warmup_epochs: int = 100
    max_steps: int | None = None
    val_every: int = 200
    val_overlap: float = 0.5
    lr: float = 4e-4
    weight_decay: float = 1e-5
    batch_size: int = 2
    syn: bool = True
    syn_organ: str = "liver"
    syn_profile: str = "paper"
    syn_prob: float = 0.9
    seed: int = 0
    workers: int = 4
    cache: bool = True
    amp: bool = True
    device: str = "auto"
    resume: str | None = None
    init: str | None = None
    syn_types: dict[str, float] | None = None

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        fix("out_dir", str(self.out_dir))
        for name in ("data", "root", "resume", "init"):
            if getattr(self, name) is not None:
                fix(name, str(getattr(self, name)))
        fix("roi_size", _triple("roi_size", self.roi_size, int))
        fix("phantom_shape", _triple("phantom_shape", self.phantom_shape, int))
        fix("phantom_spacing", _triple("phantom_spacing", self.phantom_spacing, float))
        fix("spacing_mm", _triple("spacing_mm", self.spacing_mm, float))
        fix("window_hu", tuple(float(v) for v in self.window_hu))
        self._check_source()
        self._check_ranges()
        if self.phantoms:  # a phantom's grid at the training spacing must fit the budget
            check_resampled_size(self.phantom_shape, self.phantom_spacing, self.spacing_mm,
                                 name="a phantom")  # fmt: skip
        _check_arch(self.arch)
        get_organ_profile(self.syn_organ)
        check_profile_name(self.syn_profile)
        if self.syn_types is not None:
            fix("syn_types", check_tumor_types(self.syn_organ, self.syn_types))

    def _check_source(self) -> None:
        if (self.data is None) == (self.phantoms == 0):
            raise ParameterError(
                "give exactly one source of training data: a decathlon JSON (`data`) or a "
                f"number of phantoms (`phantoms` > 0); got data={self.data!r}, "
                f"phantoms={self.phantoms}"
            )
        if self.phantoms < 0 or self.val_phantoms < 0:
            raise ParameterError(
                f"phantoms and val_phantoms must be >= 0, got {self.phantoms}, {self.val_phantoms}"
            )
        if self.resume is not None and self.init is not None:
            raise ParameterError(
                "give `resume` (continue a run) or `init` (start from weights), not both"
            )

    def _check_ranges(self) -> None:
        positive_ints = {"epochs": self.epochs, "batch_size": self.batch_size}
        for name, value in positive_ints.items():
            if value < 1:
                raise ParameterError(f"{name} must be a positive integer, got {value}")
        for name, value in {"warmup_epochs": self.warmup_epochs, "val_every": self.val_every,
                            "workers": self.workers, "seed": self.seed}.items():  # fmt: skip
            if value < 0:
                raise ParameterError(f"{name} must be >= 0, got {value}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ParameterError(f"max_steps must be a positive integer, got {self.max_steps}")
        if self.warmup_epochs >= self.epochs:
            raise ParameterError(
                f"warmup_epochs must be below epochs, got {self.warmup_epochs} >= {self.epochs}"
            )
        if any(size < 16 for size in self.roi_size):
            raise ParameterError(
                f"roi_size must be at least 16 voxels per axis, got {self.roi_size}"
            )
        if self.arch != "unet" and any(size % 32 for size in self.roi_size):
            raise ParameterError(f"Swin-UNETR needs roi_size divisible by 32, got {self.roi_size}")
        if not all(0.1 <= value <= 10.0 for value in self.spacing_mm):
            raise ParameterError(f"spacing_mm must be 0.1..10 mm per axis, got {self.spacing_mm}")
        low, high = self.window_hu
        if not (len(self.window_hu) == 2 and low < high):
            raise ParameterError(
                f"window_hu must be (low, high) with low < high, got {self.window_hu}"
            )
        for name, value, lo, hi in (("lr", self.lr, 0.0, 1.0), ("syn_prob", self.syn_prob, 0, 1),
                                    ("val_overlap", self.val_overlap, 0.0, 0.95),
                                    ("weight_decay", self.weight_decay, 0.0, 1.0)):  # fmt: skip
            if not (math.isfinite(value) and lo <= value <= hi) or (name == "lr" and value == 0):
                raise ParameterError(f"{name} must be in [{lo}, {hi}] (lr > 0), got {value}")
        if self.phantom_margin_mm is not None and self.phantom_margin_mm < 0:
            raise ParameterError(f"phantom_margin_mm must be >= 0, got {self.phantom_margin_mm}")

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}  # fmt: skip


@dataclass(frozen=True)
class TrainingProgress:
    """What a progress callback receives.

    Args:
        step: optimizer steps done in all.
        total_steps: steps the run will have done at its end.
        epoch: current epoch (0-based).
        loss: loss of the last step (averaged over ranks), NaN before the first.
        lr: learning rate of the last step.
        message: what is happening (``"preparing data"``, ``"training"``, a validation summary).
        preparing: fraction of the data preparation done, while ``message`` says so.
    """

    step: int
    total_steps: int
    epoch: int
    loss: float
    lr: float
    message: str
    preparing: float = 1.0

    @property
    def fraction(self) -> float:
        """Fraction of the run done, in [0, 1]."""
        if self.message == "preparing data":
            return 0.0
        return min(1.0, self.step / self.total_steps) if self.total_steps else 1.0


@dataclass(frozen=True)
class TrainingResult:
    """What a finished run produced.

    Args:
        out_dir: the run's folder.
        best_checkpoint: ``model.pt`` (best by validation; the final weights without validation).
        final_checkpoint: ``model_final.pt`` (for ``resume``).
        config_file: ``config.json``.
        metrics_file: ``metrics.jsonl``.
        steps: optimizer steps done in all (including those before a resume).
        epochs: completed epochs.
        best_score: best mean of liver and tumor Dice (NaN without validation).
        best_step: step of the best checkpoint (-1 without validation).
        last_loss: loss of the last step.
        seconds: wall time of this process's run.
        world_size: processes that trained together.
        device: the torch device of this process.
    """

    out_dir: str
    best_checkpoint: str
    final_checkpoint: str
    config_file: str
    metrics_file: str
    steps: int
    epochs: int
    best_score: float
    best_step: int
    last_loss: float
    seconds: float
    world_size: int
    device: str


def build_loss() -> nn.Module:
    """Dice + cross-entropy over the classes: softmax, one-hot target, squared prediction,
    smooth numerator 0, denominator 1e-6 (the published loss)."""
    return DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, smooth_nr=0.0,
                      smooth_dr=1e-6)  # fmt: skip


def build_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW with the config's learning rate and weight decay.

    Args:
        model: the network whose parameters are optimised.
        config: the run's settings.
    """
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def warmup_cosine_factor(epoch: int, warmup_epochs: int, epochs: int) -> float:
    """Multiplier of the peak learning rate in ``epoch`` (0-based).

    Linear warm-up from 0 at epoch 0 to 1 at epoch ``warmup_epochs - 1``, then a half cosine
    from 1 at ``warmup_epochs`` to 0 at ``epochs`` (the schedule of the published runs).

    Args:
        epoch: the epoch.
        warmup_epochs: epochs of warm-up (0: start the cosine at once).
        epochs: epochs in all.
    """
    if epoch < warmup_epochs:
        return epoch / max(warmup_epochs - 1, 1)
    progress = (epoch - warmup_epochs) / max(epochs - warmup_epochs, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainingConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """The warm-up + cosine schedule (:func:`warmup_cosine_factor`), to be stepped once per epoch.

    Args:
        optimizer: the optimizer whose learning rate it sets.
        config: the run's settings (``warmup_epochs``, ``epochs``).
    """
    warmup, epochs = config.warmup_epochs, config.epochs

    def factor(epoch: int) -> float:
        return warmup_cosine_factor(epoch, warmup, epochs)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def write_run_config(
    out_dir: Path,
    config: TrainingConfig,
    data_description: Mapping[str, Any],
    *,
    status: str,
    result: Any = None,
) -> Path:
    """Write ``config.json``: what the model is, how to feed it, and how it was trained.

    Args:
        out_dir: the run's folder.
        config: the run's settings.
        data_description: what the training / validation data were.
        status: ``running`` or ``finished``.
        result: the :class:`TrainingResult` once finished.
    """
    import monai

    best = out_dir / BEST_CHECKPOINT
    record: dict[str, Any] = {
        "arch": config.arch,
        "checkpoint": BEST_CHECKPOINT,
        "sha256": sha256_of(best) if best.exists() and status == "finished" else None,
        "in_channels": 1,
        "out_channels": 3,
        "spacing_mm": list(config.spacing_mm),
        "orientation": "RAS",
        "window_hu": list(config.window_hu),
        "roi_size": list(config.roi_size),
        "labels": {"0": "background", "1": config.syn_organ, "2": "tumor"},
        "training_data": dict(data_description),
        "args": config.as_dict(),
        "status": status,
        "result": _finite(dataclasses.asdict(result)) if result is not None else None,
        "software": {"torch": torch.__version__, "monai": monai.__version__},
        "hardware": _hardware(),
    }
    target = out_dir / CONFIG_FILE
    handle, temporary = tempfile.mkstemp(prefix=f".{CONFIG_FILE}.", dir=out_dir)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(record, stream, indent=2, allow_nan=False, default=_json_number)
        stream.write("\n")
    os.chmod(temporary, 0o644)  # mkstemp makes files private; a run config is not
    os.replace(temporary, target)
    return target


def _json_number(value: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with NaN / infinite floats replaced by None (strict JSON has no NaN)."""
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in record.items()}  # fmt: skip
