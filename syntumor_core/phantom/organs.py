"""Painting the abdominal organs: bowel, liver, gallbladder, pancreas, spleen, kidneys and
the great vessels, each clipped to the abdominal cavity."""

from __future__ import annotations

import numpy as np

from syntumor_core.phantom.anatomy import Body, Liver, in_abdomen, liver_distance
from syntumor_core.phantom.canvas import LABELS, Canvas
from syntumor_core.phantom.geometry import (
    capsule_segments,
    ellipsoid_distance,
    spline_path,
    to_local,
    tube_depth,
)
from syntumor_core.phantom.intensities import TISSUE_HU


def _paint_tube(canvas, body, points, radii, *, wall_mm=0.0, content=None, hu=0.0, label=0):
    """Paint a smooth tube clipped to the abdomen: a wall and a lumen (``content(box)``)."""
    path, path_radii = spline_path(points, radii)
    box, depth = tube_depth(canvas.grid, capsule_segments(path, path_radii))
    if box is None:
        return
    inside = (depth > 0) & in_abdomen(body, *canvas.grid.coords(box))
    lumen = inside & (depth >= wall_mm)
    if wall_mm > 0:
        canvas.paint(box, inside & ~lumen, TISSUE_HU["bowel_wall"] + 8.0 * canvas.texture(box))
    canvas.paint(box, lumen, hu if content is None else content(box), label)


def paint_bowel(canvas: Canvas, body: Body, layout: dict) -> None:
    """Small bowel (fluid), colon (gas and stool), duodenum and stomach (fluid, gas on top)."""
    grid = canvas.grid

    def fluid(box):
        return TISSUE_HU["fluid"] + 6.0 * canvas.texture(box, "fine")

    def stool(box):
        x = grid.coords(box)[0]
        mottle = canvas.texture(box, "fine")
        return np.where(
            mottle > 0.6 * np.tanh(-x / 40.0), TISSUE_HU["air"], TISSUE_HU["stool"] + 40 * mottle
        )

    def with_gas(level):
        return lambda box: np.where(grid.coords(box)[1] > level, TISSUE_HU["air"], fluid(box))

    for loop in layout["small_bowel"]:
        _paint_tube(canvas, body, loop, 12.0, wall_mm=2.5, content=fluid)
    _paint_tube(canvas, body, *layout["colon"], wall_mm=2.5, content=stool)
    _paint_tube(canvas, body, *layout["duodenum"], wall_mm=2.5, content=with_gas(38.0))
    _paint_tube(canvas, body, *layout["stomach"], wall_mm=4.0, content=with_gas(62.0))


def _paint_kidney(canvas: Canvas, body: Body, kidney, label: int) -> None:
    """Kidney: cortex, medullary pyramids, sinus fat and pelvis, with a medial hilum."""
    centre, axes, frame = kidney
    a, b, c = (float(v) for v in axes)
    box = canvas.grid.box(centre - c - 2, centre + c + 2)
    if box is None:
        return
    x, y, z = canvas.grid.coords(box)
    u, v, w = to_local(x, y, z, centre, frame)
    q = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)
    notch = ((u - a) / (0.55 * a)) ** 2 + (v / (0.4 * b)) ** 2 + (w / (0.35 * c)) ** 2 < 1
    sinus = ((u - 0.45 * a) / (0.62 * a)) ** 2 + (v / (0.45 * b)) ** 2 + (w / (0.6 * c)) ** 2
    fan = np.arctan2(v / b, (u - 0.45 * a) / a)
    pyramid = np.cos(5.0 * fan) + np.cos(2.0 * np.pi * w / (0.42 * c)) > -0.7
    hu = np.where(
        sinus < 1,
        np.where(sinus < 0.25, TISSUE_HU["urine"], TISSUE_HU["sinus_fat"]),
        np.where((q < 0.78) & pyramid, TISSUE_HU["medulla"], TISSUE_HU["cortex"]),
    ) + 5.0 * canvas.texture(box)
    canvas.paint(box, (q < 1) & ~notch & in_abdomen(body, x, y, z), hu, label)


