"""Segmenter: parity with MONAI, fast-mode agreement, geometry, post-processing, lesion table.

Small settings keep the file fast: phantoms at 4 mm resampled to 8 mm (or 2 mm), windows of
32³, one torch thread (faster than two on a shared two-core machine).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage
from torch import nn

from syntumor_core.checkpoints import save_checkpoint
from syntumor_core.errors import MaskError, ParameterError
from syntumor_core.inference import (
    REFINE_MARGIN,
    SegmentationResult,
    Segmenter,
    _coarse_window_indices,
    lesion_table,
    postprocess,
    window_slices,
)
from syntumor_core.models import build_model
from syntumor_core.phantom import make_phantom
from syntumor_core.volume import Volume

SMALL = {"roi_size": 32, "spacing_mm": 8.0, "device": "cpu"}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_phantom():
    return make_phantom(seed=3, shape=(96, 96, 64), spacing=(4.0, 4.0, 4.0))


@pytest.fixture(scope="module")
def unet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("unet").eval()


class CountingModel(nn.Module):
    """Wraps a network and counts the windows it sees."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.windows = 0

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.windows += batch.shape[0]
        return self.inner(batch)


class IntensityClassifier(nn.Module):
    """A voxel-wise 'network': class 0 below 0.25, 1 up to 0.75, 2 above (windowed input)."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        centres = torch.tensor([0.0, 0.5, 1.0], dtype=batch.dtype, device=batch.device)
        centres = centres.view(1, 3, 1, 1, 1)
        return -50.0 * (batch - centres) ** 2


def classify_hu(image: np.ndarray) -> np.ndarray:
    scaled = np.clip((image + 21.0) / 210.0, 0.0, 1.0)
    return np.digitize(scaled, [0.25, 0.75]).astype(np.uint8)


# ------------------------------------------------------------------------------ modes


def test_parity_logits_are_bit_identical_to_a_direct_monai_call(small_phantom, unet):
    segmenter = Segmenter(unet, arch="unet", mode="parity", **SMALL)
    batch = segmenter.preprocess(small_phantom.image).as_tensor()[None]
    ours = segmenter.sliding_window_logits(batch)
    with torch.no_grad():
        direct = sliding_window_inference(
            batch, roi_size=(32, 32, 32), sw_batch_size=1, predictor=unet, overlap=0.75,
            mode="gaussian",
        )  # fmt: skip
    assert ours.shape == (1, 3, *batch.shape[2:])
    assert torch.equal(ours, direct)


def test_fast_mode_agrees_with_parity(small_phantom, unet):
    parity = Segmenter(unet, arch="unet", mode="parity", **SMALL)
    fast = Segmenter(unet, arch="unet", **SMALL)
    assert fast.mode == "fast" and fast.sw_batch_size > 1
    assert not fast.channels_last  # only on CUDA: no faster on the CPU
    batch = parity.preprocess(small_phantom.image).as_tensor()[None]
    parity_logits = parity.sliding_window_logits(batch)
    fast_logits = fast.sliding_window_logits(batch)
    agreement = (parity_logits.argmax(1) == fast_logits.argmax(1)).float().mean().item()
    assert agreement >= 0.999
    parity_result = parity.predict(small_phantom.image)
    fast_result = fast.predict(small_phantom.image)
    same = np.mean(parity_result.labels.array == fast_result.labels.array)
    assert same >= 0.999
    # the caller's model keeps its layout: fast mode converted a copy
    assert next(unet.parameters()).is_contiguous()


def test_fast_mode_runs_one_window_for_all_constant_windows(unet):
    image = np.full((48, 40, 40), -1000.0, dtype=np.float32)  # air...
    image[40:46, 8:32, 8:32] = 100.0  # ...and one block of tissue at one end
    volume = Volume(image, np.diag([2.0, 2.0, 2.0, 1.0]))
    parity_model, fast_model = CountingModel(unet), CountingModel(unet)
    options = {"roi_size": 32, "spacing_mm": 2.0, "device": "cpu"}
    parity = Segmenter(parity_model, arch="unet", mode="parity", **options)
    fast = Segmenter(fast_model, arch="unet", **options)
    batch = parity.preprocess(volume).as_tensor()[None]
    expected = parity.sliding_window_logits(batch)
    got = fast.sliding_window_logits(batch)
    windows = len(window_slices(batch.shape[2:], (32, 32, 32), 0.75))
    assert parity_model.windows == windows == 12
    assert fast.model.windows == 4 + 1
    assert torch.allclose(got, expected, atol=1e-4)


class LocalisedOrgan(nn.Module):
    """A window-aware 'network': foreground only where the windowed input is bright.

    Its logits depend on the window's mean as well as the voxel, so blends of different
    window sets differ: agreement of the refined blend is a real check. Far from the organ
    it is sure (background wins by about 10 logits); at the organ's edge it is not.
    """

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        mean = batch.mean(dim=(2, 3, 4), keepdim=True)
        organ = 20.0 * (batch - 0.5) + mean
        return torch.cat([torch.zeros_like(batch), organ, organ - 5.0], dim=1)


def organ_in_a_corner() -> Volume:
    rng = np.random.default_rng(0)
    image = rng.normal(-80.0, 20.0, size=(60, 60, 40)).astype(np.float32)  # fat-like
    organ = np.zeros(image.shape, dtype=np.float32)
    organ[6:18, 8:20, 6:18] = 1.0  # an organ in one corner, its edge blurred over a few voxels
    organ = ndimage.gaussian_filter(organ, 1.5)
    image = image * (1.0 - organ) + 150.0 * organ
    return Volume(image, np.diag([2.0, 2.0, 2.0, 1.0]))


REFINE_OPTIONS = {"roi_size": 16, "spacing_mm": 2.0, "device": "cpu", "sw_batch_size": 8}


def test_refined_fast_mode_runs_fewer_windows_and_agrees_with_the_full_grid():
    full_model, refined_model = CountingModel(LocalisedOrgan()), CountingModel(LocalisedOrgan())
    full = Segmenter(full_model, arch="unet", refine_margin=None, **REFINE_OPTIONS)
    refined = Segmenter(refined_model, arch="unet", **REFINE_OPTIONS)
    assert refined.refine_margin == REFINE_MARGIN and refined.refine_core == (4, 4, 4)
    batch = full.preprocess(organ_in_a_corner()).as_tensor()[None]
    expected = full.sliding_window_logits(batch)
    got = refined.sliding_window_logits(batch)
    slices = window_slices(batch.shape[2:], (16, 16, 16), 0.75)
    assert full.model.windows == len(slices)
    assert len(_coarse_window_indices(slices)) < refined.model.windows < len(slices) / 2
    organ = expected.argmax(1) > 0
    assert organ.any()
    assert torch.equal(got.argmax(1), expected.argmax(1))
    # Near the organ's edge (where the labels are in doubt) every window with that voxel in
    # its core ran: the logits are the full grid's but for the windows of smallest weight;
    # far from it fewer windows were blended, the labels sure all the same.
    difference = (got - expected).abs()
    top2 = expected.topk(2, dim=1).values
    edge = (top2[:, 0] - top2[:, 1]) < REFINE_MARGIN
    assert edge.any()
    assert difference[:, :, edge[0]].max() < 0.01 < difference.max()


def test_refine_margin_zero_runs_the_coarse_windows_only_and_none_the_full_grid():
    counted = CountingModel(LocalisedOrgan())
    coarse_only = Segmenter(counted, arch="unet", refine_margin=0, **REFINE_OPTIONS)
    batch = coarse_only.preprocess(organ_in_a_corner()).as_tensor()[None]
    coarse_only.sliding_window_logits(batch)
    slices = window_slices(batch.shape[2:], (16, 16, 16), 0.75)
    assert counted.windows == len(_coarse_window_indices(slices))
    assert Segmenter(LocalisedOrgan(), arch="unet", mode="parity").refine_margin is None


def test_refined_fast_mode_with_doubt_everywhere_runs_the_whole_grid(unet):
    """A random U-Net's logits are nearly tied everywhere: every window is refined, and the
    result is the full grid's."""
    options = {"roi_size": 32, "spacing_mm": 4.0, "device": "cpu"}
    image = np.full((96, 96, 96), 100.0, dtype=np.float32)
    image += np.random.default_rng(1).normal(0, 5, image.shape).astype(np.float32)
    volume = Volume(image, np.diag([2.0, 2.0, 2.0, 1.0]))
    counted = CountingModel(unet)
    refined = Segmenter(counted, arch="unet", compile=False, **options)
    full = Segmenter(unet, arch="unet", refine_margin=None, compile=False, **options)
    batch = full.preprocess(volume).as_tensor()[None]
    got = refined.sliding_window_logits(batch)
    assert counted.windows == len(window_slices(batch.shape[2:], (32, 32, 32), 0.75)) == 27
    assert torch.allclose(got, full.sliding_window_logits(batch), atol=1e-4)


