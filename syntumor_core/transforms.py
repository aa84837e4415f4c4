"""MONAI dictionary transform that synthesizes tumors on the fly during training.

It wraps :func:`syntumor_core.synthesis.synthesize`. Every random draw comes from the
transform's own ``self.R`` (MONAI's per-transform random state), so ``set_random_state`` and
MONAI's per-worker seeding of data-loader workers give reproducible, different-per-worker
tumors — unlike the released code, which seeded the global state in a constructor.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import convert_to_dst_type

from syntumor_core.errors import OrganTooSmallError, ParameterError
from syntumor_core.synthesis import TUMOR_LABEL, get_organ_profile, synthesize
from syntumor_core.synthesis.config import OrganProfile, check_profile_name

logger = logging.getLogger(__name__)


def _spacing_and_axis(image, fallback_spacing) -> tuple[tuple[float, float, float], int]:
    affine = getattr(image, "affine", None)
    if affine is None:
        if fallback_spacing is None:
            raise ParameterError("the image carries no affine: pass `spacing` to the transform")
        return tuple(float(s) for s in fallback_spacing), 2  # type: ignore[return-value]
    matrix = np.asarray(
        affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64
    )
    from syntumor_core.volume import Volume

    volume = Volume(np.empty((1, 1, 1)), matrix)
    return volume.spacing, volume.axial_axis


class RandTumorSynthesisd(Randomizable, MapTransform):
    """Synthesize tumors into ``image`` inside the organ of ``label``, with probability ``prob``.

    Args:
        keys: the image key and the label key, in that order.
        prob: probability of synthesizing (0.9 in the release).
        tumor_types: probability of each tumor type; defaults to the organ profile's
            (0.2 each of tiny, small, medium, large, mix for the liver).
        organ: ``"liver"``, ``"pancreas"`` or ``"kidney"``.
        profile: ``"paper"`` or ``"realistic"``.
        organ_labels: label values that make up the organ mask.
        spacing: voxel size in mm, used only when the image has no affine (MetaTensor carries one).
        organ_profile: a custom profile instead of the organ's default.

    Labels that already hold tumor (any voxel equal to the tumor label 2; for the task's
    0/1/2 label maps this is the release's "max label <= 1" rule) pass through untouched, so
    real-tumor cases can be mixed in.
    Channel-first inputs of shape (1, H, W, D) and plain (H, W, D) arrays or tensors both work.

    Example:
        >>> t = RandTumorSynthesisd(keys=("image", "label"), prob=1.0)
        >>> t.set_random_state(seed=0)  # doctest: +ELLIPSIS
        <...RandTumorSynthesisd object at ...>
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        prob: float = 0.9,
        tumor_types: Mapping[str, float] | None = None,
        organ: str = "liver",
        profile: str = "paper",
        organ_labels: Sequence[int] = (1,),
        spacing: Sequence[float] | None = None,
        organ_profile: OrganProfile | None = None,
    ) -> None:
        MapTransform.__init__(self, keys)
        if len(self.keys) != 2:
            raise ParameterError(f"`keys` must name the image and the label, got {self.keys}")
        if not 0.0 <= prob <= 1.0:
            raise ParameterError(f"`prob` must be in [0, 1], got {prob}")
        self.prob = prob
        self.profile = check_profile_name(profile)
        self.organ_profile = organ_profile or get_organ_profile(organ)
        probabilities = dict(tumor_types or self.organ_profile.type_probabilities)
        for name in probabilities:
            self.organ_profile.tumor_type(name)
        total = sum(probabilities.values())
        if total <= 0 or min(probabilities.values()) < 0:
            raise ParameterError(
                f"`tumor_types` probabilities must be >= 0 and not all 0, got {probabilities}"
            )
        self.type_names = list(probabilities)
        self.type_probabilities = np.array([probabilities[n] for n in self.type_names]) / total
        self.organ_labels = tuple(int(v) for v in organ_labels)
        self.spacing = spacing
        self._apply = False
        self._tumor_type = self.type_names[0]
        self._seed = 0

    def randomize(self, data=None) -> None:
        self._apply = bool(self.R.random_sample() < self.prob)
        self._tumor_type = self.type_names[
            int(self.R.choice(len(self.type_names), p=self.type_probabilities))
        ]
        self._seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        out = dict(data)
        self.randomize()
        image_key, label_key = self.keys
        image, label = out[image_key], out[label_key]
        label_array = _as_numpy(label)
        if not self._apply or (label_array == TUMOR_LABEL).any():
            return out
        image_array = _as_numpy(image)
        squeeze = image_array.ndim == 4
        image_3d = image_array[0] if squeeze else image_array
        label_3d = label_array[0] if label_array.ndim == 4 else label_array
        organ = np.isin(label_3d, self.organ_labels)
        if not organ.any():
            return out
        spacing, axial_axis = _spacing_and_axis(image, self.spacing)
        try:
            result = synthesize(
                image_3d,
                organ,
                spacing=spacing,
                rng=np.random.default_rng(self._seed),
                tumor_type=self._tumor_type,
                profile=self.profile,
                axial_axis=axial_axis,
                organ_profile=self.organ_profile,
                checksums=False,
            )
        except OrganTooSmallError as error:
            logger.warning("tumor synthesis skipped: %s", error)
            return out
        new_label = label_3d.copy()
        new_label[(result.label == 1) & ~organ] = self.organ_labels[0]
        new_label[result.label == TUMOR_LABEL] = TUMOR_LABEL
        new_image = result.image.astype(image_3d.dtype, copy=False)
        if squeeze:
            new_image = new_image[None]
        if label_array.ndim == 4:
            new_label = new_label[None]
        out[image_key] = convert_to_dst_type(new_image, image)[0]
        out[label_key] = convert_to_dst_type(new_label, label)[0]
        return out


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
