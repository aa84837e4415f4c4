"""``syntumor train``: train a liver/tumor segmenter with the published recipe.

Every setting of :class:`syntumor_core.training.TrainingConfig` is a flag; the defaults are the
authors' recipe. Run it as one process, or as several under ``torchrun`` (one per GPU, or
several on the CPU with the gloo backend)::

    syntumor train --phantoms 16 --out runs/demo --max-steps 500
    torchrun --nproc_per_node 2 -m app.cli train --data fold.json --root DATA --out runs/r1

Only rank 0 shows progress and writes files. The command is added to the ``syntumor`` app by
:func:`register`; ``python -m app.cli train …`` works too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import fail, parse_triple, progress_bar, user_errors

COMMAND_NAME = "train"

DataOption = Annotated[
    Path | None, typer.Option(help="Decathlon JSON: 'training' / 'validation' image-label lists.")
]
RootOption = Annotated[
    Path | None, typer.Option(help="Folder the JSON's paths start from (default: the JSON's).")
]
PhantomsOption = Annotated[
    int, typer.Option(help="Train on this many generated phantoms instead of --data.")
]


def _distributed_environment() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` as torchrun sets them (``(0, 0, 1)`` otherwise)."""

    def number(name: str, default: int) -> int:
        text = os.environ.get(name, "")
        return int(text) if text.strip().isdigit() else default

    return number("RANK", 0), number("LOCAL_RANK", 0), number("WORLD_SIZE", 1)


@contextlib.contextmanager
def _process_group(device: str) -> Iterator[str]:
    """Join torchrun's process group when there is one; yields the device this rank uses."""
    import torch

    rank, local_rank, world_size = _distributed_environment()
    if world_size <= 1:
        yield device
        return
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if wants_cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    torch.distributed.init_process_group(backend="nccl" if wants_cuda else "gloo")
    try:
        yield device
    finally:
        torch.distributed.destroy_process_group()


def _window(text: str) -> tuple[float, float]:
    parts = [p for p in text.replace(":", ",").split(",") if p.strip()]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 2:
        fail(f"--window must be two numbers like -21,189; got {text!r}")
    return values  # type: ignore[return-value]


def _tumor_types(text: str) -> dict[str, float] | None:
    """``--syn-types small=0.5,medium=0.5`` as a dict; None when empty."""
    if not text.strip():
        return None
    weights = {}
    for part in (p for p in text.split(",") if p.strip()):
        name, _, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            fail(f"--syn-types must look like small=0.5,medium=0.5; got {text!r}")
    return weights


