"""Liver vessel trees: portal and hepatic veins grown branch by branch inside the liver."""

from __future__ import annotations

import numpy as np

from syntumor_core.phantom.anatomy import Body, Liver, liver_distance
from syntumor_core.phantom.geometry import SmoothField


def _cone_directions(rng: np.random.Generator, headings, angles) -> np.ndarray:
    """Unit vectors at ``angles`` (radians, shape (n, m)) from each of ``headings`` (n, 3).

    The azimuths around each heading are random; the result has shape (n, m, 3).
    """
    h = np.asarray(headings, np.float64)
    h = h / np.linalg.norm(h, axis=1, keepdims=True)
    zero = np.zeros(len(h))
    e1 = np.where(
        (np.abs(h[:, 0]) < 0.9)[:, None],
        np.stack([zero, -h[:, 2], h[:, 1]], 1),
        np.stack([h[:, 2], zero, -h[:, 0]], 1),
    )
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(h, e1)
    angles = np.asarray(angles, np.float64)[..., None]
    azimuth = rng.uniform(0.0, 2 * np.pi, angles.shape)
    side = np.cos(azimuth) * e1[:, None] + np.sin(azimuth) * e2[:, None]
    return np.cos(angles) * h[:, None] + np.sin(angles) * side


def _grow_tree(rng, depth_at, root, heading, radius, *, min_radius=1.5, max_segments=120):
    """A tapering, branching vessel tree grown inside an organ from ``root`` along ``heading``.

    Generation by generation, every open branch tries 8 directions within 20° of its heading
    (and, failing those, 8 shorter ones within 60°) and keeps the one that stays deepest
    inside the organ (``depth_at(points)`` in mm, positive inside) and away from earlier
    branches; branches split with Murray's law (r³ = r₁³ + r₂³) and end below
    ``min_radius``. Returns capsule segments ``(x0, y0, z0, x1, y1, z1, r0, r1)``.
    """
    segments: list[np.ndarray] = []
    tips = [np.asarray(root, np.float64)]
    frontier = [(np.asarray(root, np.float64), np.asarray(heading, np.float64), radius)]
    reach = np.repeat([1.0, 0.6], 8)
    while frontier and len(segments) < max_segments:
        frontier = frontier[: max_segments - len(segments)]
        starts = np.array([f[0] for f in frontier])
        radii = np.array([f[2] for f in frontier])
        lengths = np.clip(radii * rng.uniform(4.0, 7.0, len(radii)), 7.0, 30.0)
        angles = rng.uniform(0.0, np.radians(np.repeat([20.0, 60.0], 8)), (len(radii), 16))
        directions = _cone_directions(rng, [f[1] for f in frontier], angles)
        ends = starts[:, None] + (lengths[:, None] * reach)[..., None] * directions
        points = np.concatenate([ends, 0.5 * (starts[:, None] + ends)]).reshape(-1, 3)
        depth = depth_at(points).reshape(2, len(radii), 16).min(0)
        crowd = np.linalg.norm(ends[:, :, None] - np.asarray(tips)[None, None], axis=3).min(2)
        score = np.minimum(depth, 10.0) + 0.5 * np.minimum(crowd, 20.0) + rng.uniform(0, 3, 16)
        score[depth < radii[:, None] + 0.5] = -np.inf
        score[:, 8:] -= 1000.0  # the fallback only when no narrow candidate fits
        best = np.argmax(score, axis=1)
        grows = np.isfinite(score[np.arange(len(radii)), best])
        chosen = directions[np.arange(len(radii)), best]
        children_dirs = _cone_directions(
            rng, chosen, rng.uniform([0.1, 0.7], [0.4, 1.2], (len(radii), 2))
        )
        split, share = rng.random(len(radii)) >= 0.2, rng.uniform(0.45, 0.75, len(radii))
        frontier = []
        for n in np.flatnonzero(grows):
            end, r_end = ends[n, best[n]], radii[n] * 0.96
            segments.append(np.r_[starts[n], end, radii[n], r_end])
            tips.append(end)
            if not split[n]:
                frontier.append((end, chosen[n], r_end))
                continue
            for child_r, child_dir in (
                (r_end * share[n] ** (1 / 3), children_dirs[n, 0]),
                (r_end * (1 - share[n]) ** (1 / 3), children_dirs[n, 1]),
            ):
                if child_r >= min_radius:
                    frontier.append((end, child_dir, child_r))
    return np.array(segments).reshape(-1, 8)


def liver_trees(rng, body: Body, liver: Liver, layout: dict, bump: SmoothField):
    """Portal tree from the hilum and hepatic-vein trees draining into the IVC (segments)."""

    def depth_at(points):
        return -liver_distance(body, liver, *points.T, liver.bump_mm * bump.at_points(points))

    hilum = layout["portal_vein"][0][-1]
    ivc_points = layout["ivc"][0]
    confluence = ivc_points[np.argmin(np.abs(ivc_points[:, 2] - 52.0))]
    split = hilum + 16.0 * np.array([0.9, -0.2, 0.4])
    trunks = [
        (split, (0.6, 0.55, 0.55), 5.5, 14.0),  # right anterior portal vein
        (split, (0.75, -0.55, -0.35), 5.5, 14.0),  # right posterior portal vein
        (hilum, (-0.8, 0.5, 0.3), 6.0, 24.0),  # left portal vein (umbilical portion)
        (confluence, (1.0, -0.2, -0.3), 6.5, 20.0),  # right hepatic vein
        (confluence, (0.3, 1.0, -0.45), 6.0, 20.0),  # middle hepatic vein
        (confluence, (-0.7, 0.8, -0.2), 5.5, 20.0),  # left hepatic vein
    ]
    segments = [np.r_[hilum, split, 7.0, 6.5][None]]
    for start, heading, radius, length in trunks:
        heading = np.asarray(heading) / np.linalg.norm(heading)
        end = start + length * heading
        segments.append(np.r_[start, end, radius, radius][None])
        segments.append(_grow_tree(rng, depth_at, end, heading, radius * 0.95))
    return np.concatenate(segments)
