"""Procedural abdominal CT phantoms: SynTumor's embedded default data.

A phantom is a portal-venous-phase abdominal CT built from analytic shapes defined in
millimetres: body outline, skin, subcutaneous and visceral fat, muscle (abdominal wall, psoas,
paraspinal), spine and ribs, lung bases and the heart above the diaphragm, a liver of lobar
shape with portal and hepatic vessel trees, gallbladder, spleen, kidneys with cortex, medulla
and sinus fat, pancreas, aorta, inferior vena cava, portal/splenic veins, stomach, duodenum,
colon and small bowel. Intensities follow ``shared/spec/phantom.md``; organs carry a smooth
low-frequency texture, and the whole image carries slightly correlated noise.

Orientation: arrays are indexed ``(x, y, z)`` and the affine is ``diag(spacing)`` with an
origin that puts world ``(0, 0, 0)`` at the centre of the field of view, so the volume is
RAS+: +x points to the patient's Right, +y Anterior and +z Superior (DICOM's LPS negates x and
y). The liver therefore lies at positive world x, the spleen at negative x, the spine at
negative y; world z = 0 is (within a few mm) the liver's cranio-caudal centre, so the default
field of view (18 cm) holds the whole liver and a 10 cm one its central 1.2–1.4 litres.

Anatomy does not depend on the grid: the same seed at another shape or spacing gives the same
anatomy resampled; only the image noise and a 3-tap partial-volume blur are per voxel. Each
part of the anatomy draws from its own child generator of ``default_rng(seed)``.

Modules: :mod:`.build` (:func:`make_phantom`, :class:`Phantom`), :mod:`.anatomy` (the drawn
body, liver and organ layout), :mod:`.vessels` (liver vessel trees), :mod:`.geometry`
(grids, smooth fields, distance functions, tubes), :mod:`.canvas` (the volumes painted and
:data:`LABELS`), :mod:`.body` and :mod:`.organs` (what is painted) and :mod:`.intensities`
(attenuation of each tissue, scanner blur and noise).

Example:
    >>> phantom = make_phantom(seed=3, shape=(96, 96, 48), spacing=(4.0, 4.0, 4.0))
    >>> bool(phantom.organ_mask("liver").any())
    True
"""

from syntumor_core.phantom.build import Phantom, make_phantom
from syntumor_core.phantom.canvas import LABELS
from syntumor_core.phantom.intensities import TISSUE_HU

__all__ = ["LABELS", "TISSUE_HU", "Phantom", "make_phantom"]
