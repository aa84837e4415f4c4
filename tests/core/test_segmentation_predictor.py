"""Predictor: parity with MONAI, fast-mode agreement, run-time options per call, geometry.

Small settings keep the file fast: phantoms at 4 mm resampled to 8 mm (or 2 mm), windows of
32³, one torch thread (faster than two on a shared two-core machine).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage
from torch import nn

from syntumor_core.checkpoints import save_checkpoint
from syntumor_core.errors import ParameterError
from syntumor_core.models import build_model
from syntumor_core.phantom import make_phantom
from syntumor_core.segmentation import (
    COMPILE_MIN_PASSES,
    DEFAULT_OVERLAP,
    REFINE_MARGIN,
    Predictor,
    RunOptions,
    SegmentationResult,
    lesion_table,
    window_slices,
)
from syntumor_core.segmentation.refine import coarse_window_indices
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
    predictor = Predictor(unet, arch="unet", **SMALL)
    batch = predictor.preprocess(small_phantom.image).as_tensor()[None]
    ours = predictor.sliding_window_logits(batch, mode="parity")
    with torch.no_grad():
        direct = sliding_window_inference(
            batch, roi_size=(32, 32, 32), sw_batch_size=1, predictor=unet, overlap=0.75,
            mode="gaussian",
        )  # fmt: skip
    assert ours.shape == (1, 3, *batch.shape[2:])
    assert torch.equal(ours, direct)


def test_fast_mode_agrees_with_parity(small_phantom, unet):
    predictor = Predictor(unet, arch="unet", **SMALL)
    plan = predictor.plan()
    assert plan.mode == "fast" and plan.sw_batch_size > 1
    assert not plan.channels_last  # only on CUDA: no faster on the CPU
    batch = predictor.preprocess(small_phantom.image).as_tensor()[None]
    parity_logits = predictor.sliding_window_logits(batch, mode="parity")
    fast_logits = predictor.sliding_window_logits(batch)
    agreement = (parity_logits.argmax(1) == fast_logits.argmax(1)).float().mean().item()
    assert agreement >= 0.999
    parity_result = predictor.predict(small_phantom.image, mode="parity")
    fast_result = predictor.predict(small_phantom.image)
    assert (parity_result.mode, fast_result.mode) == ("parity", "fast")
    same = np.mean(parity_result.labels.array == fast_result.labels.array)
    assert same >= 0.999
    # the caller's model keeps its layout: fast mode converted a copy
    assert next(unet.parameters()).is_contiguous()


def test_fast_mode_runs_one_window_for_all_constant_windows(unet):
    image = np.full((48, 40, 40), -1000.0, dtype=np.float32)  # air...
    image[40:46, 8:32, 8:32] = 100.0  # ...and one block of tissue at one end
    volume = Volume(image, np.diag([2.0, 2.0, 2.0, 1.0]))
    counted = CountingModel(unet)
    predictor = Predictor(counted, arch="unet", roi_size=32, spacing_mm=2.0, device="cpu")
    batch = predictor.preprocess(volume).as_tensor()[None]
    expected = predictor.sliding_window_logits(batch, mode="parity")
    windows = len(window_slices(batch.shape[2:], (32, 32, 32), 0.75))
    assert counted.windows == windows == 12
    got = predictor.sliding_window_logits(batch)
    assert predictor.fast.model is counted and counted.windows - windows == 4 + 1
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


REFINE_OPTIONS = {"roi_size": 16, "spacing_mm": 2.0, "device": "cpu"}


def test_refined_fast_mode_runs_fewer_windows_and_agrees_with_the_full_grid():
    from syntumor_core.segmentation.refine import refine_core

    counted = CountingModel(LocalisedOrgan())
    predictor = Predictor(counted, arch="unet", **REFINE_OPTIONS)
    assert predictor.plan().refine_margin == REFINE_MARGIN
    assert refine_core(predictor.roi_size) == (4, 4, 4)
    batch = predictor.preprocess(organ_in_a_corner()).as_tensor()[None]
    expected = predictor.sliding_window_logits(batch, refine_margin=None, sw_batch_size=8)
    slices = window_slices(batch.shape[2:], (16, 16, 16), 0.75)
    assert counted.windows == len(slices)
    got = predictor.sliding_window_logits(batch, sw_batch_size=8)
    refined_windows = counted.windows - len(slices)
    assert len(coarse_window_indices(slices)) < refined_windows < len(slices) / 2
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
    predictor = Predictor(counted, arch="unet", **REFINE_OPTIONS)
    batch = predictor.preprocess(organ_in_a_corner()).as_tensor()[None]
    predictor.sliding_window_logits(batch, refine_margin=0, sw_batch_size=8)
    slices = window_slices(batch.shape[2:], (16, 16, 16), 0.75)
    assert counted.windows == len(coarse_window_indices(slices))
    assert predictor.plan(mode="parity").refine_margin is None


def test_refined_fast_mode_with_doubt_everywhere_runs_the_whole_grid(unet):
    """A random U-Net's logits are nearly tied everywhere: every window is refined, and the
    result is the full grid's."""
    options = {"roi_size": 32, "spacing_mm": 4.0, "device": "cpu"}
    image = np.full((96, 96, 96), 100.0, dtype=np.float32)
    image += np.random.default_rng(1).normal(0, 5, image.shape).astype(np.float32)
    volume = Volume(image, np.diag([2.0, 2.0, 2.0, 1.0]))
    counted = CountingModel(unet)
    predictor = Predictor(counted, arch="unet", **options)
    batch = predictor.preprocess(volume).as_tensor()[None]
    got = predictor.sliding_window_logits(batch, compile=False)
    assert counted.windows == len(window_slices(batch.shape[2:], (32, 32, 32), 0.75)) == 27
    full = predictor.sliding_window_logits(batch, refine_margin=None, compile=False)
    assert torch.allclose(got, full, atol=1e-4)


