"""Networks of the published method and safe checkpoint loading / saving."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.networks.nets import SwinUNETR
from torch import nn

from syntumor_core.checkpoints import (
    load_checkpoint_file,
    load_model,
    save_checkpoint,
    state_dict_from_checkpoint,
)
from syntumor_core.errors import CheckpointError, ParameterError
from syntumor_core.models import (
    OriginalPatchMerging,
    build_model,
    convert_published_swin_keys,
    count_parameters,
    detect_architecture,
    to_published_swin_keys,
)

SWIN_INPUT_SHAPE = (1, 1, 64, 32, 32)  # divisible by 32; unequal axes catch d/h/w mix-ups
UNET_INPUT_SHAPE = (1, 1, 32, 32, 32)
# An optimizer state as torch writes it (a real optimizer is exercised in the saving test).
ADAMW_STATE = {
    "state": {
        0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(4), "exp_avg_sq": torch.ones(4)}
    },
    "param_groups": [{"lr": 4e-4, "betas": (0.9, 0.999), "weight_decay": 1e-5, "params": [0]}],
}


# --- a reference of the original merging, written out by hand -------------------------------


def reference_original_merge(features: torch.Tensor) -> torch.Tensor:
    """The published merging's concatenation, slice by slice, on (B, D, H, W, C) features."""
    depth, height, width = features.shape[1:4]
    features = nn.functional.pad(features, (0, 0, 0, width % 2, 0, height % 2, 0, depth % 2))
    x0 = features[:, 0::2, 0::2, 0::2, :]
    x1 = features[:, 1::2, 0::2, 0::2, :]
    x2 = features[:, 0::2, 1::2, 0::2, :]
    x3 = features[:, 0::2, 0::2, 1::2, :]
    x4 = features[:, 1::2, 0::2, 1::2, :]
    x5 = features[:, 0::2, 1::2, 0::2, :]
    x6 = features[:, 0::2, 0::2, 1::2, :]
    x7 = features[:, 1::2, 1::2, 1::2, :]
    return torch.cat([x0, x1, x2, x3, x4, x5, x6, x7], dim=-1)


class ReferenceMerging(nn.Module):
    """The original merging as a module, for building a reference network."""

    def __init__(self, dim: int, norm_layer=nn.LayerNorm, spatial_dims: int = 3) -> None:
        super().__init__()
        self.reduction = nn.Linear(8 * dim, 2 * dim, bias=False)
        self.norm = norm_layer(8 * dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.norm(reference_original_merge(features)))


def monai_swin(feature_size: int, downsample) -> SwinUNETR:
    return SwinUNETR(
        in_channels=1,
        out_channels=3,
        feature_size=feature_size,
        norm_name="instance",
        downsample=downsample,
        use_v2=False,
    )