def paint_solid_organs(canvas: Canvas, body: Body, layout: dict) -> None:
    """Pancreas (head + lobulated tube), spleen (concave hilum) and both kidneys."""
    grid = canvas.grid
    head_centre, head_axes = layout["pancreas_head"]
    path, radii = spline_path(*layout["pancreas"])
    segments = capsule_segments(path, radii)
    box = grid.box(
        np.minimum(path.min(0) - 15, head_centre - 25),
        np.maximum(path.max(0) + 15, head_centre + 25),
    )
    if box is not None:
        x, y, z = grid.coords(box)
        _, tube = tube_depth(grid, segments, box)
        depth = np.maximum(tube, -ellipsoid_distance(x, y, z, head_centre, head_axes))
        depth += 2.0 * canvas.texture(box, "fine")
        mask = (depth > 0) & in_abdomen(body, x, y, z)
        canvas.paint(
            box, mask, TISSUE_HU["pancreas"] + 6.0 * canvas.texture(box), LABELS["pancreas"]
        )
    centre, axes, rotation, hollow_centre, hollow_radius = layout["spleen"]
    box = grid.box(centre - axes.max() - 2, centre + axes.max() + 2)
    if box is not None:
        x, y, z = grid.coords(box)
        hollow = (x - hollow_centre[0]) ** 2 + (y - hollow_centre[1]) ** 2 + (
            z - hollow_centre[2]
        ) ** 2 < hollow_radius**2
        spleen = ellipsoid_distance(x, y, z, centre, axes, rotation) < 0
        mask = spleen & ~hollow & in_abdomen(body, x, y, z)
        canvas.paint(box, mask, TISSUE_HU["spleen"] + 5.0 * canvas.texture(box), LABELS["spleen"])
    for name in ("kidney_right", "kidney_left"):
        _paint_kidney(canvas, body, layout[name], LABELS[name])


def paint_liver(canvas: Canvas, body: Body, liver: Liver, layout: dict) -> None:
    """Liver parenchyma with its lobes, then the gallbladder in its fossa."""
    grid = canvas.grid
    apex = float(body.domes[:, 2].max())
    box = grid.box((liver.left[1] - 6, -100, -110), (body.half_width, body.anterior, apex))
    if box is not None:
        x, y, z = grid.coords(box)
        bump = liver.bump_mm * canvas.texture(box, "bump")
        mask = liver_distance(body, liver, x, y, z, bump) < 0
        canvas.paint(box, mask, TISSUE_HU["liver"] + 6.0 * canvas.texture(box), LABELS["liver"])
    _paint_tube(canvas, body, *layout["gallbladder"], hu=TISSUE_HU["bile"])


def paint_great_vessels(canvas: Canvas, body: Body, layout: dict) -> None:
    """Portal, splenic and superior mesenteric veins, SMA, then the aorta and the IVC."""
    for name, hu in (
        ("smv", "vein"),
        ("splenic_vein", "vein"),
        ("portal_vein", "vein"),
        ("sma", "artery"),
    ):
        _paint_tube(canvas, body, *layout[name], hu=TISSUE_HU[hu] + 5.0)
    grid = canvas.grid
    for name, hu in (("aorta", "artery"), ("ivc", "vein")):
        path, radii = spline_path(*layout[name])
        box, depth = tube_depth(grid, capsule_segments(path, radii))
        if box is not None:
            canvas.paint(box, depth > 0, TISSUE_HU[hu] + 3.0 * canvas.texture(box), LABELS[name])


def paint_liver_vessels(canvas: Canvas, segments: np.ndarray) -> tuple:
    """Paint the vessel trees where they lie in the liver; returns the vessel mask and box."""
    vessels = np.zeros(canvas.grid.shape, bool)
    box, depth = tube_depth(canvas.grid, segments)
    if box is not None:
        mask = (depth > 0) & (canvas.labels[box] == LABELS["liver"])
        canvas.paint(box, mask, TISSUE_HU["vein"] + 5.0 * canvas.texture(box), LABELS["liver"])
        vessels[box] = mask
    return vessels, box