@pytest.mark.parametrize("margin", [-1.0, math.inf, math.nan, True, "1"])
def test_a_bad_refine_margin_is_refused(unet, margin):
    predictor = Predictor(unet, arch="unet", **SMALL)
    with pytest.raises(ParameterError, match="refine_margin must be a logit margin"):
        predictor.plan(refine_margin=margin)
    assert predictor.plan(mode="parity", refine_margin=margin).refine_margin is None  # unused


def test_predict_reports_progress_and_returns_a_full_result(small_phantom, unet):
    seen: list[float] = []
    result = Predictor(unet, arch="unet", **SMALL).predict(
        small_phantom.image, progress=seen.append
    )
    assert isinstance(result, SegmentationResult) and result.mode == "fast"
    assert result.options["overlap"] == DEFAULT_OVERLAP and result.options["sw_batch_size"] == 2
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 3
    assert result.labels.array.dtype == np.uint8
    assert set(np.unique(result.labels.array)) <= {0, 1, 2}
    assert result.seconds > 0 and set(result.timings) >= {"preprocess", "sliding_window"}
    assert len(result.lesions) == len(lesion_table(result.labels.array, small_phantom.image.array,
                                                   small_phantom.image.affine))  # fmt: skip


def test_from_checkpoint_loads_the_same_network(tmp_path, small_phantom, unet):
    path = save_checkpoint(tmp_path / "model.pt", unet, arch="unet", epoch=3, best_acc=0.5)
    loaded = Predictor.from_checkpoint(path, **SMALL)
    assert loaded.arch == "unet" and loaded.checkpoint is not None
    assert loaded.checkpoint.epoch == 3
    original = Predictor(unet, arch="unet", **SMALL)
    batch = original.preprocess(small_phantom.image).as_tensor()[None]
    assert torch.equal(loaded.sliding_window_logits(batch, mode="parity"),
                       original.sliding_window_logits(batch, mode="parity"))  # fmt: skip


def test_from_checkpoint_takes_the_training_grid_and_window_from_config_json(tmp_path, unet):
    """A network trained on another grid or HU window gets the same at inference; options
    passed explicitly win, and nonsense in the file is refused with the key named."""
    path = save_checkpoint(tmp_path / "model.pt", unet, arch="unet", epoch=1, best_acc=0.0)
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"spacing_mm": [2, 2, 3], "window_hu": [-100, 250], "arch": "unet"})
    )
    loaded = Predictor.from_checkpoint(path, device="cpu", roi_size=32)
    assert loaded.spacing_mm == (2.0, 2.0, 3.0) and loaded.hu_window == (-100.0, 250.0)
    chosen = Predictor.from_checkpoint(path, device="cpu", roi_size=32, spacing_mm=8.0)
    assert chosen.spacing_mm == (8.0, 8.0, 8.0) and chosen.hu_window == (-100.0, 250.0)
    ignored = Predictor.from_checkpoint(path, device="cpu", roi_size=32, use_config=False)
    assert ignored.spacing_mm == (1.0, 1.0, 1.0) and ignored.hu_window == (-21.0, 189.0)
    config.write_text(json.dumps({"source": "a registry entry without training settings"}))
    plain = Predictor.from_checkpoint(path, device="cpu", roi_size=32)
    assert plain.spacing_mm == (1.0, 1.0, 1.0)
    for bad, key in (({"spacing_mm": [1, 1]}, "spacing_mm"), ({"window_hu": [300, 100]}, "window_hu"),
                     ({"spacing_mm": "1 mm"}, "spacing_mm")):  # fmt: skip
        config.write_text(json.dumps(bad))
        with pytest.raises(ParameterError, match=key):
            Predictor.from_checkpoint(path, device="cpu")
    config.write_text("{not json")
    with pytest.raises(ParameterError, match="config.json"):
        Predictor.from_checkpoint(path, device="cpu")


