"""Organ profiles: which tumors to synthesize in the liver, the pancreas and the kidneys.

The liver profile is the released method of Hu et al. (CVPR 2023) number for number. The
pancreas and kidney profiles are SynTumor's own choices: the papers give no public parameters,
so each number below is chosen from the radiology literature and stated with its reasoning.
Every number can be changed with :func:`dataclasses.replace` on the returned profile.
"""

from __future__ import annotations

from syntumor_core.errors import ParameterError
from syntumor_core.synthesis.config import (
    Appearance,
    LesionGroup,
    OrganProfile,
    PlacementSpec,
    SigmaRule,
    TumorType,
    _did_you_mean,
)

# The released size classes (radius r in mm, count per call, elastic sigma).
TINY = LesionGroup("tiny", (3, 10), 4.0, SigmaRule("uniform", 0.5, 1.0))
SMALL = LesionGroup("small", (3, 10), 8.0, SigmaRule("integer", 1, 2))
MEDIUM = LesionGroup("medium", (2, 5), 16.0, SigmaRule("integer", 3, 6))
LARGE = LesionGroup("large", (1, 3), 32.0, SigmaRule("integer", 5, 10))
# In the release's "mix" type the small group draws 5..10 ellipsoids, not 3..10.
MIX_SMALL = LesionGroup("small", (5, 10), 8.0, SigmaRule("integer", 1, 2))

# Widening of the axial range when no centre is found (DiffTumor, same group, 2024).
WIDENING_Z_RANGES = ((0.3, 0.7), (0.2, 0.8), (0.1, 0.9), (0.0, 1.0))
EQUAL_TYPES = {"tiny": 0.2, "small": 0.2, "medium": 0.2, "large": 0.2, "mix": 0.2}


def liver_profile() -> OrganProfile:
    """Hypodense liver tumors exactly as released with Hu et al., CVPR 2023.

    Types tiny / small / medium / large / mix with radii 4 / 8 / 16 / 32 mm, the counts and
    elastic sigmas of the release, intensity drop 65–145 HU scaled by the texture, blur sigma
    1–2 mm, centres on an axial slice at 30–70 % of the liver's extent after a 5 mm erosion.
    """
    hypodense = Appearance("hypodense", (65.0, 145.0), (1.0, 2.0))
    types = {
        "tiny": TumorType("tiny", (TINY,), hypodense),
        "small": TumorType("small", (SMALL,), hypodense),
        "medium": TumorType("medium", (MEDIUM,), hypodense),
        "large": TumorType("large", (LARGE,), hypodense),
        "mix": TumorType("mix", (TINY, MIX_SMALL, MEDIUM, LARGE), hypodense),
    }
    return OrganProfile(
        organ="liver",
        types=types,
        type_probabilities=dict(EQUAL_TYPES),
        placement=PlacementSpec(z_ranges=((0.3, 0.7),), erode_mm=5.0),
        description="hypodense liver tumors (Hu et al., CVPR 2023, released parameters)",
    )


