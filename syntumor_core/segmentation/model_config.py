"""What a model's ``config.json`` tells inference: the grid and HU window it was trained on.

``syntumor train`` writes a ``config.json`` beside ``model.pt``; a network trained on a
1.5 mm grid or another HU window must see the same at inference
(:meth:`~syntumor_core.segmentation.predictor.Predictor.from_checkpoint` reads it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from syntumor_core.errors import ParameterError

MODEL_CONFIG_FILE = "config.json"  # beside model.pt: what the network was trained on


def recorded_settings(config: Mapping) -> dict:
    """The :class:`~syntumor_core.segmentation.predictor.Predictor` settings a model's
    ``config.json`` records.

    ``spacing_mm`` (three mm values) and ``window_hu`` (low, high) become ``spacing_mm`` and
    ``hu_window``: a network trained on a 1.5 mm grid or another window must see the same at
    inference. Keys that are absent are left out (the published settings apply); the crop
    size is not taken over, since the network is fully convolutional and the sliding window
    stays the caller's choice.

    Raises:
        ParameterError: a recorded value is malformed or out of range.
    """
    settings = {}
    spacing = config.get("spacing_mm")
    if spacing is not None:
        try:
            values = tuple(float(v) for v in spacing)
        except (TypeError, ValueError):
            values = ()
        if len(values) != 3 or not all(0.1 <= v <= 10.0 for v in values):
            raise ParameterError(
                f"{MODEL_CONFIG_FILE}: spacing_mm must be three values of 0.1-10 mm, got {spacing!r}"
            )
        settings["spacing_mm"] = values
    window = config.get("window_hu")
    if window is not None:
        try:
            low, high = (float(v) for v in window)
        except (TypeError, ValueError):
            low = high = math.nan
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ParameterError(
                f"{MODEL_CONFIG_FILE}: window_hu must be [low, high] HU with low < high, got {window!r}"
            )
        settings["hu_window"] = (low, high)
    return settings


def settings_beside(checkpoint: str | Path) -> dict:
    """:func:`recorded_settings` of the ``config.json`` beside ``checkpoint``; ``{}`` when
    there is none.

    Raises:
        ParameterError: the file is unreadable, not a JSON object, or records nonsense.
    """
    path = Path(checkpoint).parent / MODEL_CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ParameterError(f"cannot read {path}: {error}") from error
    if not isinstance(config, dict):
        raise ParameterError(f"{path} must hold a JSON object")
    return recorded_settings(config)