@pytest.mark.parametrize("margin", [-1.0, math.inf, math.nan, True, "1"])
def test_a_bad_refine_margin_is_refused(unet, margin):
    with pytest.raises(ParameterError, match="refine_margin must be a logit margin"):
        Segmenter(unet, arch="unet", refine_margin=margin, **SMALL)


def test_predict_reports_progress_and_returns_a_full_result(small_phantom, unet):
    seen: list[float] = []
    result = Segmenter(unet, arch="unet", **SMALL).predict(
        small_phantom.image, progress=seen.append
    )
    assert isinstance(result, SegmentationResult) and result.mode == "fast"
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 3
    assert result.labels.array.dtype == np.uint8
    assert set(np.unique(result.labels.array)) <= {0, 1, 2}
    assert result.seconds > 0 and set(result.timings) >= {"preprocess", "sliding_window"}
    assert len(result.lesions) == len(lesion_table(result.labels.array, small_phantom.image.array,
                                                   small_phantom.image.affine))  # fmt: skip


def test_from_checkpoint_loads_the_same_network(tmp_path, small_phantom, unet):
    path = save_checkpoint(tmp_path / "model.pt", unet, arch="unet", epoch=3, best_acc=0.5)
    loaded = Segmenter.from_checkpoint(path, mode="parity", **SMALL)
    assert loaded.arch == "unet" and loaded.checkpoint is not None
    assert loaded.checkpoint.epoch == 3
    original = Segmenter(unet, arch="unet", mode="parity", **SMALL)
    batch = original.preprocess(small_phantom.image).as_tensor()[None]
    assert torch.equal(loaded.sliding_window_logits(batch), original.sliding_window_logits(batch))