def test_fast_mode_runs_swin_window_attention_fused(small_phantom):
    from monai.networks.nets.swin_unetr import WindowAttention

    torch.manual_seed(0)
    swin = build_model("swin_unetrv2_tiny").eval()
    options = {"roi_size": 64, "spacing_mm": 5.0, "device": "cpu"}  # 4 windows (32³ is too small)
    predictor = Predictor(swin, arch="swin_unetrv2_tiny", **options)

    def flags(model):
        return [m.use_flash_attention for m in model.modules() if isinstance(m, WindowAttention)]

    assert len(flags(predictor.fast.model)) == 8 and all(flags(predictor.fast.model))  # 4 x 2
    assert predictor.model is swin and not any(flags(swin))  # the caller's model is untouched
    batch = predictor.preprocess(small_phantom.image).as_tensor()[None]
    expected = predictor.sliding_window_logits(batch, mode="parity")
    got = predictor.sliding_window_logits(batch, refine_margin=None)
    assert torch.allclose(got, expected, atol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).float().mean().item() >= 0.9999
    unet = build_model("unet")
    assert Predictor(unet, arch="unet", **SMALL).fast.model is unet  # nothing to fuse: no copy


def _tiny_unet() -> nn.Module:
    """A two-level MONAI U-Net: real convolutions and norms, quick to compile."""
    from monai.networks.nets import UNet

    torch.manual_seed(1)
    return UNet(3, 1, 3, channels=(4, 8), strides=(2,), num_res_units=1).eval()


def test_compiled_network_gives_the_eager_logits(small_phantom):
    model = _tiny_unet()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    predictor = Predictor(model, arch="unet", **SMALL)
    batch = predictor.preprocess(small_phantom.image).as_tensor()[None]
    passes = math.ceil(len(window_slices(batch.shape[2:], (32, 32, 32), 0.75)) / 2)
    expected = predictor.sliding_window_logits(batch, compile=False)
    assert not predictor.fast.compiled
    got = predictor.sliding_window_logits(batch, compile=True)
    assert predictor.fast.compiled and not predictor.fast.compile_failed  # it ran compiled
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
    predictor = Predictor(unet, arch="unet", **SMALL)
    batch = predictor.preprocess(small_phantom.image).as_tensor()[None]
    with caplog.at_level("WARNING", logger="syntumor_core.segmentation.network"):
        got = predictor.sliding_window_logits(batch, compile=True)
    expected = predictor.sliding_window_logits(batch, compile=False)
    assert calls == [{"dynamic": False, "options": {"freezing": True}}]
    assert torch.allclose(got, expected, atol=1e-5)
    assert "no working C++ compiler" in caplog.text and predictor.fast.compile_failed
    predictor.sliding_window_logits(batch, compile=True)  # eager from then on: no second try
    assert len(calls) == 1 and not predictor.fast.compiled


