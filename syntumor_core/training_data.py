"""Data of :mod:`syntumor_core.training`: cases, the published transforms, loaders, validation.

Training cases come from a decathlon JSON (image/label files) or from procedural phantoms
(:func:`syntumor_core.phantom.make_phantom`, organ label 1, no tumors: the on-the-fly synthesis
adds them). Validation cases are preprocessed once (RAS, resampled, windowed) and scored by
sliding-window inference; held-out phantoms get synthetic tumors fixed by their seeds.

Per-class Dice during validation follows the published trainer: class 1 against class 1 and
class 2 against class 2 on the resampled grid, a case with an empty truth scoring 0, means over
cases, and the score that picks the best checkpoint is the mean of the liver and tumor Dice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai import transforms as mt
from monai.data import CacheDataset, DataLoader, Dataset, MetaTensor
from monai.inferers import sliding_window_inference
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from syntumor_core.errors import (
    OrganTooSmallError,
    ParameterError,
    SynTumorError,
    VolumeError,
)
from syntumor_core.metrics import dice
from syntumor_core.phantom import LABELS, make_phantom
from syntumor_core.synthesis import TUMOR_LABEL, get_organ_profile, synthesize
from syntumor_core.training_config import PHANTOM_ORGAN_LABELS, TrainingConfig
from syntumor_core.transforms import RandTumorSynthesisd
from syntumor_core.volume import check_resampled_size

logger = logging.getLogger(__name__)

KEYS = ("image", "label")
VALIDATION_SEED_OFFSET = 100_000


class CheckLabelsd(mt.MapTransform):
    """Refuse label maps with values other than 0 (background), 1 (organ) and 2 (tumor).

    Args:
        keys: the label key.
    """

    def __call__(self, data):
        out = dict(data)
        for key in self.key_iterator(out):
            values = torch.unique(torch.as_tensor(out[key])).tolist()
            extra = sorted({int(v) if float(v).is_integer() else v for v in values} - {0, 1, 2})
            if extra:
                source = getattr(out[key], "meta", {}).get("filename_or_obj")
                name = Path(str(source)).name if source else out.get("name", key)
                raise VolumeError(
                    f"label map {name} holds values {extra}: labels must be 0 background, "
                    "1 organ, 2 tumor"
                )
        return out


def _loading(source: str) -> list:
    if source == "files":
        with warnings.catch_warnings():  # MONAI builds every reader; the DICOM one warns
            warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")
            loader = mt.LoadImaged(keys=KEYS, reader="NibabelReader", image_only=True)
        return [loader, mt.EnsureChannelFirstd(keys=KEYS)]
    return []  # phantom cases are channel-first MetaTensors already


def _resampling(config: TrainingConfig, source: str) -> list:
    return [
        *_loading(source),
        mt.Orientationd(keys=KEYS, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        mt.Spacingd(keys=KEYS, pixdim=config.spacing_mm, mode=("bilinear", "nearest")),
        CheckLabelsd(keys="label"),
    ]


def _windowing(config: TrainingConfig) -> list:
    low, high = config.window_hu
    return [
        mt.ScaleIntensityRanged(
            keys="image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True
        ),  # fmt: skip
        mt.SpatialPadd(keys=KEYS, spatial_size=config.roi_size, mode=("minimum", "constant")),
    ]


def train_transforms(config: TrainingConfig, source: str) -> mt.Compose:
    """The published training pipeline (crop size, spacing and window from ``config``).

    Args:
        config: the run's settings.
        source: ``"files"`` (decathlon paths: load + channel first) or ``"phantoms"``.
    """
    synthesis = []
    if config.syn:
        synthesis = [RandTumorSynthesisd(keys=KEYS, prob=config.syn_prob, organ=config.syn_organ,
                                         profile=config.syn_profile,
                                         tumor_types=config.syn_types)]  # fmt: skip
    return mt.Compose([
        *_resampling(config, source),
        *synthesis,
        *_windowing(config),
        mt.RandCropByPosNegLabeld(keys=KEYS, label_key="label", spatial_size=config.roi_size,
                                  pos=1, neg=1, num_samples=1, image_key="image",
                                  image_threshold=0),
        mt.RandFlipd(keys=KEYS, prob=0.2, spatial_axis=0),
        mt.RandFlipd(keys=KEYS, prob=0.2, spatial_axis=1),
        mt.RandFlipd(keys=KEYS, prob=0.2, spatial_axis=2),
        mt.RandRotate90d(keys=KEYS, prob=0.2, max_k=3),
        mt.RandScaleIntensityd(keys="image", factors=0.1, prob=0.15),
        mt.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.15),
    ])  # fmt: skip


def validation_transforms(config: TrainingConfig, source: str) -> mt.Compose:
    """Load, RAS, resample, window and pad: what validation inference sees.

    Args:
        config: the run's settings.
        source: ``"files"`` or ``"phantoms"``.
    """
    return mt.Compose([*_resampling(config, source), *_windowing(config)])


def _crop_to_organ(array: np.ndarray, organ: np.ndarray, margin_voxels) -> tuple[slice, ...]:
    corners = np.argwhere(organ)
    low = np.maximum(corners.min(axis=0) - margin_voxels, 0)
    high = np.minimum(corners.max(axis=0) + 1 + margin_voxels, array.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))


def _phantom_case(seed: int, config: TrainingConfig, *, tumor_type: str | None) -> dict:
    """One phantom as a case: organ label 1 (and 2 for tumors placed when ``tumor_type``)."""
    phantom = make_phantom(seed, config.phantom_shape, config.phantom_spacing)
    names = PHANTOM_ORGAN_LABELS[config.syn_organ]
    organ = np.isin(phantom.labels.array, [LABELS[name] for name in names])
    if not organ.any():
        raise ParameterError(
            f"phantom {seed} has no {config.syn_organ} in its field of view "
            f"{config.phantom_shape} voxels of {config.phantom_spacing} mm"
        )
    image, label = phantom.image.array, organ.astype(np.float32)
    if tumor_type is not None:
        try:
            result = synthesize(image, organ, spacing=phantom.image.spacing, seed=seed,
                                organ=config.syn_organ, tumor_type=tumor_type,
                                profile=config.syn_profile, checksums=False)  # fmt: skip
            image, label = result.image, result.label.astype(np.float32)
        except OrganTooSmallError as error:
            logger.warning("validation phantom %d keeps no tumor: %s", seed, error)
    affine = phantom.image.affine.copy()
    box = tuple(slice(None) for _ in range(3))
    if config.phantom_margin_mm is not None:
        margin = np.ceil(config.phantom_margin_mm / np.asarray(phantom.image.spacing)).astype(int)
        box = _crop_to_organ(image, organ, margin)
        affine[:3, 3] += affine[:3, :3] @ np.array([s.start for s in box], dtype=float)
    as_tensor = lambda array: MetaTensor(  # noqa: E731
        torch.from_numpy(np.ascontiguousarray(array[box], dtype=np.float32))[None],
        affine=torch.as_tensor(affine, dtype=torch.float64),
    )
    return {"image": as_tensor(image), "label": as_tensor(label), "name": f"phantom-{seed}"}


def _decathlon_entries(config: TrainingConfig, key: str) -> list[dict]:
    data_file = Path(config.data)  # type: ignore[arg-type]
    if not data_file.is_file():
        raise ParameterError(f"data list {data_file} does not exist")
    try:
        listing = json.loads(data_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ParameterError(f"data list {data_file} is not valid JSON: {error}") from None
    entries = listing.get(key, []) if isinstance(listing, dict) else None
    if not isinstance(entries, list):
        raise ParameterError(f"data list {data_file}: {key!r} must be a list of image/label pairs")
    root = Path(config.root) if config.root else data_file.parent
    cases = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"image", "label"} <= set(entry):
            raise ParameterError(f"data list {data_file}: {key}[{index}] needs 'image' and 'label'")
        paths = {name: root / str(entry[name]) for name in KEYS}
        for path in paths.values():
            if not path.is_file():
                raise ParameterError(
                    f"data list {data_file}: {key}[{index}] file {path} does not exist"
                )
        _check_grid(paths["image"], config.spacing_mm)
        cases.append({**{k: str(v) for k, v in paths.items()}, "name": Path(entry["image"]).name})
    return cases


def _check_grid(image: Path, spacing_mm) -> None:
    """Refuse an image whose grid at the training spacing would not fit the memory budget
    (read from its header: nothing is loaded)."""
    try:
        header = nib.load(image).header
        shape, spacing = header.get_data_shape()[:3], header.get_zooms()[:3]
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as error:
        raise VolumeError(f"{image}: cannot read the NIfTI header ({error})") from None
    check_resampled_size(shape, spacing, spacing_mm, name=str(image))


@dataclass
class TrainingData:
    """The datasets of a run.

    Args:
        train: the training dataset (every item gives a list of one random crop).
        train_count: training cases.
        validation_count: validation cases (the same on every rank).
        validation_cases: preprocessed validation cases (rank 0 only; empty elsewhere).
        description: what the data were, for ``config.json``.
    """

    train: Dataset
    train_count: int
    validation_count: int
    validation_cases: list[dict] = field(default_factory=list)
    description: dict[str, Any] = field(default_factory=dict)

    def steps_per_epoch(self, world_size: int, batch_size: int) -> int:
        """Optimizer steps in one epoch (``DistributedSampler`` pads ranks to equal shares).

        Args:
            world_size: processes training together.
            batch_size: crops per step and rank.
        """
        return math.ceil(math.ceil(self.train_count / world_size) / batch_size)


def _phantom_sources(config: TrainingConfig, rank: int, report) -> tuple[list, list, int, dict]:
    """Training phantoms (every rank) and validation phantoms with tumors (rank 0 only)."""
    seeds = [config.seed + index for index in range(config.phantoms)]
    val_seeds = [
        config.seed + VALIDATION_SEED_OFFSET + index for index in range(config.val_phantoms)
    ]
    total = len(seeds) + (len(val_seeds) if rank == 0 else 0)
    train_cases = []
    for index, seed in enumerate(seeds):
        train_cases.append(_phantom_case(seed, config, tumor_type=None))
        report((index + 1) / total)
    tumor_types = list(get_organ_profile(config.syn_organ).type_probabilities)
    val_cases = []
    if rank == 0:
        for index, seed in enumerate(val_seeds):
            tumor_type = tumor_types[index % len(tumor_types)]
            val_cases.append(_phantom_case(seed, config, tumor_type=tumor_type))
            report((len(seeds) + index + 1) / total)
    description = {
        "source": "phantoms",
        "train_seeds": seeds,
        "validation_seeds": val_seeds,
        "phantom_shape": list(config.phantom_shape),
        "phantom_spacing_mm": list(config.phantom_spacing),
        "phantom_margin_mm": config.phantom_margin_mm,
        "validation_tumors": f"{config.syn_profile} profile, types cycling {tumor_types}",
    }
    return train_cases, val_cases, len(val_seeds), description


def build_datasets(
    config: TrainingConfig, *, rank: int = 0, progress: Callable[[float], None] | None = None
) -> TrainingData:
    """Build the training dataset and (on rank 0) the preprocessed validation cases.

    Args:
        config: the run's settings.
        rank: this process's rank; only rank 0 prepares validation cases.
        progress: called with the fraction of the preparation done.

    Raises:
        ParameterError: no training cases, a missing file, a malformed data list.
    """
    report = progress or (lambda fraction: None)
    if config.data is not None:
        source = "files"
        train_cases = _decathlon_entries(config, "training")
        val_entries = _decathlon_entries(config, "validation")
        val_count = len(val_entries)
        description = {"source": "decathlon", "data": config.data, "root": config.root,
                       "training": len(train_cases), "validation": len(val_entries)}  # fmt: skip
    else:
        source = "phantoms"
        train_cases, val_entries, val_count, description = _phantom_sources(config, rank, report)
    if not train_cases:
        raise ParameterError("no training cases: the data list's 'training' list is empty")
    transform = train_transforms(config, source)
    with reraise_core_errors():
        train = _training_dataset(train_cases, transform, config)
        validation = []
        if rank == 0 and val_entries:
            prepare = validation_transforms(config, source)
            validation = [prepare(case) for case in val_entries]
    report(1.0)
    return TrainingData(train, len(train_cases), val_count, validation, description)


def _training_dataset(cases: list, transform: mt.Compose, config: TrainingConfig) -> Dataset:
    if config.cache:
        return CacheDataset(cases, transform, cache_rate=1.0, num_workers=None,
                             progress=False, copy_cache=True)  # fmt: skip
    return Dataset(cases, transform)


@contextlib.contextmanager
def reraise_core_errors() -> Iterator[None]:
    """Re-raise the core's own error when MONAI wraps it in "applying transform …"."""
    try:
        yield
    except RuntimeError as error:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, SynTumorError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one rank's data stream in one epoch (independent of any resume).

    Args:
        seed: the run's seed.
        epoch: the epoch (0-based).
        rank: the process's rank.
    """
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint32)[0])


def make_train_loader(
    data: TrainingData, config: TrainingConfig, epoch: int, rank: int, world_size: int
) -> DataLoader:
    """A loader over this rank's share of the training data for ``epoch``, seeded for it.

    Args:
        data: the datasets.
        config: the run's settings (batch size, workers, seed).
        epoch: the epoch (0-based).
        rank: this process's rank.
        world_size: processes training together.
    """
    sampler = DistributedSampler(data.train, num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=config.seed, drop_last=False)  # fmt: skip
    sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(epoch_seed(config.seed, epoch, rank))
    return DataLoader(data.train, batch_size=config.batch_size, sampler=sampler,
                      num_workers=config.workers, generator=generator,
                      pin_memory=torch.cuda.is_available())  # fmt: skip


@dataclass(frozen=True)
class ValidationScores:
    """Validation Dice per class, averaged over cases, and per case.

    Args:
        liver_dice: mean Dice of class 1 (the organ).
        tumor_dice: mean Dice of class 2.
        score: mean of the two: what picks the best checkpoint.
        cases: ``(name, liver Dice, tumor Dice)`` per case.
    """

    liver_dice: float
    tumor_dice: float
    score: float
    cases: tuple[tuple[str, float, float], ...]

    def as_record(self) -> dict[str, Any]:
        return {"liver_dice": self.liver_dice, "tumor_dice": self.tumor_dice, "score": self.score,
                "cases": [{"name": n, "liver_dice": lv, "tumor_dice": tu}
                          for n, lv, tu in self.cases]}  # fmt: skip


def predict_volume(
    model: nn.Module, image: torch.Tensor, config: TrainingConfig, device: torch.device, amp: bool
) -> np.ndarray:
    """Argmax labels of a preprocessed ``(1, X, Y, Z)`` image by Gaussian sliding windows.

    Args:
        model: the network (not a DDP wrapper).
        image: windowed, resampled image, channel first.
        config: roi size and overlap.
        device: where to run.
        amp: float16 autocast (CUDA only).
    """
    model.eval()
    inputs = (image.as_tensor() if hasattr(image, "as_tensor") else image)[None].to(device)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
        logits = sliding_window_inference(inputs, config.roi_size, sw_batch_size=1,
                                          predictor=model, overlap=config.val_overlap,
                                          mode="gaussian")  # fmt: skip
    return logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()


def validate(
    model: nn.Module, data: TrainingData, config: TrainingConfig, device: torch.device, amp: bool
) -> ValidationScores:
    """Score the model on the preprocessed validation cases (see the module notes).

    Args:
        model: the network (not a DDP wrapper).
        data: the datasets (``validation_cases`` filled).
        config: roi size and overlap.
        device: where to run.
        amp: float16 autocast (CUDA only).
    """
    cases: list[tuple[str, float, float]] = []
    for case in data.validation_cases:
        predicted = predict_volume(model, case["image"], config, device, amp)
        truth = np.asarray(torch.as_tensor(case["label"])[0].round().to(torch.uint8))
        liver = dice(predicted == 1, truth == 1, empty_value=0.0)
        tumor = dice(predicted == TUMOR_LABEL, truth == TUMOR_LABEL, empty_value=0.0)
        cases.append((str(case.get("name", len(cases))), liver, tumor))
    model.train()
    liver_mean = float(np.mean([c[1] for c in cases]))
    tumor_mean = float(np.mean([c[2] for c in cases]))
    return ValidationScores(liver_mean, tumor_mean, (liver_mean + tumor_mean) / 2, tuple(cases))
