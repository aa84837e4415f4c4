"""The lesion filter on constructed label maps: minimum volume, organ contact, threshold."""

from __future__ import annotations

import numpy as np
import pytest

from syntumor_core.errors import ParameterError
from syntumor_core.inference import lesion_table
from syntumor_core.postprocess import (
    DEFAULT_MIN_LESION_MM3,
    NO_FILTER,
    LesionFilter,
    filter_lesions,
    labels_from_probabilities,
)


def _liver_with_lesions() -> np.ndarray:
    """A 40³ map: a liver block, a 5³ tumor inside it, a speck inside it, a 4³ tumor sticking
    out of its edge, a 3³ tumor beside it with a one-voxel gap, a 5³ tumor far away."""
    labels = np.zeros((40, 40, 40), dtype=np.uint8)
    labels[5:25, 5:25, 5:25] = 1
    labels[10:15, 10:15, 10:15] = 2  # inside, 125 voxels
    labels[20, 20, 20] = 2  # a speck inside, 1 voxel
    labels[23:27, 8:12, 8:12] = 2  # across the edge, 64 voxels
    labels[26:29, 15:18, 15:18] = 2  # 1 voxel gap from the liver (x = 25 is free), 27 voxels
    labels[33:38, 33:38, 33:38] = 2  # far away, 125 voxels
    return labels


def _sizes(labels: np.ndarray) -> list[int]:
    return sorted(row.voxels for row in lesion_table(labels, np.zeros(labels.shape), np.eye(4)))


def test_organ_contact_keeps_tumors_inside_or_touching_the_liver():
    labels = _liver_with_lesions()
    assert _sizes(labels) == [1, 27, 64, 125, 125]
    cleaned, report = filter_lesions(
        labels, 1.0, LesionFilter(min_volume_mm3=0, organ_contact=True)
    )
    assert _sizes(cleaned) == [1, 64, 125]  # the gap one and the far one are gone
    assert report == {"lesions_in": 5, "removed_small": 0, "removed_outside_organ": 2}
    assert (cleaned[26:29, 15:18, 15:18] == 0).all() and (cleaned[33:38, 33:38, 33:38] == 0).all()
    assert (cleaned[labels != 2] == labels[labels != 2]).all()  # nothing else changed


def test_min_volume_drops_small_components_in_mm3_of_the_grid():
    labels = _liver_with_lesions()
    cleaned, report = filter_lesions(
        labels, 1.0, LesionFilter(min_volume_mm3=100, organ_contact=False)
    )
    assert _sizes(cleaned) == [125, 125]
    assert report["removed_small"] == 3 and report["removed_outside_organ"] == 0
    assert cleaned[20, 20, 20] == 1  # a speck inside the liver becomes liver, not a hole
    assert (cleaned[26:29, 15:18, 15:18] == 0).all()  # one outside becomes background
    # On a 2 mm grid (8 mm³ a voxel) the 27-voxel tumor is 216 mm³ and stays.
    coarse, _ = filter_lesions(labels, 8.0, LesionFilter(min_volume_mm3=100, organ_contact=False))
    assert _sizes(coarse) == [27, 64, 125, 125]


def test_the_defaults_together_and_no_filter():
    labels = _liver_with_lesions()
    cleaned, _ = filter_lesions(labels, 1.0, LesionFilter())
    assert LesionFilter().organ_contact and LesionFilter().tumor_probability is None
    assert _sizes(cleaned) == [s for s in (64, 125) if s >= DEFAULT_MIN_LESION_MM3]
    untouched, report = filter_lesions(labels, 1.0, NO_FILTER)
    assert (untouched == labels).all() and report["removed_small"] == 0


def test_without_any_liver_organ_contact_removes_every_tumor():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[2:5, 2:5, 2:5] = 2
    cleaned, report = filter_lesions(labels, 1.0, LesionFilter(min_volume_mm3=0))
    assert not cleaned.any() and report["removed_outside_organ"] == 1


def test_probability_threshold_makes_tumor_only_where_it_is_likely_enough():
    probs = np.zeros((3, 4, 1, 1), dtype=np.float32)
    probs[:, :, 0, 0] = np.array([[0.1, 0.5, 0.2, 0.0], [0.3, 0.1, 0.4, 0.3], [0.6, 0.4, 0.4, 0.7]])
    assert labels_from_probabilities(probs, 0.65)[:, 0, 0].tolist() == [1, 0, 1, 2]
    assert labels_from_probabilities(probs, 0.35)[:, 0, 0].tolist() == [2, 2, 2, 2]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_volume_mm3": -1}, "finite and >= 0"),
        ({"min_volume_mm3": float("nan")}, "finite and >= 0"),
        ({"tumor_probability": 1.0}, r"in \(0, 1\)"),
        ({"organ_contact": "yes"}, "true or false"),
        ({"colour": 1}, "unknown lesion filter option"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ParameterError, match=message):
        LesionFilter.from_mapping(options)


def test_options_round_trip_through_the_sidecar_form():
    options = LesionFilter(min_volume_mm3=250, organ_contact=False, tumor_probability=0.7)
    recorded = options.as_dict()
    assert recorded["min_volume_ml"] == 0.25
    assert LesionFilter.from_mapping(recorded) == options


def test_predict_applies_the_filter_and_records_it():
    import torch

    from syntumor_core.inference import Segmenter, postprocess
    from syntumor_core.models import build_model
    from syntumor_core.volume import Volume

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    volume = Volume((60 + 40 * rng.standard_normal((40, 40, 24))).astype(np.float32),
                    np.diag([4.0, 4.0, 4.0, 1.0]))  # fmt: skip
    segmenter = Segmenter(build_model("unet").eval(), arch="unet", roi_size=32, spacing_mm=8.0,
                          device="cpu", compile=False)  # fmt: skip
    plain = segmenter.predict(volume)
    assert plain.lesion_filter is None and plain.lesion_report is None
    unfiltered = segmenter.predict(volume, lesion_filter=NO_FILTER)
    assert np.array_equal(unfiltered.labels.array, plain.labels.array)
    assert unfiltered.lesion_filter == NO_FILTER.as_dict()
    options = LesionFilter(min_volume_mm3=64 * 20, organ_contact=True, tumor_probability=0.4)
    cleaned = segmenter.predict(volume, lesion_filter=options)
    image = segmenter.preprocess(volume)
    logits = segmenter.sliding_window_logits(image.as_tensor()[None])
    probs = segmenter.restore_probabilities(logits[0], image)
    expected, report = filter_lesions(
        postprocess(labels_from_probabilities(probs, 0.4)), 64.0, options
    )
    assert np.array_equal(cleaned.labels.array, expected)
    assert cleaned.lesion_report == report and cleaned.lesion_filter["tumor_probability"] == 0.4
    assert report["removed_small"] + report["removed_outside_organ"] > 0  # it did something
    assert (
        len(cleaned.lesions)
        == report["lesions_in"] - report["removed_small"] - report["removed_outside_organ"]
    )
    assert all(row.voxels >= 20 for row in cleaned.lesions)
