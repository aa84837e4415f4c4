"""Painting the body: wall layers, lungs, back muscles, heart, spine and ribs."""

from __future__ import annotations

import numpy as np

from syntumor_core.phantom.anatomy import (
    Body,
    body_outline,
    cavity_distance,
    diaphragm,
    wall_depths,
)
from syntumor_core.phantom.canvas import Canvas
from syntumor_core.phantom.geometry import (
    capsule_segments,
    ellipsoid_distance,
    spline_path,
    tube_depth,
)
from syntumor_core.phantom.intensities import TISSUE_HU


def paint_layers(canvas: Canvas, body: Body) -> None:
    """Air, skin, subcutaneous fat, muscle wall, visceral fat, diaphragm, lungs, table."""
    grid = canvas.grid
    x, y, z = grid.axes[0][:, None], grid.axes[1][None, :], grid.axes[2]
    rho, theta = np.hypot(x, y), np.arctan2(y, x)
    outline = body_outline(body, theta)
    scale = (1.0 + body.taper_per_mm * z).astype(np.float32)
    boundaries = np.stack([(rho + d) / outline for d in (0.0, *wall_depths(body, theta))])
    boundaries = boundaries.astype(np.float32)[..., None]  # (4, nx, ny, 1): inside if < scale
    height, half = diaphragm(body, x, y)
    lung_from, lung_to = (height - half)[..., None], (height + half)[..., None]
    lut = np.array(
        [TISSUE_HU[k] for k in ("air", "skin", "fat", "muscle", "visceral_fat", "lung", "muscle")],
        np.float32,
    )
    for row in range(grid.shape[0]):  # row by row: small, contiguous temporaries
        index = (boundaries[0, row] < scale).astype(np.uint8)
        for layer in boundaries[1:, row]:
            index += layer < scale
        cavity = index == 4
        index[cavity & (z >= lung_from[row])] = 6
        index[cavity & (z > lung_to[row])] = 5
        np.take(lut, index, out=canvas.image[row])
    table_top = -body.posterior * (1.0 + body.taper_per_mm * float(z.max())) - 12.0
    table = (np.abs(y - (table_top - 4.0 + 0.0015 * x * x)) < 4.0) & (np.abs(x) < 230.0)
    canvas.image[table] = TISSUE_HU["table"]


def paint_back_muscles(canvas: Canvas, body: Body) -> None:
    """Paraspinal, psoas and quadratus lumborum muscles either side of the spine."""
    grid, ys = canvas.grid, body.spine_y
    back = -body.posterior + wall_depths(body, -np.pi / 2)[1] + 1.0
    centre_y, semi_y = (back + ys - 22.0) / 2.0, (ys - 22.0 - back) / 2.0
    for side in (1.0, -1.0):
        box = grid.box((side * 30 - 28, back - 2, -400), (side * 30 + 28, ys, 400))
        if box is not None:
            x, y, z = grid.coords(box)
            inside = ((x - side * 30) / 25.0) ** 2 + ((y - centre_y) / semi_y) ** 2 < 1
            mask = np.broadcast_to(inside, tuple(s.stop - s.start for s in box))
            canvas.paint(box, mask, TISSUE_HU["muscle"] + 4.0 * canvas.texture(box))
        for centre_x, centre_dy, top, growth, ratio in (
            (24, 2, -15, 0.3, 0.85),
            (56, -16, -40, 0.25, 0.55),
        ):
            box = grid.box(
                (side * centre_x - 45, ys - 40, -400), (side * centre_x + 45, ys + 30, top)
            )
            if box is None:
                continue
            x, y, z = grid.coords(box)
            radius = np.clip(growth * (top - z), 0.0, 22.0) + 1e-3
            cx = side * (centre_x + 0.5 * radius)
            inside = ((x - cx) / radius) ** 2 + ((y - ys - centre_dy) / (ratio * radius)) ** 2 < 1
            canvas.paint(box, inside, TISSUE_HU["muscle"] + 4.0 * canvas.texture(box))


def paint_lung_vessels(canvas: Canvas, body: Body, segments: np.ndarray) -> None:
    """Pulmonary vessels, drawn only where the voxels are lung."""
    box, depth = tube_depth(canvas.grid, segments)
    if box is not None:
        x, y, z = canvas.grid.coords(box)
        lung = (canvas.image[box] < -500) & (cavity_distance(body, x, y, z) < 0)
        canvas.paint(box, (depth > 0) & lung, TISSUE_HU["blood"] - 40.0)


