"""From a centerline tree to FFR along every vessel: discretise, build the 0D network, solve with svZeroD.

Each branch segment is cut at lesion edges and at most every `max_element_mm`. Outside lesions an element's
resistance is Poiseuille integrated along the measured radius (8 mu dl / (pi r^4) summed point to point). A lesion
element uses Young-Tsai: its linear (viscous, Kv) and quadratic (expansion, Kt) terms with A0 = reference area and
As = minimum area over the lesion length. Outlets carry Murray-split hyperemic resistances (physics.BoundaryConditions);
the inlet carries the aortic pressure. FFR = P / Pa.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .physics import DEFAULT_BLOOD, MMHG, Blood, BoundaryConditions, YoungTsai, poiseuille_resistance
from .tree import Lesion, Path, build_segments, find_lesions
from .zerod import Network, Vessel, solve


@dataclass
class Element:
    segment: int
    path: int          # a path running through it (point indices are that path's)
    start: int
    stop: int
    lesion: Lesion | None


def segment_lesions(paths, segments, min_diameter_stenosis: float) -> dict[int, list[tuple[int, int, Lesion]]]:
    """Lesions of each branch segment, as (start, stop) point indices of its reference path plus the lesion.

    Each segment gets its own reference taper: radius steps at bifurcations would otherwise read as narrowings.
    Distances in the Lesion are from the ostium along that path.
    """
    out = {}
    for segment in segments:
        path = paths[segment.paths[0]]
        s = path.arc_length()
        first = segment.start + (1 if segment.parent is not None else 0)  # the junction point belongs to the parent
        piece = Path(path.name, path.points[first:segment.stop + 1], path.radii[first:segment.stop + 1])
        ranges = []
        if len(piece.points) >= 5:
            offset = s[first]
            for lesion in find_lesions(piece, min_diameter_stenosis):
                lesion.start_mm += offset
                lesion.stop_mm += offset
                lesion.throat_mm += offset
                start = int(np.searchsorted(s, lesion.start_mm - 1e-9))
                stop = int(np.searchsorted(s, lesion.stop_mm - 1e-9))
                ranges.append((max(start, segment.start), min(stop, segment.stop), lesion))
        out[segment.index] = ranges
    return out


def discretise(paths, segments, lesions_by_segment, max_element_mm: float = 5.0) -> list[Element]:
    elements = []
    for segment in segments:
        path_index = segment.paths[0]
        path = paths[path_index]
        s = path.arc_length()
        ranges = lesions_by_segment[segment.index]
        cuts = sorted({segment.start, segment.stop}
                      | {k for start, stop, _ in ranges for k in (start, stop) if segment.start < k < segment.stop})
        if len(cuts) == 1:  # paths that part at their first point: a zero-length segment still joins the tree
            elements.append(Element(segment.index, path_index, segment.start, segment.stop, None))
            continue
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            lesion = next((les for start, stop, les in ranges if start <= a and b <= stop), None)
            if lesion is not None:
                elements.append(Element(segment.index, path_index, a, b, lesion))
                continue
            pieces = max(1, math.ceil((s[b] - s[a]) / max_element_mm))
            bounds = np.unique(np.round(np.linspace(a, b, pieces + 1)).astype(int))
            elements += [Element(segment.index, path_index, int(x), int(y), None)
                         for x, y in zip(bounds[:-1], bounds[1:], strict=True)]
    return elements


def element_coefficients(path: Path, element: Element, blood: Blood) -> tuple[float, float, float]:
    """(linear R, quadratic S, length cm) in CGS."""
    points = path.points[element.start:element.stop + 1] / 10.0
    radii = path.radii[element.start:element.stop + 1] / 10.0
    lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
    length = float(lengths.sum())
    if element.lesion is not None:
        a0 = math.pi * (element.lesion.reference_radius_mm / 10.0) ** 2
        a_s = math.pi * (element.lesion.minimum_radius_mm / 10.0) ** 2
        linear, quadratic = YoungTsai(a0, a_s, max(length, 1e-3)).coefficients(blood)
        return linear, quadratic, length
    mid = (radii[:-1] + radii[1:]) / 2
    return float(np.sum(poiseuille_resistance(lengths, mid, blood))), 0.0, length


@dataclass
class FfrResult:
    paths: list[Path]
    ffr: list[np.ndarray]            # per path, FFR at every point
    distance_mm: list[np.ndarray]
    lesions: list[dict]
    outlet_flow_ml_s: list[float]
    inlet_flow_ml_s: float


def solve_tree(paths: list[Path], bc: BoundaryConditions, side: str = "left", blood: Blood = DEFAULT_BLOOD,
               max_element_mm: float = 5.0, min_diameter_stenosis: float = 20.0) -> FfrResult:
    segments = build_segments(paths)
    lesions_by_segment = segment_lesions(paths, segments, min_diameter_stenosis)
    elements = discretise(paths, segments, lesions_by_segment, max_element_mm)
    network = Network(inlet_pressure=bc.aortic_pressure_mmhg * MMHG)
    first_of: dict[int, int] = {}  # segment -> its first and last element
    last_of: dict[int, int] = {}
    for index, element in enumerate(elements):
        linear, quadratic, length = element_coefficients(paths[element.path], element, blood)
        network.vessels.append(Vessel(f"e{index}", linear, quadratic, max(length, 1e-3)))
        first_of.setdefault(element.segment, index)
        if element.segment in last_of:
            network.children[last_of[element.segment]] = [index]
        last_of[element.segment] = index
    leaves = [seg for seg in segments if not seg.children]
    for segment in segments:
        if segment.children:
            network.children[last_of[segment.index]] = [first_of[c] for c in segment.children]
    diameters = [_outlet_diameter_cm(paths[seg.paths[0]]) for seg in leaves]
    resistances = bc.outlet_resistances(diameters, side)
    venous = bc.venous_pressure_mmhg * MMHG
    for segment, resistance in zip(leaves, resistances, strict=True):
        network.outlets[last_of[segment.index]] = (resistance, venous)
    solution = solve(network)
    pa = bc.aortic_pressure_mmhg * MMHG
    ffr, distances = [], []
    for path_index, path in enumerate(paths):
        s = path.arc_length()
        values = np.full(len(s), np.nan)
        for index, element in enumerate(elements):
            if path_index not in segments[element.segment].paths:
                continue
            span = s[element.start:element.stop + 1]
            t = (span - span[0]) / max(span[-1] - span[0], 1e-9)
            values[element.start:element.stop + 1] = (solution.pressure_in[index] * (1 - t)
                                                      + solution.pressure_out[index] * t) / pa
        ffr.append(values)
        distances.append(s)
    lesion_rows = _lesion_rows(paths, segments, lesions_by_segment, ffr, distances)
    outlet_flows = [solution.flow[last_of[seg.index]] for seg in leaves]
    return FfrResult(paths, ffr, distances, lesion_rows, outlet_flows, solution.flow[network.roots()[0]])


def merge_results(results: list[FfrResult]) -> FfrResult:
    """Left and right trees solved separately (each with its own inlet and share of the flow), shown together."""
    if len(results) == 1:
        return results[0]
    return FfrResult([p for r in results for p in r.paths], [f for r in results for f in r.ffr],
                     [d for r in results for d in r.distance_mm], [les for r in results for les in r.lesions],
                     [q for r in results for q in r.outlet_flow_ml_s], sum(r.inlet_flow_ml_s for r in results))


def _outlet_diameter_cm(path: Path, window_mm: float = 5.0) -> float:
    s = path.arc_length()
    tail = path.radii[s >= s[-1] - window_mm]
    return 2 * float(np.mean(tail)) / 10.0


def _lesion_rows(paths, segments, lesions_by_segment, ffr, distances) -> list[dict]:
    rows = []
    for segment in segments:
        index = segment.paths[0]
        for _, _, lesion in lesions_by_segment[segment.index]:
            before = float(np.interp(lesion.start_mm, distances[index], ffr[index]))
            after = float(np.interp(lesion.stop_mm, distances[index], ffr[index]))
            throat = paths[index].points[min(int(np.searchsorted(distances[index], lesion.throat_mm)), len(distances[index]) - 1)]
            rows.append({"vessel": paths[index].name if len(segment.paths) == 1 else "+".join(paths[i].name for i in segment.paths),
                         "location_mm": lesion.throat_mm, "start_mm": lesion.start_mm, "stop_mm": lesion.stop_mm,
                         "length_mm": lesion.length_mm, "diameter_stenosis_percent": lesion.diameter_stenosis_percent,
                         "area_stenosis_percent": lesion.area_stenosis_percent,
                         "reference_diameter_mm": 2 * lesion.reference_radius_mm,
                         "minimum_lumen_diameter_mm": 2 * lesion.minimum_radius_mm,
                         "delta_ffr": before - after, "point_ras": [float(v) for v in throat]})
    return rows