def test_from_checkpoint_takes_the_training_grid_and_window_from_config_json(tmp_path, unet):
    """A network trained on another grid or HU window gets the same at inference; options
    passed explicitly win, and nonsense in the file is refused with the key named."""
    path = save_checkpoint(tmp_path / "model.pt", unet, arch="unet", epoch=1, best_acc=0.0)
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"spacing_mm": [2, 2, 3], "window_hu": [-100, 250], "arch": "unet"})
    )
    loaded = Segmenter.from_checkpoint(path, device="cpu", roi_size=32)
    assert loaded.spacing_mm == (2.0, 2.0, 3.0) and loaded.hu_window == (-100.0, 250.0)
    chosen = Segmenter.from_checkpoint(path, device="cpu", roi_size=32, spacing_mm=8.0)
    assert chosen.spacing_mm == (8.0, 8.0, 8.0) and chosen.hu_window == (-100.0, 250.0)
    ignored = Segmenter.from_checkpoint(path, device="cpu", roi_size=32, use_config=False)
    assert ignored.spacing_mm == (1.0, 1.0, 1.0) and ignored.hu_window == (-21.0, 189.0)
    config.write_text(json.dumps({"source": "a registry entry without training settings"}))
    plain = Segmenter.from_checkpoint(path, device="cpu", roi_size=32)
    assert plain.spacing_mm == (1.0, 1.0, 1.0)
    for bad, key in (({"spacing_mm": [1, 1]}, "spacing_mm"), ({"window_hu": [300, 100]}, "window_hu"),
                     ({"spacing_mm": "1 mm"}, "spacing_mm")):  # fmt: skip
        config.write_text(json.dumps(bad))
        with pytest.raises(ParameterError, match=key):
            Segmenter.from_checkpoint(path, device="cpu")
    config.write_text("{not json")
    with pytest.raises(ParameterError, match="config.json"):
        Segmenter.from_checkpoint(path, device="cpu")