def pancreas_profile() -> OrganProfile:
    """Small pancreatic ductal adenocarcinoma (PDAC) and pancreatic cysts.

    Choices and reasoning:

    * PDAC is hypo-attenuating to the enhancing pancreas in most cases; the tumor–pancreas
      attenuation difference in pancreatic and portal-venous phases is reported in the range of
      a few tens of HU (roughly 20–60 HU; about one in ten small PDACs is iso-attenuating).
      Drop drawn from 20–60 HU, with the texture of the published method.
    * Early (T1, <= 2 cm) tumors are the target of Li et al. 2023: radii 4 mm ("tiny",
      <= 1 cm), 8 mm ("small", about 1.5 cm) and 12 mm ("medium", about 2.5 cm); per call 1–3
      tiny or small tumors and one medium tumor (DiffTumor, same group).
    * Cysts (serous/mucinous cystic lesions, pseudocysts) have fluid density, about 0–20 HU,
      and sharp margins: radius 6 mm (5–7 mm semi-axes, 1–1.5 cm cysts), little deformation,
      0.3–0.6 mm blur.
    * The pancreas is thin (head 2–3 cm), so centres are not eroded away from its surface and
      the axial range widens step by step when no centre is found.
    """
    pdac = Appearance("hypodense", (20.0, 60.0), (0.8, 1.5))
    cyst = Appearance("cyst", blur_sigma_mm=(0.3, 0.6), fluid_hu=(0.0, 20.0))
    tiny = LesionGroup("tiny", (1, 3), 4.0, SigmaRule("uniform", 0.5, 1.0))
    small = LesionGroup("small", (1, 3), 8.0, SigmaRule("integer", 1, 2))
    medium = LesionGroup("medium", (1, 1), 12.0, SigmaRule("integer", 2, 4))
    cysts = LesionGroup("cyst", (1, 2), 6.0, SigmaRule("uniform", 0.3, 0.6))
    types = {
        "tiny": TumorType("tiny", (tiny,), pdac),
        "small": TumorType("small", (small,), pdac),
        "medium": TumorType("medium", (medium,), pdac),
        "cyst": TumorType("cyst", (cysts,), cyst),
        "mix": TumorType("mix", (tiny, small, medium), pdac),
    }
    return OrganProfile(
        organ="pancreas",
        types=types,
        type_probabilities={"tiny": 0.2, "small": 0.3, "medium": 0.2, "cyst": 0.2, "mix": 0.1},
        placement=PlacementSpec(z_ranges=WIDENING_Z_RANGES, erode_mm=None),
        description="small pancreatic adenocarcinoma and cysts (SynTumor's literature-based choice)",
    )


def kidney_profile() -> OrganProfile:
    """Renal cell carcinoma (RCC) and simple renal cysts.

    Choices and reasoning:

    * In the portal-venous / nephrographic phase most RCCs enhance less than the renal
      parenchyma (cortex 150–200 HU on the phantoms), so they appear hypo-attenuating by a few
      tens to about a hundred HU: drop drawn from 40–100 HU, heterogeneous (the published
      texture).
    * Small renal masses (T1a, <= 4 cm) dominate incidental findings: radii 8 mm ("small",
      about 1.6 cm) and 16 mm ("medium", about 3 cm), one or two per call; "large" 24 mm.
    * Simple (Bosniak I) cysts: water density 0–20 HU, imperceptible wall, sharp margins:
      radius 8 mm, little deformation, 0.3–0.6 mm blur, one to three per call.
    * Kidneys are compact; centres are not eroded, the axial range widens when needed.
    """
    rcc = Appearance("hypodense", (40.0, 100.0), (0.8, 1.5))
    cyst = Appearance("cyst", blur_sigma_mm=(0.3, 0.6), fluid_hu=(0.0, 20.0))
    small = LesionGroup("small", (1, 2), 8.0, SigmaRule("integer", 1, 2))
    medium = LesionGroup("medium", (1, 2), 16.0, SigmaRule("integer", 2, 4))
    large = LesionGroup("large", (1, 1), 24.0, SigmaRule("integer", 3, 6))
    cysts = LesionGroup("cyst", (1, 3), 8.0, SigmaRule("uniform", 0.3, 0.6))
    types = {
        "small": TumorType("small", (small,), rcc),
        "medium": TumorType("medium", (medium,), rcc),
        "large": TumorType("large", (large,), rcc),
        "cyst": TumorType("cyst", (cysts,), cyst),
        "mix": TumorType("mix", (small, medium), rcc),
    }
    return OrganProfile(
        organ="kidney",
        types=types,
        type_probabilities={"small": 0.3, "medium": 0.2, "large": 0.1, "cyst": 0.3, "mix": 0.1},
        placement=PlacementSpec(z_ranges=WIDENING_Z_RANGES, erode_mm=None),
        description="renal cell carcinoma and simple cysts (SynTumor's literature-based choice)",
    )


ORGAN_PROFILES = {"liver": liver_profile, "pancreas": pancreas_profile, "kidney": kidney_profile}


def get_organ_profile(organ: str) -> OrganProfile:
    """The default profile of ``organ`` (``"liver"``, ``"pancreas"`` or ``"kidney"``)."""
    if organ not in ORGAN_PROFILES:
        raise ParameterError(
            f"unknown organ {organ!r}; choose one of {sorted(ORGAN_PROFILES)}"
            f"{_did_you_mean(organ, ORGAN_PROFILES)}"
        )
    return ORGAN_PROFILES[organ]()
