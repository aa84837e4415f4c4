"""Configuration of the synthesis: tumor types, appearance, placement, realism.

Every number the algorithm uses lives in one of these frozen dataclasses, so that a profile can
be changed with :func:`dataclasses.replace`, written into a manifest and read back. Lengths are
millimetres, intensities Hounsfield units. The organ profiles themselves are in
:mod:`syntumor_core.synthesis.organs`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from syntumor_core.errors import ParameterError

PROFILES = ("paper", "realistic")


def _check_range(name: str, bounds: tuple[float, float], lowest: float = 0.0) -> None:
    low, high = bounds
    if not (np.isfinite(low) and np.isfinite(high)) or low > high or low < lowest:
        raise ParameterError(
            f"`{name}` must be a range (low, high) with {lowest} <= low <= high, got {bounds}"
        )


@dataclass(frozen=True)
class SigmaRule:
    """How the elastic-deformation sigma (mm) of one ellipsoid is drawn.

    ``kind="uniform"`` draws a real number in [low, high]; ``kind="integer"`` an integer in
    [low, high] inclusive (the released code used both, depending on the tumor size).
    """

    kind: Literal["uniform", "integer"]
    low: float
    high: float

    def __post_init__(self) -> None:
        if self.kind not in ("uniform", "integer"):
            raise ParameterError(
                f"sigma rule kind must be 'uniform' or 'integer', got {self.kind!r}"
            )
        _check_range("sigma", (self.low, self.high))

    def draw(self, rng: np.random.Generator) -> float:
        if self.kind == "integer":
            return float(rng.integers(int(self.low), int(self.high), endpoint=True))
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class LesionGroup:
    """A group of ellipsoids of one size class drawn in one call.

    Args:
        name: size class, e.g. ``"tiny"``.
        count: inclusive range of the number of ellipsoids.
        radius_mm: base radius r; each semi-axis is a uniform integer (in mm) in
            [int(0.75 r), int(1.25 r)].
        sigma: rule for the elastic-deformation sigma of each ellipsoid.
    """

    name: str
    count: tuple[int, int]
    radius_mm: float
    sigma: SigmaRule

    def __post_init__(self) -> None:
        low, high = self.count
        if not (1 <= low <= high):
            raise ParameterError(
                f"`count` of {self.name!r} must satisfy 1 <= low <= high, got {self.count}"
            )
        if not 1.0 <= self.radius_mm <= 100.0:
            raise ParameterError(
                f"`radius_mm` of {self.name!r} must be in [1, 100] mm, got {self.radius_mm}"
            )

    @property
    def semi_axis_range_mm(self) -> tuple[int, int]:
        return int(0.75 * self.radius_mm), int(1.25 * self.radius_mm)


@dataclass(frozen=True)
class Appearance:
    """How a tumor is painted into the image.

    ``kind="hypodense"`` (the published method): image − texture · soft · difference, with
    ``difference`` drawn from ``difference_hu`` and ``soft`` the tumor mask blurred with a sigma
    drawn from ``blur_sigma_mm``. ``kind="cyst"``: the image is blended towards a fluid density
    drawn from ``fluid_hu`` with weight ``soft`` (sharp margins: use a small blur), keeping
    ``fluid_noise_fraction`` of the original noise.

    ``delivered=True`` (hypodense): ``difference`` is the drop a reader sees, the mean over
    each tumor's voxels (26-connected parts) of the change, whatever the texture's level and
    the blur's softening of the edges; the texture then only modulates the drop around that
    mean. ``False`` is the published method (the mean drop is about texture level · soft ·
    difference, about a third to a half of ``difference`` for small tumors). Profile
    ``realistic`` always delivers.
    """

    kind: Literal["hypodense", "cyst"] = "hypodense"
    difference_hu: tuple[float, float] = (65.0, 145.0)
    blur_sigma_mm: tuple[float, float] = (1.0, 2.0)
    fluid_hu: tuple[float, float] = (0.0, 20.0)
    fluid_noise_fraction: float = 0.5
    delivered: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("hypodense", "cyst"):
            raise ParameterError(
                f"appearance kind must be 'hypodense' or 'cyst', got {self.kind!r}"
            )
        _check_range("difference_hu", self.difference_hu)
        _check_range("blur_sigma_mm", self.blur_sigma_mm)
        _check_range("fluid_hu", self.fluid_hu, lowest=-100.0)


@dataclass(frozen=True)
class TumorType:
    """A named tumor type: one or more lesion groups drawn together, and their appearance."""

    name: str
    groups: tuple[LesionGroup, ...]
    appearance: Appearance = field(default_factory=Appearance)

    @property
    def smallest_semi_axis_mm(self) -> int:
        return min(group.semi_axis_range_mm[0] for group in self.groups)


@dataclass(frozen=True)
class TextureSpec:
    """The random texture field (spec: "Texture"). Sigmas in mm; ranges are uniform draws."""

    sigma_a_mm: tuple[float, ...] = (3.0, 6.0, 9.0, 12.0, 15.0)
    sigma_b_mm: tuple[float, ...] = (4.0, 7.0)
    scale: tuple[float, float] = (0.19, 0.21)
    base: tuple[float, float] = (0.04, 0.06)
    u0: tuple[float, float] = (0.5, 0.55)
    threshold: float = 0.12
    cell_mm: float = 4.0

    def __post_init__(self) -> None:
        if not self.sigma_a_mm or not self.sigma_b_mm:
            raise ParameterError("texture sigma choices must not be empty")
        if min(self.sigma_a_mm) <= 0 or min(self.sigma_b_mm) <= 0:
            raise ParameterError("texture sigmas must be positive")
        for name in ("scale", "base", "u0"):
            _check_range(name, getattr(self, name))


@dataclass(frozen=True)
class PlacementSpec:
    """Where tumor centres go.

    Args:
        z_ranges: fractions of the organ's axial extent to pick the centre slice from, tried in
            order when a range yields no valid centre (the released liver code used only
            (0.3, 0.7); later work by the same group widened it step by step).
        erode_mm: side of the square (in-plane) that erodes the slice's organ mask before a
            centre is picked (5 voxels at 1 mm in the release); ``None`` for no erosion.
        max_tries: slices tried per range before moving on.
        tissue_hu: organ voxels whose intensity (after a 1 mm Gaussian smoothing) lies outside
            this range are not tissue a tumor grows in: no centre is put there and they are
            never painted or labelled tumor (e.g. the renal sinus fat and urine of the kidney
            mask). ``None``: the whole organ.
    """

    z_ranges: tuple[tuple[float, float], ...] = ((0.3, 0.7),)
    erode_mm: float | None = 5.0
    max_tries: int = 20
    tissue_hu: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for low, high in self.z_ranges:
            if not 0.0 <= low <= high <= 1.0:
                raise ParameterError(
                    f"z range must satisfy 0 <= low <= high <= 1, got {(low, high)}"
                )
        if self.max_tries < 1:
            raise ParameterError(f"`max_tries` must be >= 1, got {self.max_tries}")
        if self.tissue_hu is not None:
            _check_range("tissue_hu", self.tissue_hu, lowest=-2000.0)


@dataclass(frozen=True)
class RealisticSpec:
    """Steps of profile ``realistic`` that the release left out (spec: "Beyond the release"),
    and its intensity model: a delivered mean drop (the tumor's mean is that much below the
    input, whatever its size), an enhancing rim, a fine grain and its own edge blur, each drawn
    from distributions; the liver's are fitted to real lesions
    (:data:`~syntumor_core.synthesis.organs.LIVER_REALISTIC` says where each number comes
    from). Everything stays inside the organ mask, off protected voxels.

    Args:
        vessel_threshold_sd: organ voxels brighter than median + k · robust s.d. of the organ's
            (lightly smoothed) intensities are vessels.
        vessel_margin_mm: vessels are dilated by this much before collision checks.
        surface_margin_mm: tumors keep this distance from the organ surface ...
        max_outside_fraction: ... except for this fraction of their volume.
        max_vessel_fraction: candidates whose tumor covers more (dilated) vessel than this
            fraction of its volume are redrawn; vessel voxels are carved out of the tumor anyway.
        allow_overlap: whether ellipsoids of one call may overlap.
        max_candidates: candidate placements tried per ellipsoid before the best one is kept.
        mass_effect: strength A of the radial warp (tissue at distance r from the centre moves
            outward by A · r · (1 − (r/L)²)² for r < L, fading to zero at the organ's boundary:
            only organ voxels move); 0 disables it.
        mass_effect_reach: how far the warp reaches, in multiples of the mean semi-axis.
        mass_effect_min_radius_mm: tumors with a smaller mean semi-axis push nothing aside
            (lesions under about 1.5 cm do not visibly displace the parenchyma).
        capsule_width_mm: width of a bright capsule along the inside of the tumor edge,
            painted with partial-volume weights (a capsule thinner than a voxel is not a full
            voxel); 0 disables it.
        capsule_hu: how much brighter the capsule is than it would otherwise be (0: none;
            LiTS-117's lesions show none beyond their enhancing rim; see organs.LIVER_REALISTIC).
        contrast_median_hu: median of the delivered mean drop of a tumor (HU), drawn
            log-normally with ``contrast_log_sd`` and truncated to ``contrast_range_hu``;
            ``None`` draws it uniformly from the tumor type's ``difference_hu``.
        contrast_log_sd: standard deviation of the drop's logarithm.
        contrast_range_hu: the drop's bounds (``None``: the type's ``difference_hu``).
        rim_fraction: range (uniform) of the enhancing rim's strength: at the very edge the
            drop is this fraction smaller than in the core (peripheral enhancement).
        rim_width_mm: range (uniform) of the depth over which the rim fades (e-folding, mm),
            painted with partial-volume weights.
        grain_hu: range (uniform) of the standard deviation of a fine-grained heterogeneity
            added inside the tumor (zero-mean Gaussian noise, weighted by the blurred tumor
            mask, so the mean drop stays): real lesions vary more from voxel to voxel than
            the parenchyma they replace.
        grain_sigma_mm: the grain's correlation: a Gaussian of this sigma smooths it (the
            standard deviation is restored afterwards); 0 leaves it white.
        blur_sigma_mm: range (uniform) of the edge blur's sigma, instead of the tumor
            type's (``None``: the type's).
        texture_strength: how strongly the published texture modulates the drop around its
            mean: drop ∝ 1 + k (texture / u0 − 1); 1 is the published modulation.
        min_fragment_voxels: tumor parts (26-connected) smaller than this, left when the
            organ, vessels or protected voxels clip a tumor, are removed from image and label.
    """

    vessel_threshold_sd: float = 2.5
    vessel_margin_mm: float = 1.5
    surface_margin_mm: float = 3.0
    max_outside_fraction: float = 0.1
    max_vessel_fraction: float = 0.02
    allow_overlap: bool = False
    max_candidates: int = 8
    mass_effect: float = 0.3
    mass_effect_reach: float = 1.75
    mass_effect_min_radius_mm: float = 8.0
    capsule_width_mm: float = 1.5
    capsule_hu: float = 0.0
    contrast_median_hu: float | None = None
    contrast_log_sd: float = 0.0
    contrast_range_hu: tuple[float, float] | None = None
    rim_fraction: tuple[float, float] = (0.0, 0.0)
    rim_width_mm: tuple[float, float] = (0.0, 0.0)
    grain_hu: tuple[float, float] = (0.0, 0.0)
    grain_sigma_mm: float = 0.0
    blur_sigma_mm: tuple[float, float] | None = None
    texture_strength: float = 1.0
    min_fragment_voxels: int = 8

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_vessel_fraction <= 1.0:
            raise ParameterError(
                f"`max_vessel_fraction` must be in [0, 1], got {self.max_vessel_fraction}"
            )
        if not 0.0 <= self.max_outside_fraction <= 1.0:
            raise ParameterError(
                f"`max_outside_fraction` must be in [0, 1], got {self.max_outside_fraction}"
            )
        if not 0.0 <= self.mass_effect <= 0.9:
            raise ParameterError(f"`mass_effect` must be in [0, 0.9], got {self.mass_effect}")
        if self.mass_effect_reach < 1.0:
            raise ParameterError(f"`mass_effect_reach` must be >= 1, got {self.mass_effect_reach}")
        if self.capsule_width_mm < 0 or self.max_candidates < 1:
            raise ParameterError("`capsule_width_mm` must be >= 0 and `max_candidates` >= 1")
        if self.contrast_median_hu is not None and not 0.0 < self.contrast_median_hu < 1000.0:
            raise ParameterError(
                f"`contrast_median_hu` must be in (0, 1000) HU, got {self.contrast_median_hu}"
            )
        if self.contrast_log_sd < 0:
            raise ParameterError(f"`contrast_log_sd` must be >= 0, got {self.contrast_log_sd}")
        if self.contrast_range_hu is not None:
            _check_range("contrast_range_hu", self.contrast_range_hu)
        _check_range("rim_width_mm", self.rim_width_mm)
        _check_range("grain_hu", self.grain_hu)
        if self.blur_sigma_mm is not None:
            _check_range("blur_sigma_mm", self.blur_sigma_mm)
        if not 0.0 <= self.texture_strength <= 2.0:
            raise ParameterError(
                f"`texture_strength` must be in [0, 2], got {self.texture_strength}"
            )
        if self.grain_sigma_mm < 0:
            raise ParameterError(f"`grain_sigma_mm` must be >= 0, got {self.grain_sigma_mm}")
        low, high = self.rim_fraction
        if not 0.0 <= low <= high < 1.0:
            raise ParameterError(
                f"`rim_fraction` must satisfy 0 <= low <= high < 1, got {self.rim_fraction}"
            )
        if self.min_fragment_voxels < 0:
            raise ParameterError(
                f"`min_fragment_voxels` must be >= 0, got {self.min_fragment_voxels}"
            )


@dataclass(frozen=True)
class OrganProfile:
    """Everything the synthesis needs to know about one organ."""

    organ: str
    types: dict[str, TumorType]
    type_probabilities: dict[str, float]
    placement: PlacementSpec = field(default_factory=PlacementSpec)
    texture: TextureSpec = field(default_factory=TextureSpec)
    realistic: RealisticSpec = field(default_factory=RealisticSpec)
    description: str = ""

    def tumor_type(self, name: str) -> TumorType:
        if name not in self.types:
            raise ParameterError(
                f"unknown tumor type {name!r} for organ {self.organ!r}; "
                f"choose one of {sorted(self.types)}{_did_you_mean(name, self.types)}"
            )
        return self.types[name]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OrganProfile:
        """Rebuild a profile written by :meth:`to_dict` (e.g. from a manifest)."""
        try:
            types = {
                name: TumorType(
                    name=spec["name"],
                    groups=tuple(
                        LesionGroup(
                            name=g["name"],
                            count=tuple(g["count"]),
                            radius_mm=g["radius_mm"],
                            sigma=SigmaRule(**g["sigma"]),
                        )
                        for g in spec["groups"]
                    ),
                    appearance=Appearance(**_tuples(spec["appearance"])),
                )
                for name, spec in data["types"].items()
            }
            placement = _tuples(dict(data["placement"]))
            placement["z_ranges"] = tuple(tuple(r) for r in placement["z_ranges"])
            return cls(
                organ=data["organ"],
                types=types,
                type_probabilities=dict(data["type_probabilities"]),
                placement=PlacementSpec(**placement),
                texture=TextureSpec(**_tuples(data["texture"])),
                realistic=RealisticSpec(**_tuples(data["realistic"])),
                description=data.get("description", ""),
            )
        except (KeyError, TypeError) as error:
            raise ParameterError(f"malformed organ profile: {error}") from error


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def _did_you_mean(name: str, options: Any) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_profile_name(profile: str) -> str:
    if profile not in PROFILES:
        raise ParameterError(
            f"unknown profile {profile!r}; choose one of {list(PROFILES)}{_did_you_mean(profile, PROFILES)}"
        )
    return profile
