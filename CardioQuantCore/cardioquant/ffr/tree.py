"""Centerline tree: vmtk-style polylines (one per inlet-to-outlet path, shared trunk points repeated, RAS mm,
MaximumInscribedSphereRadius in mm) split into branch segments, plus stenosis detection along each path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError


@dataclass
class Path:
    name: str
    points: np.ndarray   # (n, 3) mm
    radii: np.ndarray    # (n,) mm

    def arc_length(self) -> np.ndarray:
        return np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(self.points, axis=0), axis=1))]


@dataclass
class Segment:
    index: int
    start: int                    # index into the reference path's points (shared with the parent's last point)
    stop: int                     # inclusive
    paths: list[int]              # paths running through this segment
    parent: int | None
    children: list[int] = field(default_factory=list)


def build_segments(paths: list[Path], tolerance_mm: float = 0.3) -> list[Segment]:
    """Split paths (all from one inlet) where they stop sharing points."""
    if not paths:
        raise InputError("no centerline paths")
    if any(np.linalg.norm(p.points[0] - paths[0].points[0]) > max(tolerance_mm, 1.0) for p in paths):
        raise InputError("centerline paths do not start at one inlet; give one tree per file or split by inlet")
    segments: list[Segment] = []

    def shared(ids, k):
        return all(k < len(paths[i].points) for i in ids) and all(
            np.linalg.norm(paths[i].points[k] - paths[ids[0]].points[k]) <= tolerance_mm for i in ids)

    def grow(ids, start, parent):
        k = start
        if len(ids) == 1:
            k = len(paths[ids[0]].points) - 1
        else:
            while shared(ids, k + 1):
                k += 1
        segment = Segment(len(segments), start, k, list(ids), parent)
        segments.append(segment)
        if parent is not None:
            segments[parent].children.append(segment.index)
        if len(ids) > 1:
            groups: list[list[int]] = []
            for i in ids:
                if k + 1 >= len(paths[i].points):
                    raise InputError(f"path {paths[i].name} ends inside another vessel (at a bifurcation)")
                for group in groups:
                    if np.linalg.norm(paths[i].points[k + 1] - paths[group[0]].points[k + 1]) <= tolerance_mm:
                        group.append(i)
                        break
                else:
                    groups.append([i])
            for group in groups:
                grow(group, k, segment.index)

    grow(list(range(len(paths))), 0, None)
    return segments


@dataclass
class Lesion:
    path: str
    start_mm: float
    stop_mm: float
    throat_mm: float
    reference_radius_mm: float
    minimum_radius_mm: float

    @property
    def diameter_stenosis_percent(self) -> float:
        return 100.0 * (1 - self.minimum_radius_mm / self.reference_radius_mm)

    @property
    def area_stenosis_percent(self) -> float:
        return 100.0 * (1 - (self.minimum_radius_mm / self.reference_radius_mm) ** 2)

    @property
    def length_mm(self) -> float:
        return self.stop_mm - self.start_mm


def reference_radius(s: np.ndarray, r: np.ndarray, iterations: int = 5) -> np.ndarray:
    """Healthy radius along a path: a straight-line taper fitted to the radius profile, refitted without the
    points more than 10 % below it (narrowings) or 15 % above it (bulges where a side branch leaves)."""
    keep = np.ones(r.size, bool)
    fit = np.full(r.size, np.median(r))
    for _ in range(iterations):
        if keep.sum() < 3:
            break
        slope, intercept = np.polyfit(s[keep], r[keep], 1)
        fit = slope * s + intercept
        keep = (r >= 0.9 * fit) & (r <= 1.15 * fit)
    return np.maximum(fit, r.min())


def find_lesions(path: Path, min_diameter_stenosis: float = 20.0, edge_fraction: float = 0.9) -> list[Lesion]:
    """Narrowings whose minimum diameter is at least `min_diameter_stenosis` % below the reference; the lesion
    extends while the radius stays below `edge_fraction` x reference."""
    s = path.arc_length()
    ref = reference_radius(s, path.radii)
    ratio = path.radii / ref
    lesions = []
    below = ratio < edge_fraction
    k = 0
    while k < len(s):
        if not below[k]:
            k += 1
            continue
        start = k
        while k < len(s) and below[k]:
            k += 1
        stop = k - 1
        throat = start + int(np.argmin(ratio[start:stop + 1]))
        if 100 * (1 - ratio[throat]) >= min_diameter_stenosis:
            lesions.append(Lesion(path.name, float(s[max(start - 1, 0)]), float(s[min(stop + 1, len(s) - 1)]),
                                  float(s[throat]), float(ref[throat]), float(path.radii[throat])))
    return lesions
