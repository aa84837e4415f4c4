"""Segmentation options: one set of defaults, resolved per network and device, readable
without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from syntumor_core.errors import ParameterError
from syntumor_core.segmentation import (
    COMPILE_MIN_PASSES,
    DEFAULT_OVERLAP,
    REFINE_MARGIN,
    RunOptions,
)


def test_the_defaults_are_read_without_torch():
    """The app reads the defaults in its request schemas and CLI: no network code loaded."""
    code = (
        "import json, sys\n"
        "from syntumor_core.segmentation import DEFAULT_OVERLAP, LesionFilter, MODES\n"
        "print(json.dumps(sorted(m for m in ('torch', 'monai', 'scipy') if m in sys.modules)))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(completed.stdout) == []


def test_the_authors_overlap_is_the_default():
    assert DEFAULT_OVERLAP == 0.75 and RunOptions().overlap == DEFAULT_OVERLAP


@pytest.mark.parametrize(
    ("options", "arch", "device", "expected"),
    [
        ({}, "unet", "cpu", {"sw_batch_size": 2, "autocast": False, "channels_last": False,
                             "compile_from": COMPILE_MIN_PASSES, "refine_margin": REFINE_MARGIN}),
        ({}, "swin_unetrv2_tiny", "cpu", {"sw_batch_size": 1, "compile_from": None}),
        ({}, "unet", "cuda", {"sw_batch_size": 4, "autocast": True, "channels_last": True,
                              "compile_from": None}),
        ({"mode": "parity"}, "unet", "cuda", {"sw_batch_size": 1, "autocast": False,
                                              "channels_last": False, "refine_margin": None}),
        ({"compile": True, "amp": False}, "swin_unetrv2_tiny", "cuda",
         {"compile_from": 0, "autocast": False}),
        ({"refine_margin": None, "sw_batch_size": 3}, "unet", "cpu",
         {"refine_margin": None, "sw_batch_size": 3}),
    ],
)  # fmt: skip
def test_options_resolve_per_network_and_device(options, arch, device, expected):
    plan = RunOptions(**options).resolve(arch, device)
    assert {key: getattr(plan, key) for key in expected} == expected
    assert plan.as_dict()["overlap"] == DEFAULT_OVERLAP


def test_amp_is_refused_where_it_cannot_run():
    with pytest.raises(ParameterError, match="needs fast mode on CUDA"):
        RunOptions(amp=True).resolve("unet", "cpu")
    with pytest.raises(ParameterError, match="needs fast mode on CUDA"):
        RunOptions(mode="parity", amp=True).resolve("unet", "cuda")
