"""Organ profiles: which tumors to synthesize in the liver, the pancreas and the kidneys.

The liver profile is the released method of Hu et al. (CVPR 2023) number for number. The
pancreas and kidney profiles are SynTumor's own choices: the papers give no public parameters,
so each number below is chosen from the radiology literature and stated with its reasoning.
Profile ``realistic`` in the liver draws its intensities from :data:`LIVER_REALISTIC`, fitted
to the real lesions of LiTS case 117; the comment above it gives each fitted number, the
measurement it comes from and the command that repeats it. Every number can be changed with
:func:`dataclasses.replace` on the returned profile.
"""

from __future__ import annotations

import dataclasses

from syntumor_core.errors import ParameterError
from syntumor_core.synthesis.config import (
    Appearance,
    LesionGroup,
    OrganProfile,
    PlacementSpec,
    RealisticSpec,
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

# Profile ``realistic`` in the liver, calibrated on the real lesions of LiTS case 117. The
# definitions are those of :mod:`syntumor_core.realism.lesion_stats`: a lesion is a
# 26-connected tumor component; its contrast is the mean HU of a 3-voxel ring of parenchyma
# around it (6-neighbour dilation, 3 iterations, within the liver label) minus its own mean HU;
# the real set is the 15 largest lesions (>= 290 voxels at 1.375 mm). The synthetic set: 8
# seeds x small/medium/large into the tumor-free liver (label 1), the real lesions protected.
# ``syntumor realism --type small --type medium --type large`` prints both side by side
# (benchmarks/README.md has the numbers); where each number below comes from:
#
# * contrast_median_hu 47: the real contrasts fit a log-normal with median 42.6 HU
#   (log-mean 3.751). The render lowers the measured contrast (the blurred edge darkens the
#   ring a little): at a fixed drop of 47 HU the synthetic lesions measure 43.3 HU, an offset
#   of 3.7 HU, so the delivered mean drop is drawn around 42.6 + 3.7 ≈ 46–47 HU.
# * contrast_log_sd 0.12: the real log-contrast spreads by 0.116 (IQR / 1.349; 0.182 as a
#   standard deviation, which two lesions at 60 HU inflate); the render itself adds 0.058
#   (lesion size, texture, surrounding parenchyma), so the drawn spread is
#   sqrt(0.116² − 0.058²) = 0.10 to sqrt(0.182² − 0.058²) = 0.17; 0.12 gave steady KS p
#   over three sets of seeds.
# * contrast_range_hu (30, 80): a guard about ±4 log-sd around the median; rarely reached.
# * rim_fraction 0.3–0.5, rim_width_mm 3–6: the real lesions darken with depth (peripheral
#   enhancement): their median drop below the parenchyma in the 2nd, 3rd and 4th voxel layer
#   is 0.86, 0.91 and 0.93 × the 5th layer's (61.8 HU), i.e. 1 − r·exp(−z/w) with w ≈ 3–6 mm;
#   r = 0.3–0.5 (with the sharper edge below) brings the machine reader's "outer layer minus
#   core" feature to the real lesions' range. Painted with partial-volume weights.
# * blur_sigma_mm 0.6–1.2 (the published 1–2 mm for ``paper``): the real lesions' edges are
#   sharper: mean gradient over the boundary shell / contrast 0.49 (real) against 0.40 with
#   the published blur and 0.43 with this one.
# * grain_hu 6–10 (white): real lesions vary more from voxel to voxel than the parenchyma
#   they replace: mean gradient magnitude inside 13.5 HU/mm (real) against 9.9 without grain
#   and 12.3 with it; GLCM contrast 5.2 against 3.2 and 4.7.
# * capsule_hu 0: no bright capsule beyond that rim (the outer voxel layer of the real
#   lesions is darker than the parenchyma by 41 HU, not brighter).
# * texture: the published one, modulating the drop around its mean.
LIVER_REALISTIC = RealisticSpec(
    contrast_median_hu=47.0,
    contrast_log_sd=0.12,
    contrast_range_hu=(30.0, 80.0),
    rim_fraction=(0.3, 0.5),
    rim_width_mm=(3.0, 6.0),
    blur_sigma_mm=(0.6, 1.2),
    grain_hu=(6.0, 10.0),
    capsule_hu=0.0,
)

# Widening of the axial range when no centre is found (DiffTumor, same group, 2024).
WIDENING_Z_RANGES = ((0.3, 0.7), (0.2, 0.8), (0.1, 0.9), (0.0, 1.0))
EQUAL_TYPES = {"tiny": 0.2, "small": 0.2, "medium": 0.2, "large": 0.2, "mix": 0.2}


def liver_profile() -> OrganProfile:
    """Hypodense liver tumors exactly as released with Hu et al., CVPR 2023.

    Types tiny / small / medium / large / mix with radii 4 / 8 / 16 / 32 mm, the counts and
    elastic sigmas of the release, intensity drop 65–145 HU scaled by the texture, blur sigma
    1–2 mm, centres on an axial slice at 30–70 % of the liver's extent after a 5 mm erosion.
    Profile ``realistic`` draws its intensities from :data:`LIVER_REALISTIC` instead,
    calibrated on the real lesions of LiTS case 117.
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
        realistic=LIVER_REALISTIC,
        description="hypodense liver tumors (Hu et al., CVPR 2023, released parameters)",
    )


def pancreas_profile() -> OrganProfile:
    """Small pancreatic ductal adenocarcinoma (PDAC) and pancreatic cysts.

    Choices and reasoning:

    * PDAC is hypo-attenuating to the enhancing pancreas in most cases; the tumor–pancreas
      attenuation difference in pancreatic and portal-venous phases is reported in the range of
      a few tens of HU (roughly 20–60 HU; about one in ten small PDACs is iso-attenuating).
      Drop drawn from 20–60 HU and *delivered*: it is the mean drop over each tumor's voxels,
      as a reader sees it (the published texture modulates it around that mean), so at a
      pancreatic window (W 350, L 40) a tumor stands 20–60 HU below the gland. (Before issue
      16 the drop was scaled by the texture's level and the blurred edge, and a tumor was
      about 14 HU darker than the gland, barely visible against 15 HU of noise.)
    * Early (T1, <= 2 cm) tumors are the target of Li et al. 2023: radii 4 mm ("tiny",
      <= 1 cm), 8 mm ("small", about 1.5 cm) and 12 mm ("medium", about 2.5 cm); per call 1–3
      tiny or small tumors and one medium tumor (DiffTumor, same group).
    * Cysts (serous/mucinous cystic lesions, pseudocysts) have fluid density, about 0–20 HU,
      and sharp margins: radius 6 mm (5–7 mm semi-axes, 1–1.5 cm cysts), little deformation,
      0.3–0.6 mm blur.
    * The pancreas is thin (head 2–3 cm), so centres are not eroded away from its surface and
      the axial range widens step by step when no centre is found.
    """
    pdac = Appearance("hypodense", (20.0, 60.0), (0.8, 1.5), delivered=True)
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
      texture), and *delivered*: the mean drop over each tumor's voxels (before issue 16 the
      texture's level and the blurred edge cut it to about 22 HU).
    * RCC arises from the parenchyma (cortex and medulla), not from the renal sinus: organ
      voxels whose smoothed intensity lies outside 40–400 HU (sinus fat, about −100 HU, and
      urine, 0–20 HU, in these phases) are never a tumor's centre, never tumor and never
      painted. For unenhanced scans (parenchyma 30–40 HU) lower ``placement.tissue_hu``.
    * Small renal masses (T1a, <= 4 cm) dominate incidental findings: radii 8 mm ("small",
      about 1.6 cm) and 16 mm ("medium", about 3 cm), one or two per call; "large" 24 mm.
    * Simple (Bosniak I) cysts: water density 0–20 HU, imperceptible wall, sharp margins:
      radius 8 mm, little deformation, 0.3–0.6 mm blur, one to three per call.
    * Kidneys are compact; centres are not eroded, the axial range widens when needed.
    """
    rcc = Appearance("hypodense", (40.0, 100.0), (0.8, 1.5), delivered=True)
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
        placement=PlacementSpec(z_ranges=WIDENING_Z_RANGES, erode_mm=None, tissue_hu=(40.0, 400.0)),
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


def tuned_profile(
    profile: OrganProfile,
    *,
    texture_mm: float | None = None,
    rim: float | None = None,
    mass_effect: float | None = None,
) -> OrganProfile:
    """``profile`` with the playground's knobs set (each ``None`` leaves the profile's own):

    Args:
        texture_mm: the texture's grain (its coarse smoothing sigma ``sigma_a_mm``, one value
            instead of the published choice of 3-15 mm).
        rim: the enhancing rim's strength (``realistic``; ``rim_fraction`` fixed at it).
        mass_effect: the strength of the push on the surrounding parenchyma (``realistic``).

    The result travels in the manifest like any custom profile, so a replay needs nothing else.
    """
    texture, realistic = profile.texture, profile.realistic
    if texture_mm is not None:
        texture = dataclasses.replace(texture, sigma_a_mm=(float(texture_mm),))
    if rim is not None:
        realistic = dataclasses.replace(realistic, rim_fraction=(float(rim), float(rim)))
    if mass_effect is not None:
        realistic = dataclasses.replace(realistic, mass_effect=float(mass_effect))
    return dataclasses.replace(profile, texture=texture, realistic=realistic)