def test_fast_mode_runs_swin_window_attention_fused(small_phantom):
    from monai.networks.nets.swin_unetr import WindowAttention

    torch.manual_seed(0)
    swin = build_model("swin_unetrv2_tiny").eval()
    options = {"roi_size": 64, "spacing_mm": 5.0, "device": "cpu"}  # 4 windows (32³ is too small)
    parity = Segmenter(swin, arch="swin_unetrv2_tiny", mode="parity", **options)
    fast = Segmenter(swin, arch="swin_unetrv2_tiny", refine_margin=None, **options)

    def flags(model):
        return [m.use_flash_attention for m in model.modules() if isinstance(m, WindowAttention)]

    assert len(flags(fast.model)) == 8 and all(flags(fast.model))  # 4 stages x 2 blocks
    assert parity.model is swin and not any(flags(swin))  # the caller's model is untouched
    batch = parity.preprocess(small_phantom.image).as_tensor()[None]
    expected = parity.sliding_window_logits(batch)
    got = fast.sliding_window_logits(batch)
    assert torch.allclose(got, expected, atol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).float().mean().item() >= 0.9999
    unet = build_model("unet")
    assert Segmenter(unet, arch="unet", **SMALL).model is unet  # nothing to fuse: no copy


def _tiny_unet() -> nn.Module:
    """A two-level MONAI U-Net: real convolutions and norms, quick to compile."""
    from monai.networks.nets import UNet

    torch.manual_seed(1)
    return UNet(3, 1, 3, channels=(4, 8), strides=(2,), num_res_units=1).eval()


def test_compiled_network_gives_the_eager_logits(small_phantom):
    model = _tiny_unet()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    eager = Segmenter(model, arch="unet", compile=False, **SMALL)
    compiled = Segmenter(model, arch="unet", compile=True, **SMALL)
    batch = eager.preprocess(small_phantom.image).as_tensor()[None]
    passes = math.ceil(len(window_slices(batch.shape[2:], (32, 32, 32), 0.75)) / 2)
    expected = eager.sliding_window_logits(batch)
    got = compiled.sliding_window_logits(batch)
    assert compiled.compiled and compiled.compile  # it ran compiled
    assert not eager.compiled
    assert passes * 2 > len(window_slices(batch.shape[2:], (32, 32, 32), 0.75))  # short last batch
    assert torch.allclose(got, expected, atol=1e-4)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    # freezing folded a copy of the weights into the graph; the caller's are unchanged
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_compiling_that_fails_falls_back_to_eager(small_phantom, unet, monkeypatch, caplog):
    calls = []

    def no_compiler(model, **options):
        calls.append(options)

        def broken(windows):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

        return broken

    monkeypatch.setattr(torch, "compile", no_compiler)
    segmenter = Segmenter(unet, arch="unet", compile=True, **SMALL)
    batch = segmenter.preprocess(small_phantom.image).as_tensor()[None]
    with caplog.at_level("WARNING", logger="syntumor_core.inference"):
        got = segmenter.sliding_window_logits(batch)
    expected = Segmenter(unet, arch="unet", compile=False, **SMALL).sliding_window_logits(batch)
    assert calls == [{"dynamic": False, "options": {"freezing": True}}]
    assert torch.allclose(got, expected, atol=1e-5)
    assert "no working C++ compiler" in caplog.text and not segmenter.compile


