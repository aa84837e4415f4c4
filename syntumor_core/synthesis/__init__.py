"""Tumor synthesis (spec: shared/spec/synthesis.md).

Use :func:`synthesize` to add tumors to a CT volume and :func:`replay` to regenerate a result
from its manifest. Randomness comes only from the generator or seed you pass.
"""

from syntumor_core.synthesis.config import (
    PROFILES,
    Appearance,
    LesionGroup,
    OrganProfile,
    PlacementSpec,
    RealisticSpec,
    SigmaRule,
    TextureSpec,
    TumorType,
)
from syntumor_core.synthesis.engine import Synthesis, replay, synthesize
from syntumor_core.synthesis.manifest import load_manifest, save_manifest
from syntumor_core.synthesis.organs import ORGAN_PROFILES, get_organ_profile, tuned_profile
from syntumor_core.synthesis.params import SynthesisParams
from syntumor_core.synthesis.render import ORGAN_LABEL, TUMOR_LABEL, SynthesisResult

__all__ = [
    "ORGAN_LABEL",
    "ORGAN_PROFILES",
    "PROFILES",
    "TUMOR_LABEL",
    "Appearance",
    "LesionGroup",
    "OrganProfile",
    "PlacementSpec",
    "RealisticSpec",
    "SigmaRule",
    "Synthesis",
    "SynthesisParams",
    "SynthesisResult",
    "TextureSpec",
    "TumorType",
    "get_organ_profile",
    "load_manifest",
    "replay",
    "save_manifest",
    "synthesize",
    "tuned_profile",
]
