"""The drawn numbers of one synthesis call: everything :func:`render_synthesis` needs.

A manifest is these parameters plus provenance (see :mod:`syntumor_core.synthesis.manifest`);
floats survive JSON exactly (Python writes the shortest string that reads back to the same
double), so a replay is bit for bit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from syntumor_core.errors import ManifestError
from syntumor_core.synthesis.texture import TextureParams


@dataclass(frozen=True)
class EllipsoidParams:
    """One ellipsoid: size class, semi-axes (mm), centre (voxel index), deformation.

    ``displacements_mm`` holds the 3 passes × 2 components × 3 × 3 control displacements, flat.
    """

    group: str
    semi_axes_mm: tuple[int, int, int]
    centre: tuple[int, int, int]
    sigma_mm: float
    displacements_mm: tuple[float, ...]

    def displacement_array(self) -> np.ndarray:
        return np.asarray(self.displacements_mm, dtype=np.float64).reshape(3, 2, 3, 3)


@dataclass(frozen=True)
class BlendParams:
    """Intensity parameters of one call (see :class:`~syntumor_core.synthesis.config.Appearance`)."""

    kind: str
    blur_sigma_mm: float
    difference_hu: float
    fluid_hu: float
    rim_fraction: float = 0.0
    rim_width_mm: float = 0.0
    grain_hu: float = 0.0
    grain_seed: int = 0


@dataclass(frozen=True)
class SynthesisParams:
    """Everything drawn for one call. Render it with :func:`render_synthesis`.

    ``min_fragment_voxels`` is not drawn but fixed per call (profile ``realistic``: its spec's
    value; ``paper``: 0, the published behaviour, unless asked): tumor parts smaller than this
    are removed. Manifests written before it existed read as 0.
    """

    organ: str
    profile: str
    tumor_type: str
    axial_axis: int
    ellipsoids: tuple[EllipsoidParams, ...]
    texture: TextureParams
    blend: BlendParams
    min_fragment_voxels: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthesisParams:
        try:
            return cls(
                organ=str(data["organ"]),
                profile=str(data["profile"]),
                tumor_type=str(data["tumor_type"]),
                axial_axis=int(data["axial_axis"]),
                ellipsoids=tuple(
                    EllipsoidParams(
                        group=str(e["group"]),
                        semi_axes_mm=tuple(int(v) for v in e["semi_axes_mm"]),  # type: ignore[arg-type]
                        centre=tuple(int(v) for v in e["centre"]),  # type: ignore[arg-type]
                        sigma_mm=float(e["sigma_mm"]),
                        displacements_mm=tuple(float(v) for v in e["displacements_mm"]),
                    )
                    for e in data["ellipsoids"]
                ),
                texture=TextureParams(**data["texture"]),
                blend=BlendParams(**data["blend"]),
                min_fragment_voxels=int(data.get("min_fragment_voxels", 0)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ManifestError(f"malformed synthesis parameters: {error!r}") from error
