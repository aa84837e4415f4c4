"""Segmentation networks of the published method, built on MONAI.

Two families, both with one input channel (CT windowed to [0, 1]) and three output channels
(0 background, 1 liver, 2 tumor):

- ``"unet"``: MONAI ``UNet`` with channels (16, 32, 64, 128, 256), strides 2 and two residual
  units per level (4,807,482 parameters).
- ``"swin_unetrv2_tiny"`` / ``"_small"`` / ``"_base"``: MONAI ``SwinUNETR`` *version 1*
  (``use_v2=False``, despite the name) with feature size 12 / 24 / 48. The published networks
  were trained with an older patch-merging step whose sub-grid order differs from MONAI's
  current one (see :class:`OriginalPatchMerging`); the networks built here use that order so
  that the published weights give the published outputs bit for bit.

The published Swin files also hold a final ``swinViT.norm`` layer norm (``8 * feature_size``
channels) that the forward pass never uses; the networks built here leave it out, so their
parameter counts are the published ones minus ``2 * 8 * feature_size``
(see :data:`PUBLISHED_PARAMETER_COUNTS`). :func:`convert_published_swin_keys` and
:func:`to_published_swin_keys` translate between the published and MONAI key names.

Example:
    >>> model = build_model("swin_unetrv2_tiny")
    >>> logits = model(torch.zeros(1, 1, 96, 96, 96))  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping

import torch
from monai.networks.nets import SwinUNETR, UNet
from torch import nn

from syntumor_core.errors import CheckpointError, ParameterError

logger = logging.getLogger(__name__)

ARCHITECTURES: tuple[str, ...] = (
    "unet",
    "swin_unetrv2_tiny",
    "swin_unetrv2_small",
    "swin_unetrv2_base",
)

SWIN_FEATURE_SIZES: dict[str, int] = {
    "swin_unetrv2_tiny": 12,
    "swin_unetrv2_small": 24,
    "swin_unetrv2_base": 48,
}

# Parameter counts of the published files (for Swin: including the unused ``swinViT.norm``).
PUBLISHED_PARAMETER_COUNTS: dict[str, int] = {
    "unet": 4_807_482,
    "swin_unetrv2_tiny": 4_078_269,
    "swin_unetrv2_small": 15_703_413,
    "swin_unetrv2_base": 62_187_525,
}

# (d, h, w) offsets of the eight 2x2x2 sub-grids, in the order the original merging step
# concatenates them: (0,1,0) and (0,0,1) twice, (1,1,0) and (0,1,1) never.
ORIGINAL_MERGING_OFFSETS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (1, 0, 0),
    (0, 1, 0),
    (0, 0, 1),
    (1, 0, 1),
    (0, 1, 0),
    (0, 0, 1),
    (1, 1, 1),
)

UNET_FIRST_KEY = "model.0.conv.unit0.conv.weight"
SWIN_PATCH_EMBED_KEY = "swinViT.patch_embed.proj.weight"
SWIN_FINAL_NORM_PREFIX = "swinViT.norm."
_SWIN_LAST_STAGE_NORM_KEY = "swinViT.layers4.0.blocks.0.norm1.weight"
_MAX_KEYS_SHOWN = 5
_PUBLISHED_TO_MONAI_NAMES = ((".mlp.fc1.", ".mlp.linear1."), (".mlp.fc2.", ".mlp.linear2."))


class OriginalPatchMerging(nn.Module):
    """Patch merging in the sub-grid order of the network the published weights come from.

    Takes channels-last features ``(B, D, H, W, C)``, pads odd spatial sizes with zeros,
    concatenates the eight 2x2x2 sub-grids in :data:`ORIGINAL_MERGING_OFFSETS` order (``C``
    channels each), applies a layer norm over the ``8 * C`` channels and a linear map to
    ``2 * C`` channels. Parameter names (``norm``, ``reduction``) match MONAI's
    ``PatchMerging`` and the published files.

    Note that the published order repeats two sub-grids and omits two others, so half a voxel
    of information per 2x2x2 cell is dropped; that is how the published networks were trained
    and it must be reproduced to get their outputs.

    Args:
        dim: number of input feature channels ``C``.
        norm_layer: normalisation layer class, called with ``8 * dim``.
        spatial_dims: must be 3.
    """

    def __init__(
        self, dim: int, norm_layer: type[nn.Module] = nn.LayerNorm, spatial_dims: int = 3
    ) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ParameterError(
                f"original patch merging is 3-D only: spatial_dims must be 3, got {spatial_dims}"
            )
        self.dim = dim
        self.reduction = nn.Linear(8 * dim, 2 * dim, bias=False)
        self.norm = norm_layer(8 * dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Merge 2x2x2 neighbourhoods of ``(B, D, H, W, C)`` features into ``(B, D/2, H/2, W/2, 2C)``."""
        if features.ndim != 5:
            raise ValueError(
                f"patch merging expects (B, D, H, W, C) features, got shape {tuple(features.shape)}"
            )
        depth, height, width = features.shape[1:4]
        if depth % 2 or height % 2 or width % 2:
            # F.pad pads from the last axis backwards: (C), (W), (H), (D).
            features = nn.functional.pad(
                features, (0, 0, 0, width % 2, 0, height % 2, 0, depth % 2)
            )
        sub_grids = [
            features[:, d_offset::2, h_offset::2, w_offset::2, :]
            for d_offset, h_offset, w_offset in ORIGINAL_MERGING_OFFSETS
        ]
        merged = torch.cat(sub_grids, dim=-1)
        return self.reduction(self.norm(merged))


