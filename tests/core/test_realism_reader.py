"""The machine reader on constructed lesions (issue 16, item 5)."""

import numpy as np
import pytest

from syntumor_core.errors import ParameterError
from syntumor_core.realism.lesion_stats import LesionCrop
from syntumor_core.realism.reader import FEATURE_NAMES, lesion_features, machine_reader_auc

SIZE = 18
ORGAN_HU = 110.0


def _crop(rng, lesion_hu):
    grid = np.indices((SIZE,) * 3)
    centre = SIZE / 2 + rng.uniform(-1, 1, 3)
    radii = rng.uniform(3.0, 5.0, 3)
    lesion = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1
    image = np.full(lesion.shape, ORGAN_HU, np.float32)
    image[lesion] = lesion_hu
    image += rng.normal(0, 15, image.shape).astype(np.float32)
    return LesionCrop(image, lesion, ~lesion, (1.5, 1.5, 1.5), (0, 0, 0))


def _features(rng, count, lesion_hu):
    return [lesion_features(_crop(rng, lesion_hu)) for _ in range(count)]


def test_features_have_their_names_and_know_the_contrast():
    features = lesion_features(_crop(np.random.default_rng(0), 70.0))
    assert features.shape == (len(FEATURE_NAMES),)
    named = dict(zip(FEATURE_NAMES, features, strict=True))
    assert named["contrast_hu"] == pytest.approx(40.0, abs=4.0)
    assert named["mean_hu"] == pytest.approx(70.0, abs=4.0)
    assert 0 < named["sphericity"] <= 1


def test_a_known_contrast_difference_is_found():
    rng = np.random.default_rng(1)
    real, synthetic = _features(rng, 16, 70.0), _features(rng, 16, 95.0)
    result = machine_reader_auc(real, synthetic, seed=0, resamples=300)
    assert result.auc > 0.9 and result.low > 0.75
    assert (result.n_real, result.n_synthetic, result.folds) == (16, 16, 5)
    assert result.describe().startswith("machine reader AUC ")


def test_one_distribution_is_indistinguishable():
    rng = np.random.default_rng(2)
    real, synthetic = _features(rng, 16, 80.0), _features(rng, 16, 80.0)
    result = machine_reader_auc(real, synthetic, seed=0, resamples=300)
    assert result.low < 0.5 < result.high
    assert 0.2 < result.auc < 0.8


def test_same_inputs_same_result():
    rng = np.random.default_rng(3)
    real, synthetic = rng.normal(size=(10, 4)), rng.normal(size=(12, 4))
    assert machine_reader_auc(real, synthetic, seed=4, resamples=50) == machine_reader_auc(
        real, synthetic, seed=4, resamples=50
    )


def test_too_few_lesions_or_ragged_features_are_refused():
    with pytest.raises(ParameterError, match="at least 2 real and 2 synthetic"):
        machine_reader_auc(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ParameterError, match="equal width"):
        machine_reader_auc(np.zeros((4, 3)), np.zeros((4, 2)))
