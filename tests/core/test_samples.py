"""The LiTS case 117 sample: content, orientation, and the error when it is not installed."""

from __future__ import annotations

import importlib.machinery
import sys

import numpy as np
import pytest
from scipy import ndimage

from syntumor_core import samples
from syntumor_core.errors import SampleNotInstalledError
from syntumor_core.samples import LITS117_SPACING_MM, Sample, available_samples, load_lits117
from syntumor_core.volume import load_label_nifti, load_nifti, save_nifti

INSTALL_COMMAND = "pip install --no-deps liver-ct-segmentation-package==1.6.0"


@pytest.fixture(scope="module")
def sample() -> Sample:
    return load_lits117()


def centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


def spine_mask(image: np.ndarray) -> np.ndarray:
    """The bony structure above 200 HU that runs through (nearly) every axial slice."""
    components, count = ndimage.label(image > 200)
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box[2].stop - box[2].start >= 0.9 * image.shape[2]:
            return components == index
    raise AssertionError(f"no bone runs through the slices among {count} components")


def test_shapes_dtypes_and_geometry(sample):
    assert sample.name == "lits117"
    assert sample.image.shape == sample.labels.shape == (128, 128, 128)
    assert sample.image.array.dtype == np.float32
    assert sample.labels.array.dtype == np.uint8
    assert sample.image.spacing == pytest.approx((LITS117_SPACING_MM,) * 3)
    assert np.array_equal(sample.image.affine, sample.labels.affine)
    assert sample.image.axcodes == ("R", "A", "S")
    assert sample.image.axial_axis == 2
    assert 1.2 <= LITS117_SPACING_MM <= 1.6


def test_sample_round_trips_through_nifti(sample, tmp_path):
    image = load_nifti(save_nifti(sample.image, tmp_path / "ct.nii"))
    labels = load_label_nifti(save_nifti(sample.labels, tmp_path / "labels.nii"))
    assert np.array_equal(image.array, sample.image.array)
    assert np.array_equal(image.affine, sample.image.affine)
    assert np.array_equal(labels.array, sample.labels.array)
    assert labels.array.dtype == np.uint8


def test_labels_and_tumor_voxel_count(sample):
    labels = sample.labels.array
    assert set(np.unique(labels).tolist()) == {0, 1, 2}
    assert int((labels == 2).sum()) == 130_083


def test_hounsfield_units_are_plausible(sample):
    image, labels = sample.image.array, sample.labels.array
    assert np.isfinite(image).all()
    assert -1100 < image.min() < -900  # air
    assert image[labels == 1].mean() == pytest.approx(118, abs=5)  # enhanced liver
    assert image[labels == 2].mean() == pytest.approx(70, abs=5)  # hypodense tumors


def test_liver_volume_at_the_assumed_spacing_is_adult_sized(sample):
    liver_ml = (sample.labels.array > 0).sum() * LITS117_SPACING_MM**3 / 1000
    assert 1200 <= liver_ml <= 1800


def test_liver_lies_on_the_patients_right_and_anterior_to_the_spine(sample):
    spine = spine_mask(sample.image.array)
    liver = centroid(sample.labels.array > 0)
    spine_centre = centroid(spine)
    assert liver[0] > spine_centre[0] + 20  # +x is the patient's right
    assert liver[1] > spine_centre[1] + 20  # +y is anterior: the spine is posterior


def test_lung_bases_are_superior(sample):
    image = sample.image.array
    lung = (image > -950) & (image < -600)
    top, bottom = lung[:, :, -8:].mean(), lung[:, :, :8].mean()
    assert top > 0.2
    assert bottom < 0.05


def test_provenance_and_licence(sample):
    assert "liver-ct-segmentation-package" in sample.source
    assert "LiTS" in sample.licence_note
    assert "never copy" in sample.licence_note
    assert set(available_samples()) == {"lits117"}
    assert INSTALL_COMMAND in available_samples()["lits117"]


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, samples.LITS117_PACKAGE, None)  # find_spec → None
    with pytest.raises(SampleNotInstalledError) as raised:
        load_lits117()
    assert INSTALL_COMMAND in str(raised.value)


def test_package_without_its_data_files(monkeypatch, tmp_path):
    spec = importlib.machinery.ModuleSpec(samples.LITS117_PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(samples.importlib.util, "find_spec", lambda name, package=None: spec)
    with pytest.raises(SampleNotInstalledError, match=r"img_117.mrc is missing; reinstall"):
        load_lits117()
