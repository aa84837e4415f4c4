"""Post-processing on constructed label maps: the original clean-up (largest liver, tumor
near it) and the lesion filter (minimum volume, organ contact, threshold)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from syntumor_core.errors import MaskError, ParameterError
from syntumor_core.segmentation import (
    DEFAULT_MIN_LESION_MM3,
    NO_FILTER,
    LesionFilter,
    filter_lesions,
    labels_from_probabilities,
    lesion_table,
)
from syntumor_core.segmentation.postprocess import postprocess


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

    from syntumor_core.models import build_model
    from syntumor_core.segmentation import Predictor
    from syntumor_core.volume import Volume

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    volume = Volume((60 + 40 * rng.standard_normal((40, 40, 24))).astype(np.float32),
                    np.diag([4.0, 4.0, 4.0, 1.0]))  # fmt: skip
    predictor = Predictor(build_model("unet").eval(), arch="unet", roi_size=32, spacing_mm=8.0,
                          device="cpu")  # fmt: skip
    plain = predictor.predict(volume, compile=False)
    assert plain.lesion_filter is None and plain.lesion_report is None
    unfiltered = predictor.predict(volume, lesion_filter=NO_FILTER, compile=False)
    assert np.array_equal(unfiltered.labels.array, plain.labels.array)
    assert unfiltered.lesion_filter == NO_FILTER.as_dict()
    options = LesionFilter(min_volume_mm3=64 * 20, organ_contact=True, tumor_probability=0.4)
    cleaned = predictor.predict(volume, lesion_filter=options, compile=False)
    image = predictor.preprocess(volume)
    logits = predictor.sliding_window_logits(image.as_tensor()[None], compile=False)
    probs = predictor.restore_probabilities(logits[0], image)
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


# ------------------------------------------------------------------------------ the original's


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