def test_by_default_only_large_cpu_runs_compile(small_phantom, unet, monkeypatch):
    from syntumor_core.inference import COMPILE_MIN_PASSES

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model, **options: compiled.append(model) or model)
    segmenter = Segmenter(unet, arch="unet", **SMALL)
    assert segmenter.compile  # the U-Net on the CPU: allowed, decided per run
    segmenter.sliding_window_logits(segmenter.preprocess(small_phantom.image).as_tensor()[None])
    assert compiled == []  # a few windows: eager, no 15-40 s build
    assert segmenter._network_for(COMPILE_MIN_PASSES - 1) is None
    assert segmenter._network_for(COMPILE_MIN_PASSES) is unet and compiled == [unet]
    assert segmenter._network_for(1) is unet and len(compiled) == 1  # built once, then kept
    swin = Segmenter(build_model("swin_unetrv2_tiny"), arch="swin_unetrv2_tiny", **SMALL)
    assert not swin.compile  # measured 1.2x faster for a 5-minute build: not by default
    assert not Segmenter(unet, arch="unet", mode="parity", **SMALL).compile


def test_a_large_volume_compiles_before_its_coarse_pass(small_phantom, unet, monkeypatch):
    """Compiling is decided on the whole grid's passes, not on the refined run's parts (the
    coarse pass alone may be under the threshold)."""
    calls = []

    def fake_compile(model, **options):
        def counted(windows):
            calls.append(windows.shape[0])
            return model(windows)

        return counted

    monkeypatch.setattr(torch, "compile", fake_compile)
    segmenter = Segmenter(unet, arch="unet", **SMALL)
    assert segmenter.refine_margin is not None
    batch = segmenter.preprocess(small_phantom.image).as_tensor()[None]
    slices = window_slices(batch.shape[2:], (32, 32, 32), 0.75)
    full_grid = math.ceil(len(slices) / segmenter.sw_batch_size)
    coarse = math.ceil(len(_coarse_window_indices(slices)) / segmenter.sw_batch_size)
    assert coarse < full_grid
    segmenter._compile_from = full_grid  # this volume is just large enough to compile
    forwards = []
    original = segmenter._forward
    monkeypatch.setattr(
        segmenter,
        "_forward",
        lambda w, compiled=False: forwards.append(compiled) or original(w, compiled),
    )
    segmenter.sliding_window_logits(batch)
    assert forwards and all(forwards)  # every pass, the coarse ones first, ran compiled
    assert len(calls) == len(forwards)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "fsat"}, "did you mean 'fast'"),
        ({"mode": "parity", "sw_batch_size": 4}, "sw_batch_size=1"),
        ({"overlap": 1.0}, "overlap must be in"),
        ({"roi_size": (32, 0, 32)}, "roi_size"),
        ({"sw_batch_size": 0}, "sw_batch_size"),
        ({"hu_window": (189, -21)}, "low < high"),
        ({"arch": "unte"}, "did you mean 'unet'"),
        ({"amp": True, "device": "cpu"}, "needs fast mode on CUDA"),
        ({"compile": "yes"}, "compile must be True, False or None"),
        ({"compile": True, "mode": "parity"}, "compile needs fast mode"),
    ],
)
def test_bad_options_raise_with_the_rule(unet, options, message):
    arguments = {"arch": "unet", **options}
    with pytest.raises(ParameterError, match=message):
        Segmenter(unet, **arguments)


# ------------------------------------------------------------------------------ geometry


def _reoriented(volume: Volume, order: tuple[int, int, int], flips: tuple[bool, ...]) -> Volume:
    """The same image with its array axes permuted and flipped, affine adjusted to match."""
    array = np.transpose(volume.array, order)
    to_old = np.zeros((4, 4))
    to_old[3, 3] = 1.0
    for new_axis, old_axis in enumerate(order):
        length = volume.shape[old_axis]
        if flips[new_axis]:
            to_old[old_axis, new_axis], to_old[old_axis, 3] = -1.0, length - 1.0
        else:
            to_old[old_axis, new_axis] = 1.0
    for axis, flipped in enumerate(flips):
        if flipped:
            array = np.flip(array, axis)
    return Volume(np.ascontiguousarray(array), volume.affine @ to_old)