def check_architecture(arch: str) -> str:
    """Refuse an unknown architecture name, suggesting the closest one."""
    if arch in ARCHITECTURES:
        return arch
    close = difflib.get_close_matches(str(arch), ARCHITECTURES, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ParameterError(
        f"unknown architecture {arch!r}: must be one of {', '.join(ARCHITECTURES)}{hint}"
    )


def _check_channel_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return value


def build_model(
    arch: str,
    *,
    in_channels: int = 1,
    out_channels: int = 3,
    gradient_checkpointing: bool = False,
) -> nn.Module:
    """Build an untrained network of one of the published architectures.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        in_channels: input channels (1 for CT).
        out_channels: output classes (3: background, liver, tumor).
        gradient_checkpointing: Swin only; trade compute for memory while training
            (does not change the weights or the outputs).

    Returns:
        The network, in training mode, with freshly initialised weights (global torch RNG;
        seed with ``torch.manual_seed`` beforehand for reproducible initial weights).

    Raises:
        ParameterError: unknown ``arch`` (with a "did you mean" suggestion) or bad channel count.
    """
    arch = check_architecture(arch)
    in_channels = _check_channel_count("in_channels", in_channels)
    out_channels = _check_channel_count("out_channels", out_channels)
    if arch == "unet":
        return UNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=(16, 32, 64, 128, 256),
            strides=(2, 2, 2, 2),
            num_res_units=2,
        )
    return SwinUNETR(
        in_channels=in_channels,
        out_channels=out_channels,
        patch_size=2,
        depths=(2, 2, 2, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        feature_size=SWIN_FEATURE_SIZES[arch],
        norm_name="instance",
        drop_rate=0.0,
        attn_drop_rate=0.0,
        dropout_path_rate=0.0,
        normalize=True,
        use_checkpoint=gradient_checkpointing,
        spatial_dims=3,
        downsample=OriginalPatchMerging,
        use_v2=False,
    )


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model`` (buffers such as attention position indices excluded).

    Args:
        model: any torch module.
    """
    return sum(parameter.numel() for parameter in model.parameters())


def detect_architecture(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """Guess which of :data:`ARCHITECTURES` a state dict belongs to, from its keys and shapes.

    Works with published and MONAI key names, with or without a ``module.`` prefix. The guess
    looks at a few telltale entries only; loading strictly still checks every key.

    Args:
        state_dict: parameter name -> tensor.

    Returns:
        The architecture name, or ``None`` when the state dict looks like none of them.
    """
    entries = {key.removeprefix("module."): value for key, value in state_dict.items()}
    unet_first = entries.get(UNET_FIRST_KEY)
    if isinstance(unet_first, torch.Tensor) and tuple(unet_first.shape[:1]) == (16,):
        return "unet"
    patch_embed = entries.get(SWIN_PATCH_EMBED_KEY)
    if isinstance(patch_embed, torch.Tensor) and patch_embed.ndim == 5:
        feature_size = int(patch_embed.shape[0])
        for arch, size in SWIN_FEATURE_SIZES.items():
            if size == feature_size:
                return arch
    return None


def convert_published_swin_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a published Swin state dict onto MONAI's SwinUNETR names.

    Renames ``.mlp.fc1.`` / ``.mlp.fc2.`` to ``.mlp.linear1.`` / ``.mlp.linear2.`` and drops the
    unused final ``swinViT.norm.*``. Keys already in MONAI's form pass unchanged.

    Args:
        state_dict: parameter name -> tensor (no ``module.`` prefix).

    Returns:
        A new dict with MONAI names, in the original order (the tensors are not copied).
    """
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(SWIN_FINAL_NORM_PREFIX):
            continue
        for published_name, monai_name in _PUBLISHED_TO_MONAI_NAMES:
            key = key.replace(published_name, monai_name)
        converted[key] = value
    return converted


def to_published_swin_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map MONAI SwinUNETR names back to the published ones (inverse of the conversion).

    Renames ``.mlp.linear1.`` / ``.mlp.linear2.`` to ``.mlp.fc1.`` / ``.mlp.fc2.`` and, if
    absent, adds the original's final ``swinViT.norm`` (weight ones, bias zeros, as a fresh
    layer norm; the forward pass never uses it) after the Swin encoder's entries, so the
    authors' code can load the result strictly.

    Args:
        state_dict: MONAI SwinUNETR parameter name -> tensor.

    Returns:
        A new dict with published names.

    Raises:
        CheckpointError: the state dict lacks the last Swin stage (cannot size the norm).
    """
    last_stage = state_dict.get(_SWIN_LAST_STAGE_NORM_KEY)
    if last_stage is None:
        raise CheckpointError(
            f"not a Swin-UNETR state dict: {_SWIN_LAST_STAGE_NORM_KEY!r} is missing"
        )
    final_norm = {
        f"{SWIN_FINAL_NORM_PREFIX}weight": torch.ones_like(last_stage),
        f"{SWIN_FINAL_NORM_PREFIX}bias": torch.zeros_like(last_stage),
    }
    has_final_norm = any(key.startswith(SWIN_FINAL_NORM_PREFIX) for key in state_dict)
    published: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not has_final_norm and not key.startswith("swinViT."):
            published.update(final_norm)
            has_final_norm = True
        for published_name, monai_name in _PUBLISHED_TO_MONAI_NAMES:
            key = key.replace(monai_name, published_name)
        published[key] = value
    if not has_final_norm:
        published.update(final_norm)
    return published


def few_names(names: list[str]) -> str:
    """The first few of ``names``, comma-separated, and how many more there are."""
    shown = ", ".join(names[:_MAX_KEYS_SHOWN])
    rest = len(names) - _MAX_KEYS_SHOWN
    return f"{shown} and {rest} more" if rest > 0 else shown


def describe_mismatch(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]
) -> str | None:
    """Missing, unexpected and shape-mismatched keys, or ``None`` if the dicts fit exactly.

    Args:
        expected: the network's own state dict.
        found: the state dict meant to be loaded into it.
    """
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    reshaped = [
        f"{key} (file {tuple(found[key].shape)}, network {tuple(expected[key].shape)})"
        for key in expected
        if key in found and found[key].shape != expected[key].shape
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {few_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {few_names(unexpected)}")
    if reshaped:
        parts.append(f"{len(reshaped)} keys of another shape: {few_names(reshaped)}")
    return "; ".join(parts) or None