def train_command(
    out: Annotated[Path, typer.Option(help="Folder for model.pt, model_final.pt, logs, config.")],
    data: DataOption = None,
    root: RootOption = None,
    phantoms: PhantomsOption = 0,
    val_phantoms: Annotated[
        int, typer.Option(help="Held-out phantoms (with tumors) to validate on.")
    ] = 2,
    phantom_shape: Annotated[str, typer.Option(help="Phantom voxels x,y,z.")] = "192,160,120",
    phantom_spacing: Annotated[str, typer.Option(help="Phantom voxel size, mm.")] = "2",
    phantom_margin: Annotated[
        float, typer.Option(help="Crop phantoms to the organ box + this margin, mm (<0: no crop).")
    ] = 24.0,
    arch: Annotated[str, typer.Option(help="unet, swin_unetrv2_tiny, _small or _base.")] = "unet",
    roi_size: Annotated[str, typer.Option(help="Crop / sliding-window size, voxels.")] = "96",
    spacing: Annotated[str, typer.Option(help="Resample to this voxel size, mm.")] = "1",
    window: Annotated[str, typer.Option(help="HU window mapped to [0, 1].")] = "-21,189",
    epochs: Annotated[int, typer.Option(help="Epochs in all (the cosine ends here).")] = 4000,
    warmup_epochs: Annotated[int, typer.Option(help="Epochs of linear warm-up.")] = 100,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many steps in all.")
    ] = None,
    val_every: Annotated[int, typer.Option(help="Validate every N epochs (0: at the end).")] = 200,
    val_overlap: Annotated[float, typer.Option(help="Sliding-window overlap in validation.")] = 0.5,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 4e-4,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 1e-5,
    batch_size: Annotated[int, typer.Option(help="Crops per step and process.")] = 2,
    syn: Annotated[bool, typer.Option(help="Synthesize tumors on the fly.")] = True,
    syn_organ: Annotated[str, typer.Option(help="liver, pancreas or kidney.")] = "liver",
    syn_profile: Annotated[str, typer.Option(help="paper or realistic.")] = "paper",
    syn_prob: Annotated[float, typer.Option(help="Probability of synthesizing per case.")] = 0.9,
    syn_types: Annotated[
        str, typer.Option(help="Tumor-type weights like small=0.5,medium=0.5 (default: organ's).")
    ] = "",
    seed: Annotated[int, typer.Option(help="Seed of weights, data order and augmentation.")] = 0,
    workers: Annotated[int, typer.Option(help="Data-loader processes per rank.")] = 4,
    cache: Annotated[bool, typer.Option(help="Keep resampled volumes in memory.")] = True,
    amp: Annotated[bool, typer.Option(help="Mixed precision (CUDA only).")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    threads: Annotated[
        int, typer.Option(help="CPU threads per process for torch (0: torch's default).")
    ] = 0,
    resume: Annotated[
        Path | None, typer.Option(help="Continue from a run's model_final.pt.")
    ] = None,
    init: Annotated[Path | None, typer.Option(help="Start from these weights (epoch 0).")] = None,
) -> None:
    """Train a liver/tumor segmenter (published recipe; every setting a flag)."""
    from syntumor_core.training import TrainingConfig, train

    rank, _, world_size = _distributed_environment()
    if threads < 0:
        fail(f"--threads must be >= 0, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)
    with user_errors(), _process_group(device) as rank_device:
        config = TrainingConfig(
            out_dir=str(out), arch=arch, data=data, root=root, phantoms=phantoms,
            val_phantoms=val_phantoms, phantom_shape=parse_triple(phantom_shape, "phantom-shape", int),
            phantom_spacing=parse_triple(phantom_spacing, "phantom-spacing", float),
            phantom_margin_mm=phantom_margin if phantom_margin >= 0 else None,
            roi_size=parse_triple(roi_size, "roi-size", int),
            spacing_mm=parse_triple(spacing, "spacing", float), window_hu=_window(window),
            epochs=epochs, warmup_epochs=warmup_epochs, max_steps=max_steps, val_every=val_every,
            val_overlap=val_overlap, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
            syn=syn, syn_organ=syn_organ, syn_profile=syn_profile, syn_prob=syn_prob, seed=seed,
            workers=workers, cache=cache, amp=amp, device=rank_device, resume=resume, init=init,
            syn_types=_tumor_types(syn_types),
        )  # fmt: skip
        if rank != 0:
            train(config)
            return
        with progress_bar(
            f"training ({world_size} process{'es' if world_size > 1 else ''})"
        ) as bar:

            def show(progress) -> None:
                bar(progress.fraction)
                if progress.message.startswith("validation"):
                    typer.echo(f"step {progress.step}: {progress.message}", err=True)

            result = train(config, progress=show)
    best = "no validation" if result.best_step < 0 else (
        f"best mean Dice {result.best_score:.3f} at step {result.best_step}")  # fmt: skip
    typer.echo(
        f"trained {result.steps} steps ({result.epochs} epochs) in {result.seconds:.0f} s on "
        f"{result.device} x{result.world_size}; {best}; last loss {result.last_loss:.4f} -> "
        f"{result.best_checkpoint}"
    )


def register(app: typer.Typer) -> None:
    """Add ``train`` to ``app`` (once; calling again changes nothing).

    Args:
        app: the ``syntumor`` Typer app.
    """
    if any(info.name == COMMAND_NAME for info in app.registered_commands):
        return
    app.command(COMMAND_NAME)(train_command)
