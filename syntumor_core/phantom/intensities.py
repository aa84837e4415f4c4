"""Intensities: the attenuation of each tissue, and the scanner's blur and noise."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Portal-venous-phase attenuation of each tissue in HU (shared/spec/phantom.md).
TISSUE_HU = {
    "air": -1000.0, "lung": -860.0, "fat": -100.0, "visceral_fat": -95.0, "skin": 30.0,
    "muscle": 50.0, "liver": 115.0, "spleen": 120.0, "cortex": 175.0, "medulla": 125.0,
    "sinus_fat": -70.0, "urine": 10.0, "pancreas": 105.0, "artery": 175.0, "vein": 165.0,
    "cancellous": 220.0, "cortical": 950.0, "disc": 85.0, "csf": 15.0, "bile": 8.0,
    "cartilage": 140.0, "bowel_wall": 75.0, "fluid": 18.0, "stool": 10.0,
    "myocardium": 100.0, "blood": 160.0, "table": 250.0,
}  # fmt: skip


def blur_and_noise(image: np.ndarray, rng: np.random.Generator, noise_sd: float) -> np.ndarray:
    """Add white noise, then blur a little: partial-volume edges and correlated noise.

    The 3-tap Gaussian blur (sigma 0.6 voxel in-plane, 0.45 along z) stands for the scanner's
    point-spread function; it scales the noise s.d. by sqrt(prod(sum(k²))), which the gain
    undoes, so the final noise s.d. is ``noise_sd``.
    """
    kernels = [
        np.array([a, 1.0, a]) / (1.0 + 2.0 * a) for a in np.exp(-0.5 / np.square([0.6, 0.6, 0.45]))
    ]
    gain = noise_sd / np.sqrt(np.prod([np.sum(k**2) for k in kernels]))
    if noise_sd > 0:
        step = max(1, 4_000_000 // (image.shape[1] * image.shape[2]))
        for start in range(0, image.shape[0], step):
            slab = rng.standard_normal(
                (len(image[start : start + step]), *image.shape[1:]), dtype=np.float32
            )
            slab *= np.float32(gain)
            image[start : start + step] += slab
    buffer = np.empty_like(image)
    ndimage.correlate1d(image, kernels[0], axis=0, output=buffer, mode="nearest")
    ndimage.correlate1d(buffer, kernels[1], axis=1, output=image, mode="nearest")
    ndimage.correlate1d(image, kernels[2], axis=2, output=buffer, mode="nearest")
    return buffer