def test_by_default_only_large_cpu_runs_compile(small_phantom, unet, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model, **options: compiled.append(model) or model)
    predictor = Predictor(unet, arch="unet", **SMALL)
    plan = predictor.plan()
    assert plan.compile_from == COMPILE_MIN_PASSES  # the U-Net on the CPU: decided per run
    predictor.sliding_window_logits(predictor.preprocess(small_phantom.image).as_tensor()[None])
    assert compiled == []  # a few windows: eager, no 15-40 s build
    assert predictor.fast.compiled_for(COMPILE_MIN_PASSES - 1, plan) is None
    assert predictor.fast.compiled_for(COMPILE_MIN_PASSES, plan) is unet and compiled == [unet]
    assert predictor.fast.compiled_for(1, plan) is unet and len(compiled) == 1  # built once, kept
    assert predictor.fast.compiled_for(COMPILE_MIN_PASSES, predictor.plan(compile=False)) is None
    swin = Predictor(build_model("swin_unetrv2_tiny"), arch="swin_unetrv2_tiny", **SMALL)
    assert swin.plan().compile_from is None  # 1.2x faster for a 5-minute build: not by default
    assert predictor.plan(mode="parity").compile_from is None


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
    predictor = Predictor(unet, arch="unet", **SMALL)
    plan = predictor.plan()
    assert plan.refine_margin is not None
    batch = predictor.preprocess(small_phantom.image).as_tensor()[None]
    slices = window_slices(batch.shape[2:], (32, 32, 32), 0.75)
    full_grid = math.ceil(len(slices) / plan.sw_batch_size)
    coarse = math.ceil(len(coarse_window_indices(slices)) / plan.sw_batch_size)
    assert coarse < full_grid
    just_large_enough = dataclasses.replace(plan, compile_from=full_grid)  # for this volume
    monkeypatch.setattr(predictor, "plan", lambda **options: just_large_enough)
    forwards = []
    original = predictor.fast.forward
    monkeypatch.setattr(
        predictor.fast,
        "forward",
        lambda w, plan, compiled=False: forwards.append(compiled) or original(w, plan, compiled),
    )
    predictor.sliding_window_logits(batch)
    assert forwards and all(forwards)  # every pass, the coarse ones first, ran compiled
    assert len(calls) == len(forwards)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"roi_size": (32, 0, 32)}, "roi_size"),
        ({"hu_window": (189, -21)}, "low < high"),
        ({"arch": "unte"}, "did you mean 'unet'"),
    ],
)
def test_bad_settings_raise_with_the_rule(unet, settings, message):
    arguments = {"arch": "unet", **settings}
    with pytest.raises(ParameterError, match=message):
        Predictor(unet, **arguments)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "fsat"}, "did you mean 'fast'"),
        ({"mode": "parity", "sw_batch_size": 4}, "sw_batch_size=1"),
        ({"overlap": 1.0}, "overlap must be in"),
        ({"overlap": -0.1}, "overlap must be in"),
        ({"sw_batch_size": 0}, "sw_batch_size"),
        ({"amp": True}, "needs fast mode on CUDA"),
        ({"compile": "yes"}, "compile must be True, False or None"),
        ({"compile": True, "mode": "parity"}, "compile needs fast mode"),
    ],
)
def test_bad_run_options_raise_with_the_rule(unet, small_phantom, options, message):
    predictor = Predictor(unet, arch="unet", **SMALL)
    with pytest.raises(ParameterError, match=message):
        predictor.predict(small_phantom.image, **options)
    with pytest.raises(ParameterError, match=message):
        predictor.plan(**options)


def test_run_options_are_per_call_and_default_to_the_one_set_of_defaults(small_phantom, unet):
    """One loaded predictor serves any mode and overlap: a call's options never stick, and
    each call gives what a fresh predictor gives for the same options."""
    import inspect

    assert DEFAULT_OVERLAP == 0.75 and RunOptions().overlap == DEFAULT_OVERLAP
    defaults = inspect.signature(Predictor.predict).parameters
    for name in ("mode", "overlap", "sw_batch_size", "amp", "refine_margin", "compile"):
        assert defaults[name].default == getattr(RunOptions(), name), name
    assert "overlap" not in inspect.signature(Predictor).parameters  # not bound at load
    with pytest.raises(ParameterError, match="did you mean 'overlap'"):
        Predictor(unet, arch="unet", **SMALL).plan(overlp=0.5)
    shared = Predictor(unet, arch="unet", **SMALL)
    for options in ({"mode": "parity"}, {"overlap": 0.5}, {}, {"overlap": 0.5, "mode": "parity"}):
        got = shared.predict(small_phantom.image, compile=False, **options)
        fresh = Predictor(unet, arch="unet", **SMALL)
        expected = fresh.predict(small_phantom.image, compile=False, **options)
        assert np.array_equal(got.labels.array, expected.labels.array), options
        assert got.options["overlap"] == options.get("overlap", DEFAULT_OVERLAP)
        assert got.mode == options.get("mode", "fast")


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
    predictor = Predictor(IntensityClassifier(), arch="unet", roi_size=32, spacing_mm=1.0)
    result = predictor.predict(odd)
    assert result.labels.shape == odd.shape
    assert np.array_equal(result.labels.affine, odd.affine)
    # before post-processing, the labels sit where the tissue is: the same as classifying the
    # input voxels directly (a wrong flip or axis order agrees on 40-70 % only)
    preprocessed = predictor.preprocess(odd)
    logits = predictor.sliding_window_logits(preprocessed.as_tensor()[None])
    raw = predictor.restore(logits[0], preprocessed)
    assert np.mean(raw == classify_hu(odd.array)) > 0.97
    # and the same image in RAS order gives the same labels
    from_ras = predictor.predict(ras).labels.array
    assert np.mean(_back(result.labels.array, order, flips) == from_ras) > 0.999