def paint_heart(canvas: Canvas, body: Body, layout: dict) -> None:
    """The inferior heart above the diaphragm: myocardium, blood pool, pericardial fat."""
    centre, axes = layout["heart"]
    reach = np.asarray(axes) * 1.15
    box = canvas.grid.box(centre - reach, centre + reach)
    if box is None:
        return
    x, y, z = canvas.grid.coords(box)
    q = ellipsoid_distance(x, y, z, centre, axes, scale=1.0) + 1.0
    height, half = diaphragm(body, x, y)
    thorax = (z > height + half) & (cavity_distance(body, x, y, z) < 0)
    hu = np.where(q < 0.8, TISSUE_HU["blood"], TISSUE_HU["myocardium"]) + 5.0 * canvas.texture(box)
    canvas.paint(box, thorax & (q < 1.1) & (q >= 1.0), TISSUE_HU["fat"])
    canvas.paint(box, thorax & (q < 1.0), hu)


def paint_spine(canvas: Canvas, body: Body) -> None:
    """Vertebrae (cortical rim, cancellous core, posterior elements), discs, spinal canal."""
    grid, ys = canvas.grid, body.spine_y
    back = -body.posterior + wall_depths(body, -np.pi / 2)[1] + 3.0
    box = grid.box((-45, back, -400), (45, ys + 17, 400))
    if box is None:
        return
    x, y, z = grid.coords(box)
    period, phase = 31.0, ((z + 7.0) % 31.0) / 31.0
    body_r = (x / 21.0) ** 2 + ((y - ys) / 16.0) ** 2
    canal_y = ys - 26.0
    canal = (x / 10.0) ** 2 + ((y - canal_y) / 8.5) ** 2 < 1
    arch = (
        ((x / 18.0) ** 2 + ((y - canal_y + 1.0) / 15.0) ** 2 < 1) & (phase > 0.2) & (phase < 0.85)
    )
    spinous = (
        (np.abs(x) < 3.5 + 0.1 * (y - back)) & (y < canal_y - 10) & ((phase + 0.25) % 1.0 > 0.45)
    )
    transverse = (
        (np.abs(x) > 10)
        & (np.abs(x) < 36 - 0.15 * np.abs(y - canal_y))
        & (np.abs(y - canal_y - 6) < 3.5)
        & (phase > 0.4)
        & (phase < 0.6)
    )
    disc_end = 7.0 / period
    disc = phase < disc_end
    endplate = (phase < disc_end + 1.5 / period) | (phase > 1.0 - 1.5 / period)
    shell = (body_r > (1.0 - 2.5 / 16.0) ** 2) | endplate
    bone = np.where(
        shell & ~disc,
        TISSUE_HU["cortical"],
        TISSUE_HU["cancellous"] + 35 * canvas.texture(box, "fine"),
    )
    hu = np.where(disc & (body_r < 1), TISSUE_HU["disc"], bone)
    canvas.paint(box, np.broadcast_to(body_r < 1, hu.shape), hu)
    posterior = (arch | spinous | transverse) & ~canal
    canvas.paint(box, posterior, 0.5 * (TISSUE_HU["cortical"] + TISSUE_HU["cancellous"]))
    canvas.paint(box, np.broadcast_to(canal, hu.shape), TISSUE_HU["csf"])


def _rib_paths(body: Body, offsets: np.ndarray) -> tuple[list, list]:
    """Centre lines of ribs 7–12 on both sides: bony part and costal cartilage."""
    bones, cartilages = [], []
    ends = np.pi * np.array([0.97, 0.94, 0.88, 0.78, 0.6, 0.45])
    for s_index, side in enumerate((1.0, -1.0)):
        for k, end in enumerate(ends):
            top = 96.0 - 26.0 * k + offsets[s_index, k]
            phi = np.linspace(0.6, end, 24)
            z = top - 80.0 * (phi / np.pi) ** 1.5
            theta = np.arctan2(-np.cos(phi), side * np.sin(phi))
            rho = (1.0 + body.taper_per_mm * z) * body_outline(body, theta)
            rho -= wall_depths(body, theta)[1] + 6.0
            ring = np.column_stack([rho * np.cos(theta), rho * np.sin(theta), z])
            head = np.array([[side * 38.0, body.spine_y - 22.0, top + 8.0]])
            points = np.concatenate([head, ring])
            bony = np.r_[True, phi < 0.75 * np.pi]
            bones.append(points[bony])
            if not bony.all():
                cartilages.append(points[np.flatnonzero(~bony)[0] - 1 :])
    return bones, cartilages


def paint_ribs(canvas: Canvas, body: Body, offsets: np.ndarray) -> None:
    """Ribs (cortical shell, marrow) and their costal cartilages."""
    bones, cartilages = _rib_paths(body, offsets)
    for paths, radius in ((cartilages, 4.0), (bones, 4.0)):
        segments = [capsule_segments(*spline_path(p, radius, 4.0)) for p in paths]
        box, depth = tube_depth(canvas.grid, np.concatenate(segments))
        if box is None:
            continue
        if paths is cartilages:
            canvas.paint(box, depth > 0, TISSUE_HU["cartilage"])
        else:
            hu = np.where(depth < 1.3, TISSUE_HU["cortical"], 250.0)
            canvas.paint(box, depth > 0, hu)
