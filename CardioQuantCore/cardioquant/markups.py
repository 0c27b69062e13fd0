"""Points given on the command line, in one convention for every module: RAS millimetres, as Slicer shows them,
either as 'x,y,z;x,y,z;...' or as a Slicer markups file (.mrk.json in LPS or RAS, or the older .fcsv)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import InputError


def parse_points(value: str, option: str) -> np.ndarray:
    """[n, 3] RAS mm from 'x,y,z;x,y,z;...' or a markups file; `option` names the argument in error messages."""
    path = Path(value)
    if path.suffix.lower() in (".json", ".fcsv") or path.is_file():
        if not path.is_file():
            raise InputError(f"{option}: markups file not found: {value}")
        points = read_markups(path)
    else:
        try:
            points = np.array([[float(v) for v in point.split(",")] for point in value.split(";") if point.strip()])
        except ValueError as exc:
            raise InputError(f"{option}: expected 'x,y,z;...' in RAS mm or a markups file, got {value!r}") from exc
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise InputError(f"{option}: expected points 'x,y,z' in RAS mm or a markups file, got {value!r}")
    return points


def parse_point(value: str, option: str) -> np.ndarray:
    """One point (RAS mm, as parse_points) for an option that takes one: a markups file or list of several is
    refused rather than its first point taken (a reader who placed both RV insertions, anterior and inferior, had
    whichever came first read as the anterior one)."""
    points = parse_points(value, option)
    if len(points) != 1:
        raise InputError(f"{option} takes one point; {value} holds {len(points)}: give the one point (x,y,z in RAS "
                         "mm, or a markups file of one point)")
    return points[0]


def read_markups(path: Path) -> np.ndarray:
    """Control points of a Slicer markups file as [n, 3] RAS mm."""
    if path.suffix.lower() == ".fcsv":  # Slicer's older fiducial CSV: RAS unless the header says LPS
        lines = path.read_text().splitlines()
        lps = any(line.startswith("#") and "LPS" in line for line in lines)
        rows = [line.split(",") for line in lines if line and not line.startswith("#")]
        points = np.array([[float(r[1]), float(r[2]), float(r[3])] for r in rows])
        return points * [-1, -1, 1] if lps else points
    try:
        markup = json.loads(path.read_text())["markups"][0]
        points = np.array([p["position"] for p in markup["controlPoints"]], float)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise InputError(f"{path} is not a Slicer markups file with control points") from exc
    return points * [-1, -1, 1] if markup.get("coordinateSystem", "LPS") == "LPS" else points


def swap_lps_ras(point) -> list[float]:
    """LPS -> RAS or RAS -> LPS (the same sign change both ways)."""
    return [-float(point[0]), -float(point[1]), float(point[2])]
