"""The image and label volumes a phantom is painted on, and the label values."""

from __future__ import annotations

import numpy as np

from syntumor_core.phantom.geometry import Grid, SmoothField

# Values of the organ label map (0 = any other tissue).
LABELS: dict[str, int] = {
    "liver": 1,
    "spleen": 2,
    "kidney_right": 3,
    "kidney_left": 4,
    "pancreas": 5,
    "aorta": 6,
    "ivc": 7,
}


class Canvas:
    """The image and label volumes being painted; later paint wins."""

    def __init__(self, grid: Grid, fields: dict[str, SmoothField]):
        self.grid = grid
        self.fields = fields
        self.image = np.empty(grid.shape, np.float32)
        self.labels = np.zeros(grid.shape, np.uint8)

    def paint(self, box, mask, hu, label: int = 0) -> None:
        view = self.image[box]
        view[mask] = hu if np.ndim(hu) == 0 else np.broadcast_to(hu, mask.shape)[mask]
        self.labels[box][mask] = label

    def texture(self, box, name: str = "coarse") -> np.ndarray:
        return self.fields[name].on_box(self.grid, box)
