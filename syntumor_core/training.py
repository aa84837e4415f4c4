"""Training of liver/tumor segmenters with the published recipe, on one process or under torchrun.

The recipe (shared/spec/segmentation.md, "Training"), every number a field of
:class:`TrainingConfig`:

- data: load → channel first → RAS → 1 mm (bilinear image, nearest label) → on-the-fly tumor
  synthesis (:class:`~syntumor_core.transforms.RandTumorSynthesisd`, prob 0.9, tumor-free labels
  only) → window [-21, 189] HU → [0, 1] → pad to the crop size → random crop 96³ by positive /
  negative label (1 : 1) → flips (p 0.2 per axis) → 90° rotation (p 0.2) → intensity scale and
  shift (0.1, p 0.15 each) — see :mod:`syntumor_core.training_data`;
- loss: Dice + cross-entropy (softmax, one-hot target, squared prediction, smooth 0 / 1e-6);
- AdamW (lr 4e-4, weight decay 1e-5), linear warm-up over 100 epochs then cosine to 0 at epoch
  4000, stepped once per epoch; batch 2;
- validation every 200 epochs by sliding-window inference (Gaussian blending, overlap 0.5),
  keeping the best checkpoint by the mean of the liver and tumor Dice.

Distributed data parallel: when ``torch.distributed`` is initialised (the caller does that, e.g.
the ``syntumor train`` command under ``torchrun``), each rank trains on its share of the data
(``DistributedSampler``) and only rank 0 validates, logs and writes files. Mixed precision runs
on CUDA only.

Reproducibility: the data of an epoch are a function of ``(seed, epoch, rank)`` alone (sampler,
loader and transform random states are re-seeded from them each epoch), so a run resumed from
``model_final.pt`` continues exactly where it stopped, even in the middle of an epoch.

Outputs in ``out_dir``: ``model.pt`` (best by validation, published layout, weights only),
``model_final.pt`` (latest; with optimizer, scheduler and counters for ``resume``),
``metrics.jsonl`` (one JSON object per step and per validation) and ``config.json`` (the run).

Example:
    >>> config = TrainingConfig(out_dir="runs/demo", phantoms=8, max_steps=100)  # doctest: +SKIP
    >>> result = train(config, progress=lambda p: print(p.fraction))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from syntumor_core.checkpoints import (
    load_checkpoint_file,
    save_checkpoint,
    state_dict_from_checkpoint,
)
from syntumor_core.errors import CheckpointError, ParameterError
from syntumor_core.models import SWIN_FEATURE_SIZES, build_model, convert_published_swin_keys
from syntumor_core.training_config import (
    BEST_CHECKPOINT,
    CONFIG_FILE,
    FINAL_CHECKPOINT,
    METRICS_FILE,
    TrainingConfig,
    TrainingProgress,
    TrainingResult,
    build_loss,
    build_optimizer,
    build_scheduler,
    write_run_config,
)
from syntumor_core.training_data import (
    build_datasets,
    make_train_loader,
    reraise_core_errors,
    validate,
)

__all__ = [
    "BEST_CHECKPOINT",
    "CONFIG_FILE",
    "FINAL_CHECKPOINT",
    "METRICS_FILE",
    "TrainingConfig",
    "TrainingProgress",
    "TrainingResult",
    "train",
]

logger = logging.getLogger(__name__)


@dataclass
class _State:
    """Mutable counters of a run (what ``model_final.pt`` stores besides the weights)."""

    epoch: int = 0  # completed epochs
    epoch_step: int = 0  # batches done in the current, unfinished epoch
    step: int = 0  # optimizer steps in all
    best_score: float = -1.0
    best_step: int = -1
    validated_step: int = -1
    last_loss: float = float("nan")


def _distributed() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, or ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"device {name!r} asked for, but CUDA is not available here")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def _initial_model(config: TrainingConfig) -> nn.Module:
    """The network with weights drawn from ``config.seed`` (the global torch RNG is left as it was)."""
    # MONAI's networks draw their initial weights from torch's default generator and take no
    # generator of their own: fork it (saved and restored around the block), so the weights
    # follow from ``config.seed`` alone and the caller's random state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(config.seed)
        model = build_model(config.arch)
    if config.init is not None:
        _load_weights(model, load_checkpoint_file(config.init), config)
        logger.info("initial weights from %s", config.init)
    return model


def _load_weights(model: nn.Module, checkpoint: dict, config: TrainingConfig) -> None:
    state_dict = state_dict_from_checkpoint(checkpoint)
    if config.arch in SWIN_FEATURE_SIZES:
        state_dict = convert_published_swin_keys(state_dict)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"checkpoint does not fit architecture {config.arch!r}: {str(error)[:300]}"
        ) from None


def _restore(config: TrainingConfig, model, optimizer, scheduler, scaler) -> _State:
    """Load ``config.resume``: weights, optimizer, scheduler, AMP scaler and counters."""
    checkpoint = load_checkpoint_file(config.resume)
    missing = [key for key in ("optimizer", "scheduler", "step") if key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"cannot resume from {config.resume}: it lacks {', '.join(missing)} (resume from the "
            f"{FINAL_CHECKPOINT} a training run wrote; to start from weights alone use `init`)"
        )
    stored_arch = checkpoint.get("arch", config.arch)
    if stored_arch != config.arch:
        raise CheckpointError(
            f"cannot resume from {config.resume}: it was trained as {stored_arch!r}, "
            f"this run is {config.arch!r}"
        )
    _load_weights(model, checkpoint, config)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if scaler is not None and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    best_step = int(checkpoint.get("best_step", -1))
    state = _State(
        epoch=int(checkpoint["epoch"]),
        epoch_step=int(checkpoint.get("epoch_step", 0)),
        step=int(checkpoint["step"]),
        best_score=float(checkpoint["best_acc"]) if best_step >= 0 else -1.0,
        best_step=best_step,
        validated_step=int(checkpoint.get("validated_step", -1)),
    )
    logger.info("resumed from %s at step %d (epoch %d)", config.resume, state.step, state.epoch)
    return state


class _Run:
    """One training run: the model, its optimizer, the data and the files it writes."""

    def __init__(self, config: TrainingConfig, progress: Callable[[TrainingProgress], None] | None):
        self.config = config
        self.rank, self.world_size = _distributed()
        self.is_main = self.rank == 0
        self.report = progress if (progress is not None and self.is_main) else None
        self.device = _resolve_device(config.device)
        self.use_amp = bool(config.amp and self.device.type == "cuda")
        self.out_dir = Path(config.out_dir)
        self.started = time.monotonic()
        self.data = build_datasets(config, rank=self.rank, progress=self._preparing)
        self.model = _initial_model(config).to(self.device)
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.scaler = torch.amp.GradScaler("cuda") if self.use_amp else None
        self.loss_function = build_loss()
        self.state = _State()
        if config.resume is not None:
            self.state = _restore(config, self.model, self.optimizer, self.scheduler, self.scaler)
        self.network: nn.Module = self.model
        if self.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        self.steps_per_epoch = self.data.steps_per_epoch(self.world_size, config.batch_size)
        planned = config.epochs * self.steps_per_epoch
        self.total_steps = min(planned, config.max_steps) if config.max_steps else planned

    def _preparing(self, fraction: float) -> None:
        if self.report is not None:
            self.report(TrainingProgress(0, 1, 0, float("nan"), 0.0, "preparing data", fraction))

    def log(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        record = {**record, "seconds": round(time.monotonic() - self.started, 3)}
        with (self.out_dir / METRICS_FILE).open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(record, allow_nan=True) + "\n")

    def done(self) -> bool:
        limit_reached = (
            self.config.max_steps is not None and self.state.step >= self.config.max_steps
        )
        return limit_reached or self.state.epoch >= self.config.epochs

    def train_step(self, batch: dict) -> float:
        images = _plain(batch["image"]).to(self.device, non_blocking=True)
        labels = _plain(batch["label"]).to(self.device, non_blocking=True)
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.use_amp):
            logits = self.network(images)
            loss = self.loss_function(logits, labels)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        value = loss.detach()
        if self.world_size > 1:
            torch.distributed.all_reduce(value)
            value = value / self.world_size
        return float(value)

    def run_epoch(self) -> None:
        """Train the rest of the current epoch (or up to ``max_steps``)."""
        epoch = self.state.epoch
        loader = make_train_loader(self.data, self.config, epoch, self.rank, self.world_size)
        lr = self.optimizer.param_groups[0]["lr"]
        for batch_index, batch in enumerate(loader):
            if batch_index < self.state.epoch_step:
                continue  # done before the run was resumed; drawn again to keep the streams
            if self.config.max_steps is not None and self.state.step >= self.config.max_steps:
                return
            loss = self.train_step(batch)
            self.state.step += 1
            self.state.epoch_step = batch_index + 1
            self.state.last_loss = loss
            self.log({"event": "train", "step": self.state.step, "epoch": epoch,
                      "loss": loss, "lr": lr})  # fmt: skip
            if self.report is not None:
                self.report(TrainingProgress(self.state.step, self.total_steps, epoch, loss, lr,
                                             "training"))  # fmt: skip
        self.state.epoch += 1
        self.state.epoch_step = 0
        self.scheduler.step()

    def validate_and_keep_best(self) -> None:
        if not self.data.validation_count or self.state.validated_step == self.state.step:
            return
        self.state.validated_step = self.state.step
        if self.is_main:
            scores = validate(self.model, self.data, self.config, self.device, self.use_amp)
            improved = scores.score > self.state.best_score
            if improved:
                self.state.best_score, self.state.best_step = scores.score, self.state.step
                self.save(self.out_dir / BEST_CHECKPOINT, with_training_state=False)
            self.log({"event": "validation", "step": self.state.step, "epoch": self.state.epoch,
                      **scores.as_record(), "best": improved})  # fmt: skip
            if self.report is not None:
                message = (f"validation: liver {scores.liver_dice:.3f}, "
                           f"tumor {scores.tumor_dice:.3f}")  # fmt: skip
                self.report(TrainingProgress(self.state.step, self.total_steps, self.state.epoch,
                                             self.state.last_loss, 0.0, message))  # fmt: skip
        self.barrier()

    def save(self, path: Path, *, with_training_state: bool) -> None:
        extra: dict[str, Any] = {"arch": self.config.arch, "step": self.state.step,
                                 "epoch_step": self.state.epoch_step,
                                 "best_step": self.state.best_step,
                                 "validated_step": self.state.validated_step}  # fmt: skip
        if with_training_state and self.scaler is not None:
            extra["scaler"] = self.scaler.state_dict()
        save_checkpoint(
            path,
            self.model,
            arch=self.config.arch,
            epoch=self.state.epoch,
            best_acc=max(self.state.best_score, 0.0),
            optimizer=self.optimizer if with_training_state else None,
            scheduler=self.scheduler if with_training_state else None,
            extra=extra,
        )

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()


def _plain(value) -> torch.Tensor:
    """A plain tensor (MONAI's MetaTensor carries metadata the network does not need)."""
    return value.as_tensor() if hasattr(value, "as_tensor") else torch.as_tensor(value)


def _training_loop(run: _Run) -> None:
    config = run.config
    while not run.done():
        run.run_epoch()
        epoch_finished = run.state.epoch_step == 0
        if epoch_finished and config.val_every and run.state.epoch % config.val_every == 0:
            run.validate_and_keep_best()
        if run.is_main:
            run.save(run.out_dir / FINAL_CHECKPOINT, with_training_state=True)
        run.barrier()
    run.validate_and_keep_best()  # the end of the run counts as a validation point
    if run.is_main:
        run.save(run.out_dir / FINAL_CHECKPOINT, with_training_state=True)
        if not run.data.validation_count:
            logger.warning("no validation data: %s holds the final weights", BEST_CHECKPOINT)
            run.save(run.out_dir / BEST_CHECKPOINT, with_training_state=False)
    run.barrier()


@contextlib.contextmanager
def _quiet_monai() -> Iterator[None]:
    """Silence MONAI's per-crop warnings about crops that cannot hold a positive voxel."""
    monai_logger = logging.getLogger("monai")
    previous = monai_logger.level
    monai_logger.setLevel(max(previous, logging.ERROR))
    try:
        yield
    finally:
        monai_logger.setLevel(previous)


def train(
    config: TrainingConfig, progress: Callable[[TrainingProgress], None] | None = None
) -> TrainingResult:
    """Train a segmenter as ``config`` says and write its checkpoints, log and run description.

    Args:
        config: the run's settings (see :class:`TrainingConfig`); ``resume`` continues a run.
        progress: called on rank 0 after every step (and while the data are prepared) with a
            :class:`TrainingProgress`.

    Returns:
        A :class:`TrainingResult` (identical on every rank; only rank 0 wrote the files).

    Raises:
        ParameterError: settings that contradict each other or the data (e.g. no training cases).
        VolumeError: unreadable images, or labels outside 0 (background), 1 (organ), 2 (tumor).
        CheckpointError: a ``resume`` / ``init`` file that is unsafe or does not fit.
    """
    out_dir = Path(config.out_dir)
    if _distributed()[0] == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    with _quiet_monai():
        run = _Run(config, progress)
        if run.is_main:
            write_run_config(out_dir, config, run.data.description, status="running")
        with reraise_core_errors():
            _training_loop(run)
    seconds = time.monotonic() - run.started
    result = TrainingResult(
        out_dir=str(out_dir),
        best_checkpoint=str(out_dir / BEST_CHECKPOINT),
        final_checkpoint=str(out_dir / FINAL_CHECKPOINT),
        config_file=str(out_dir / CONFIG_FILE),
        metrics_file=str(out_dir / METRICS_FILE),
        steps=run.state.step,
        epochs=run.state.epoch,
        best_score=run.state.best_score if run.state.best_step >= 0 else math.nan,
        best_step=run.state.best_step,
        last_loss=run.state.last_loss,
        seconds=seconds,
        world_size=run.world_size,
        device=str(run.device),
    )
    if run.is_main:
        write_run_config(out_dir, config, run.data.description, status="finished", result=result)
    run.barrier()
    logger.info(
        "training finished: %d steps, %d epochs, %.0f s", result.steps, result.epochs, seconds
    )
    return result
