"""Manifests: the JSON record of a synthesis call, and replaying one bit for bit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from syntumor_core import __version__
from syntumor_core.errors import ManifestError

MANIFEST_KIND = "syntumor.synthesis"
# 2: the render's arithmetic changed (texture on coarse grids over the tumors' boxes, blur as
# matrix products), so format-1 parameters no longer replay to the same voxels.
MANIFEST_FORMAT = 2


def array_checksum(array: np.ndarray) -> str:
    """sha256 over dtype, shape and bytes (masks are hashed as packed booleans)."""
    digest = hashlib.sha256()
    if array.dtype == bool:
        digest.update(b"bool")
        digest.update(repr(array.shape).encode())
        digest.update(np.packbits(array, axis=None).tobytes())
    else:
        contiguous = np.ascontiguousarray(array)
        digest.update(str(contiguous.dtype.str).encode())
        digest.update(repr(contiguous.shape).encode())
        digest.update(memoryview(contiguous).cast("B"))
    return digest.hexdigest()


def build_manifest(
    *,
    params: dict[str, Any],
    organ_profile: dict[str, Any],
    spacing,
    shape,
    seed: int | None,
    image_checksum: str | None,
    mask_checksum: str | None,
) -> dict[str, Any]:
    return {
        "kind": MANIFEST_KIND,
        "format": MANIFEST_FORMAT,
        "syntumor_version": __version__,
        "seed": seed,
        "organ": params["organ"],
        "profile": params["profile"],
        "tumor_type": params["tumor_type"],
        "spacing_mm": [float(s) for s in spacing],
        "shape": [int(n) for n in shape],
        "input": {"image_sha256": image_checksum, "mask_sha256": mask_checksum},
        "organ_profile": organ_profile,
        "params": params,
    }


def check_manifest(manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
        raise ManifestError(f"not a SynTumor synthesis manifest (expected kind {MANIFEST_KIND!r})")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(
            f"unsupported manifest format {manifest.get('format')!r}; this version reads "
            f"{MANIFEST_FORMAT} (manifests of another format render differently: synthesize "
            f"again with the recorded seed instead)"
        )
    for key in ("params", "organ_profile", "spacing_mm", "shape", "input"):
        if key not in manifest:
            raise ManifestError(f"manifest lacks {key!r}")
    return manifest


def save_manifest(manifest: dict[str, Any], path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return path


def load_manifest(path) -> dict[str, Any]:
    try:
        return check_manifest(json.loads(Path(path).read_text(encoding="utf-8")))
    except OSError as error:
        raise ManifestError(f"cannot read manifest {path}: {error.strerror or error}") from error
    except json.JSONDecodeError as error:
        raise ManifestError(f"manifest {path} is not valid JSON: {error}") from error