def _back(labels: np.ndarray, order, flips) -> np.ndarray:
    for axis, flipped in enumerate(flips):
        if flipped:
            labels = np.flip(labels, axis)
    return np.transpose(labels, np.argsort(order))


def test_non_ras_anisotropic_input_comes_back_on_its_own_grid():
    ras = make_phantom(seed=5, shape=(128, 128, 32), spacing=(0.7, 0.7, 2.5), noise_sd=0).image
    order, flips = (2, 0, 1), (True, False, True)
    odd = _reoriented(ras, order, flips)
    assert odd.axcodes != ("R", "A", "S") and odd.spacing == pytest.approx((2.5, 0.7, 0.7))
    segmenter = Segmenter(IntensityClassifier(), arch="unet", roi_size=32, spacing_mm=1.0)
    result = segmenter.predict(odd)
    assert result.labels.shape == odd.shape
    assert np.array_equal(result.labels.affine, odd.affine)
    # before post-processing, the labels sit where the tissue is: the same as classifying the
    # input voxels directly (a wrong flip or axis order agrees on 40-70 % only)
    preprocessed = segmenter.preprocess(odd)
    logits = segmenter.sliding_window_logits(preprocessed.as_tensor()[None])
    raw = segmenter.restore(logits[0], preprocessed)
    assert np.mean(raw == classify_hu(odd.array)) > 0.97
    # and the same image in RAS order gives the same labels
    from_ras = segmenter.predict(ras).labels.array
    assert np.mean(_back(result.labels.array, order, flips) == from_ras) > 0.999


# ------------------------------------------------------------------------------ post-processing


def test_postprocess_keeps_the_largest_liver_component():
    labels = np.zeros((40, 30, 30), dtype=np.uint8)
    labels[2:12, 2:12, 2:12] = 1  # 1000 voxels
    labels[20:36, 5:25, 5:25] = 1  # 6400 voxels
    labels[36, 25, 25] = 1  # touches the big one by a corner only: not 6-connected
    result = postprocess(labels)
    big = np.pad(np.ones((16, 20, 20), bool), ((20, 4), (5, 5), (5, 5)))
    assert result.dtype == np.uint8 and np.array_equal(result == 1, big)