def published_swin_state_dict(monai_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename MONAI keys to the published ones by hand and add a random final norm."""
    published = {}
    for key, value in monai_state.items():
        key = key.replace(".mlp.linear1.", ".mlp.fc1.").replace(".mlp.linear2.", ".mlp.fc2.")
        published[key] = value.clone()
    channels = monai_state["swinViT.layers4.0.blocks.0.norm1.weight"].shape[0]
    published["swinViT.norm.weight"] = torch.rand(channels)
    published["swinViT.norm.bias"] = torch.rand(channels)
    return published


def tensor_parameter_count(state_dict: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() for k, v in state_dict.items() if "relative_position_index" not in k)


def write_marker(path: str) -> None:
    Path(path).write_text("payload ran")


class SystemPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class FunctionPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (write_marker, (str(self.marker),))


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_swin() -> dict:
    """A seeded tiny Swin network's MONAI-named weights, an input and the reference output."""
    torch.manual_seed(0)
    reference = monai_swin(12, ReferenceMerging).eval()
    noise = torch.Generator().manual_seed(5)
    with torch.no_grad():  # move every weight off its initial value
        for parameter in reference.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=noise))
    state = {key: value.clone() for key, value in reference.state_dict().items()}
    inputs = torch.rand(SWIN_INPUT_SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        output = reference(inputs)
    return {"state": state, "inputs": inputs, "output": output}


@pytest.fixture(scope="module")
def unet_file(tmp_path_factory) -> dict:
    torch.manual_seed(2)
    original = build_model("unet").eval()
    path = tmp_path_factory.mktemp("unet") / "model.pt"
    state = {key: value.clone() for key, value in original.state_dict().items()}
    torch.save({"epoch": 3800, "best_acc": np.float64(0.5731), "state_dict": state}, path)
    return {"path": path, "model": original, "state": state}


# --- architectures ----------------------------------------------------------------------------


def test_parameter_counts_match_the_published_networks():
    unet = build_model("unet")
    assert count_parameters(unet) == 4_807_482
    assert len(unet.state_dict()) == 63
    published_counts = {
        "swin_unetrv2_tiny": (12, 4_078_269),
        "swin_unetrv2_small": (24, 15_703_413),
        "swin_unetrv2_base": (48, 62_187_525),
    }
    for arch, (feature_size, published_count) in published_counts.items():
        model = build_model(arch)
        unused_final_norm = 2 * 8 * feature_size
        assert count_parameters(model) + unused_final_norm == published_count, arch
        published = to_published_swin_keys(model.state_dict())
        assert len(published) == 161
        assert tensor_parameter_count(published) == published_count


def test_swin_is_version_1_with_original_merging():
    model = build_model("swin_unetrv2_tiny")
    assert not model.swinViT.use_v2
    merging_layers = [m for m in model.modules() if isinstance(m, OriginalPatchMerging)]
    assert len(merging_layers) == 4


def test_unknown_architecture_suggests_the_closest_name():
    with pytest.raises(ParameterError, match=r"did you mean 'swin_unetrv2_small'\?"):
        build_model("swin_unetr_small")
    with pytest.raises(ParameterError, match="in_channels must be a positive integer"):
        build_model("unet", in_channels=0)


def test_detect_architecture_from_keys_and_shapes(unet_file, tiny_swin):
    assert detect_architecture(unet_file["state"]) == "unet"
    assert detect_architecture(tiny_swin["state"]) == "swin_unetrv2_tiny"
    prefixed = {f"module.{k}": v for k, v in tiny_swin["state"].items()}
    assert detect_architecture(prefixed) == "swin_unetrv2_tiny"
    small_embed = {"swinViT.patch_embed.proj.weight": torch.zeros(24, 1, 2, 2, 2)}
    assert detect_architecture(small_embed) == "swin_unetrv2_small"
    assert detect_architecture({"encoder.weight": torch.zeros(3)}) is None


# --- patch merging ----------------------------------------------------------------------------


def offset_coded_features(shape: tuple[int, int, int], channels: int) -> torch.Tensor:
    """Features whose value at (d, h, w) is 100 * (d % 2) + 10 * (h % 2) + (w % 2)."""
    d_index, h_index, w_index = torch.meshgrid(*(torch.arange(n) for n in shape), indexing="ij")
    code = 100 * (d_index % 2) + 10 * (h_index % 2) + (w_index % 2)
    return code[None, ..., None].float().expand(1, *shape, channels).contiguous()


def test_merging_takes_sub_grids_in_the_published_order():
    channels = 3
    features = offset_coded_features((4, 6, 8), channels)
    layer = OriginalPatchMerging(channels)
    layer.norm = nn.Identity()
    layer.reduction = nn.Identity()
    concatenated = layer(features)
    assert concatenated.shape == (1, 2, 3, 4, 8 * channels)
    codes = [int(concatenated[0, 0, 0, 0, i * channels]) for i in range(8)]
    # (d, h, w) offsets (0,0,0), (1,0,0), (0,1,0), (0,0,1), (1,0,1), (0,1,0), (0,0,1), (1,1,1)
    assert codes == [0, 100, 10, 1, 101, 10, 1, 111]
    assert torch.equal(concatenated, reference_original_merge(features))


@pytest.mark.parametrize("spatial", [(4, 6, 8), (5, 3, 7)])
def test_merging_layer_equals_reference_bit_for_bit(spatial):
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(2, *spatial, 6, generator=generator)
    layer = OriginalPatchMerging(6)
    reference = ReferenceMerging(6)
    reference.load_state_dict(layer.state_dict(), strict=True)
    assert set(layer.state_dict()) == {"reduction.weight", "norm.weight", "norm.bias"}
    assert torch.equal(layer(features), reference(features))


# --- loading published-style files ------------------------------------------------------------


def test_published_swin_file_loads_strictly_and_matches_the_original(tmp_path, tiny_swin):
    published = published_swin_state_dict(tiny_swin["state"])
    assert len(published) == 161
    path = tmp_path / "model.pt"
    torch.save(
        {
            "epoch": 2000,
            "best_acc": np.float64(0.6312),
            "state_dict": published,
            "optimizer": ADAMW_STATE,
        },
        path,
    )
    model, info = load_model(path)
    assert info.arch == info.detected_arch == "swin_unetrv2_tiny"
    assert (info.epoch, info.best_acc, info.swin_key_names) == (2000, 0.6312, "published")
    assert type(info.best_acc) is float and info.has_optimizer and not info.had_module_prefix
    assert not model.training
    with torch.inference_mode():
        output = model(tiny_swin["inputs"])
    assert torch.equal(output, tiny_swin["output"])


def test_stock_monai_merging_gives_other_outputs(tiny_swin):
    stock = monai_swin(12, "merging").eval()
    stock.load_state_dict(tiny_swin["state"], strict=True)
    with torch.inference_mode():
        output = stock(tiny_swin["inputs"])
    assert output.shape == tiny_swin["output"].shape
    assert not torch.allclose(output, tiny_swin["output"], atol=1e-4)


def test_published_unet_file_loads_strictly_and_matches_the_original(unet_file):
    raw = load_checkpoint_file(unet_file["path"])
    assert isinstance(raw["best_acc"], np.floating) and len(raw["state_dict"]) == 63
    model, info = load_model(unet_file["path"])
    assert (info.arch, info.epoch, info.best_acc, info.swin_key_names) == (
        "unet",
        3800,
        0.5731,
        None,
    )
    inputs = torch.rand(UNET_INPUT_SHAPE, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        assert torch.equal(model(inputs), unet_file["model"](inputs))


def test_files_written_with_numpy_1_names_load(tmp_path, unet_file):
    """Published files name the scalar constructor ``numpy.core.multiarray.scalar``."""
    old_names = tmp_path / "numpy1.pt"
    with zipfile.ZipFile(unet_file["path"]) as source, zipfile.ZipFile(old_names, "w") as target:
        for member in source.infolist():
            data = source.read(member.filename)
            if member.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray\nscalar" in data
                data = data.replace(
                    b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"
                )
            target.writestr(member, data)
    checkpoint = load_checkpoint_file(old_names)
    assert float(checkpoint["best_acc"]) == 0.5731


def test_module_prefix_optimizer_and_scheduler_are_accepted(tmp_path, unet_file):
    wrapped = nn.DataParallel(unet_file["model"])
    path = tmp_path / "ddp.pt"
    checkpoint = {
        "epoch": 1,
        "best_acc": np.float64(0.1),
        "state_dict": wrapped.state_dict(),
        "optimizer": ADAMW_STATE,
        "scheduler": {"last_epoch": 1, "base_lrs": [4e-4], "T_max": 4000},
    }
    assert next(iter(checkpoint["state_dict"])).startswith("module.")
    torch.save(checkpoint, path)
    model, info = load_model(path)
    assert info.had_module_prefix and info.has_optimizer and info.has_scheduler
    for key, value in model.state_dict().items():
        assert torch.equal(value, unet_file["state"][key])
    bare_path = tmp_path / "bare.pt"
    torch.save(unet_file["state"], bare_path)
    _, bare_info = load_model(bare_path)
    assert (bare_info.arch, bare_info.epoch, bare_info.best_acc) == ("unet", None, None)


def test_state_dict_extraction_rejects_bad_layouts():
    weights = {"module.a": torch.ones(1), "b": torch.zeros(2)}
    assert list(state_dict_from_checkpoint({"state_dict": weights})) == ["a", "b"]
    with pytest.raises(CheckpointError, match="'state_dict' entry or be a bare state dict"):
        state_dict_from_checkpoint({"epoch": 3, "model": weights})
    with pytest.raises(CheckpointError, match="not tensors: b"):
        state_dict_from_checkpoint({"state_dict": {"a": torch.ones(1), "b": 2.0}})
    with pytest.raises(CheckpointError, match="both with and without a 'module.' prefix"):
        state_dict_from_checkpoint({"state_dict": {"module.a": torch.ones(1), "a": torch.ones(1)}})


def test_key_conversion_round_trips(tiny_swin):
    monai_state = tiny_swin["state"]
    published = to_published_swin_keys(monai_state)
    assert not any(".linear1." in key or ".linear2." in key for key in published)
    assert published["swinViT.norm.weight"].shape == (96,)
    back = convert_published_swin_keys(published)
    assert list(back) == list(monai_state)
    assert all(back[key] is monai_state[key] for key in back)


# --- wrong files ------------------------------------------------------------------------------


def test_wrong_architecture_names_the_detected_one_and_the_keys(unet_file, tmp_path, tiny_swin):
    with pytest.raises(CheckpointError) as raised:
        load_model(unet_file["path"], arch="swin_unetrv2_tiny")
    message = str(raised.value)
    assert "does not fit architecture 'swin_unetrv2_tiny'" in message
    assert "looks like 'unet'" in message
    assert "missing keys: swinViT.patch_embed.proj.weight" in message
    assert "63 unexpected keys: model.0.conv.unit0.conv.weight" in message

    tiny_path = tmp_path / "tiny.pt"
    torch.save({"state_dict": published_swin_state_dict(tiny_swin["state"])}, tiny_path)
    with pytest.raises(CheckpointError, match=r"looks like 'swin_unetrv2_tiny'.*another shape: "):
        load_model(tiny_path, arch="swin_unetrv2_small")
    with pytest.raises(ParameterError, match="did you mean 'unet'"):
        load_model(tiny_path, arch="unte")


def test_undetectable_architecture_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"encoder.weight": torch.ones(2)}}, path)
    with pytest.raises(CheckpointError, match="cannot tell the architecture.*encoder.weight"):
        load_model(path)