def test_postprocess_keeps_tumor_within_30_voxels_of_the_liver():
    labels = np.zeros((80, 20, 20), dtype=np.uint8)
    labels[0:10, 5:15, 5:15] = 1
    labels[39, 10, 10] = 2  # 30 steps from the liver's last row (9)
    labels[40, 10, 10] = 2  # 31 steps
    labels[9:11, 14:17, 14:17] = 2  # touching the liver
    result = postprocess(labels)
    assert result[39, 10, 10] == 2 and result[40, 10, 10] == 0
    assert (result[9:11, 14:17, 14:17] == 2).all()
    assert np.array_equal(result == 1, labels == 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_postprocess_matches_30_iterations_of_binary_dilation(seed):
    rng = np.random.default_rng(seed)
    labels = np.zeros((70, 64, 50), dtype=np.uint8)
    centre = rng.integers([5, 5, 5], [65, 59, 45])
    liver = np.zeros(labels.shape, bool)
    liver[tuple(slice(max(c - 6, 0), c + 6) for c in centre)] = True
    labels[liver] = 1
    labels[(rng.random(labels.shape) < 0.01) & ~liver] = 2
    reference = ndimage.binary_dilation(liver, iterations=30)  # the original's operation
    result = postprocess(labels)
    assert np.array_equal(result == 2, (labels == 2) & reference)
    assert np.array_equal(result == 1, liver)


def test_postprocess_without_liver_is_all_background():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[2:4, 2:4, 2:4] = 2
    assert not postprocess(labels).any()


def test_postprocess_refuses_other_values():
    with pytest.raises(MaskError, match="only 0"):
        postprocess(np.full((4, 4, 4), 3, dtype=np.uint8))


# ------------------------------------------------------------------------------ lesion table


def test_lesion_table_measures_boxes():
    labels = np.zeros((40, 40, 20), dtype=np.uint8)
    labels[5:15, 5:11, 2:6] = 2  # 10 x 6 x 4 voxels
    labels[30:33, 30:32, 10:11] = 2  # 3 x 2 x 1
    image = np.full(labels.shape, 40.0, dtype=np.float32)
    image[5:15, 5:11, 2:6] = 60.0
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[:3, 3] = (-10.0, 20.0, 5.0)
    rows = lesion_table(labels, image, affine)
    assert [row.index for row in rows] == [1, 2] and [row.voxels for row in rows] == [240, 6]
    big = rows[0]
    assert big.volume_ml == pytest.approx(240 * 0.8 * 0.8 * 2.5 / 1000)
    assert big.longest_axial_diameter_mm == pytest.approx(math.hypot(10 * 0.8, 6 * 0.8))
    assert big.centroid_voxel == pytest.approx((9.5, 7.5, 3.5))
    assert big.centroid_mm == pytest.approx((-10 + 9.5 * 0.8, 20 + 7.5 * 0.8, 5 + 3.5 * 2.5))
    assert big.mean_hu == pytest.approx(60.0) and rows[1].mean_hu == pytest.approx(40.0)


def test_lesion_table_uses_the_axial_plane_of_a_permuted_grid():
    labels = np.zeros((12, 30, 30), dtype=np.uint8)
    labels[2:10, 5:25, 10:13] = 2  # 8 slices along axis 0, which runs inferior-superior
    affine = np.zeros((4, 4))
    affine[2, 0], affine[0, 1], affine[1, 2], affine[3, 3] = 3.0, 0.7, 0.7, 1.0
    (row,) = lesion_table(labels, np.zeros(labels.shape), affine)
    assert row.longest_axial_diameter_mm == pytest.approx(math.hypot(20 * 0.7, 3 * 0.7))


def _brute_force_diameter(component: np.ndarray, axial_axis: int, matrix: np.ndarray) -> float:
    in_plane = [axis for axis in range(3) if axis != axial_axis]
    longest = 0.0
    for position in range(component.shape[axial_axis]):
        pixels = np.argwhere(np.take(component, position, axis=axial_axis))
        corners = [p + (di, dj) for p in pixels for di in (-0.5, 0.5) for dj in (-0.5, 0.5)]
        points = np.array(corners).reshape(-1, 2) @ matrix[:3, in_plane].T
        if len(points):
            longest = max(longest, ndimage.maximum(
                np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))))  # fmt: skip
    return longest


def test_lesion_table_diameters_match_brute_force_on_random_blobs():
    rng = np.random.default_rng(7)
    field = ndimage.gaussian_filter(rng.standard_normal((30, 26, 12)), 1.2)
    labels = np.where(field > 0.12, 2, 0).astype(np.uint8)
    affine = np.array([[0.0, 0.9, 0.1, 5], [0.8, 0.0, 0.0, -3], [0.0, 0.05, 2.0, 1], [0, 0, 0, 1]])
    rows = lesion_table(labels, field, affine)
    components, count = ndimage.label(labels == 2, structure=np.ones((3, 3, 3)))
    assert len(rows) == count > 10
    assert any(row.voxels > 40 for row in rows)  # some slices take the convex-hull path
    by_centroid = {tuple(np.round(row.centroid_voxel, 6)): row for row in rows}
    for label in range(1, count + 1):
        component = components == label
        centroid = tuple(np.round(ndimage.center_of_mass(component), 6))
        row = by_centroid[centroid]
        assert row.voxels == component.sum()
        assert row.longest_axial_diameter_mm == pytest.approx(
            _brute_force_diameter(component, 2, affine)
        )
        assert row.mean_hu == pytest.approx(field[component].mean())


def test_lesion_table_of_a_scan_without_tumor_is_empty():
    labels = np.ones((8, 8, 8), dtype=np.uint8)
    assert lesion_table(labels, np.zeros((8, 8, 8)), np.eye(4)) == ()
    with pytest.raises(MaskError, match="does not match"):
        lesion_table(labels, np.zeros((8, 8, 7)), np.eye(4))