@pytest.mark.parametrize("payload_class", [SystemPayload, FunctionPayload])
@pytest.mark.parametrize("zip_format", [True, False])
def test_malicious_pickle_is_refused_without_running(tmp_path, payload_class, zip_format):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    evil = {"epoch": 1, "state_dict": {"a": torch.ones(1)}, "best_acc": payload_class(marker)}
    torch.save(evil, path, _use_new_zipfile_serialization=zip_format)
    safe_globals_before = set(map(repr, torch.serialization.get_safe_globals()))
    with pytest.raises(CheckpointError, match=f"refusing to load checkpoint {path}"):
        load_checkpoint_file(path)
    with pytest.raises(CheckpointError, match="refusing"):
        load_model(path)
    assert not marker.exists()
    assert set(map(repr, torch.serialization.get_safe_globals())) == safe_globals_before


def test_objects_other_libraries_allow_are_still_refused(tmp_path):
    """MONAI adds MetaTensor to torch's global allow-list; a model file has no use for it."""
    path = tmp_path / "meta.pt"
    torch.save({"state_dict": {"a": MetaTensor(torch.ones(2))}}, path)
    with pytest.raises(CheckpointError, match="monai.data.meta_tensor.MetaTensor"):
        load_checkpoint_file(path)


def test_only_float64_numpy_scalars_are_allowed(tmp_path):
    path = tmp_path / "float32.pt"
    torch.save({"best_acc": np.float32(0.5), "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="refusing.*Float32DType") as raised:
        load_checkpoint_file(path)
    assert "weights_only" not in str(raised.value)


def test_corrupt_files_give_a_clear_error(tmp_path, unet_file):
    whole = unet_file["path"].read_bytes()
    cases = {
        "truncated.pt": whole[: len(whole) // 2],
        "empty.pt": b"",
        "text.pt": b"this is not a checkpoint\n" * 20,
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}: .*corrupt"):
            load_checkpoint_file(path)
    with pytest.raises(CheckpointError, match="checkpoint file not found: .*missing.pt"):
        load_checkpoint_file(tmp_path / "missing.pt")
    listed = tmp_path / "list.pt"
    torch.save([torch.ones(1)], listed)
    with pytest.raises(CheckpointError, match="must hold a dict, got list"):
        load_checkpoint_file(listed)


# --- saving -----------------------------------------------------------------------------------


def test_save_writes_the_published_layout_and_reloads_identically(tmp_path, tiny_swin):
    model = build_model("swin_unetrv2_tiny")
    model.load_state_dict(tiny_swin["state"], strict=True)
    wrapped = nn.DataParallel(model)
    optimizer = torch.optim.AdamW(wrapped.parameters(), lr=4e-4, weight_decay=1e-5)
    for parameter in wrapped.parameters():
        parameter.grad = torch.full_like(parameter, 1e-3)
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    path = tmp_path / "out" / "model.pt"
    save_checkpoint(
        path, wrapped, arch="swin_unetrv2_tiny", epoch=200, best_acc=np.float64(0.42),
        optimizer=optimizer, scheduler=scheduler, extra={"arch": "swin_unetrv2_tiny"},
    )  # fmt: skip
    stored = load_checkpoint_file(path)
    assert set(stored) == {"epoch", "best_acc", "state_dict", "optimizer", "scheduler", "arch"}
    assert type(stored["best_acc"]) is float and stored["best_acc"] == 0.42
    assert type(stored["epoch"]) is int and stored["epoch"] == 200
    keys = list(stored["state_dict"])
    assert len(keys) == 161 and not any(key.startswith("module.") for key in keys)
    assert "swinViT.layers1.0.blocks.0.mlp.fc1.weight" in keys
    assert not any(".linear1." in key or ".linear2." in key for key in keys)
    assert stored["state_dict"]["swinViT.norm.weight"].shape == (96,)
    reloaded, info = load_model(path)
    assert info.has_optimizer and info.has_scheduler and info.other_keys == ("arch",)
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    assert list(tmp_path.joinpath("out").iterdir()) == [path]


def test_save_unet_and_refuse_bad_arguments(tmp_path, unet_file):
    path = tmp_path / "unet.pt"
    save_checkpoint(path, unet_file["model"], arch="unet", epoch=0, best_acc=0.0)
    stored = load_checkpoint_file(path)
    assert list(stored["state_dict"]) == list(unet_file["state"])
    with pytest.raises(ParameterError, match="does not look like architecture 'swin_unetrv2_tiny'"):
        save_checkpoint(path, unet_file["model"], arch="swin_unetrv2_tiny", epoch=0, best_acc=0.0)
    with pytest.raises(ParameterError, match="would overwrite a reserved checkpoint entry"):
        save_checkpoint(path, unet_file["model"], arch="unet", epoch=0, best_acc=0.0,
                        extra={"state_dict": {}})  # fmt: skip
    with pytest.raises(ParameterError, match="must be a plain value"):
        save_checkpoint(path, unet_file["model"], arch="unet", epoch=0, best_acc=0.0,
                        extra={"note": object()})  # fmt: skip
    with pytest.raises(ParameterError, match="epoch must be a non-negative integer, got -1"):
        save_checkpoint(path, unet_file["model"], arch="unet", epoch=-1, best_acc=0.0)
    with pytest.raises(ParameterError, match="best_acc must be a finite number"):
        save_checkpoint(path, unet_file["model"], arch="unet", epoch=1, best_acc=float("nan"))
