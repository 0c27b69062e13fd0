"""FFR from an extracted tree against FFR on the true geometry of a phantom (same boundary conditions).

Each extracted path is matched to the nearest point of the true tree on the same side: its distal FFR is compared
with the true FFR at that point, so a centerline that stops short of the true outlet is still compared fairly.
True outlets count as found when an extracted path ends within `found_mm` of them.
"""

from __future__ import annotations

import numpy as np


def compare(extracted: dict, truth: dict, match_mm: float = 3.0, found_mm: float = 10.0) -> dict:
    """extracted, truth: side -> FfrResult. Returns per-path rows and a summary."""
    rows, found, outlets = [], 0, 0
    for side, true_result in truth.items():
        points = np.vstack([p.points for p in true_result.paths])
        values = np.concatenate(true_result.ffr)
        result = extracted.get(side)
        ends = [p.points[-1] for p in result.paths] if result else []
        for path in true_result.paths:
            outlets += 1
            found += bool(ends) and min(np.linalg.norm(e - path.points[-1]) for e in ends) <= found_mm
        if result is None:
            continue
        for path, ffr in zip(result.paths, result.ffr, strict=True):
            distance = np.linalg.norm(points - path.points[-1], axis=1)
            nearest = int(np.argmin(distance))
            rows.append({"side": side, "path": path.name, "distance_mm": float(distance[nearest]),
                         "ffr": float(ffr[-1]), "true_ffr": float(values[nearest]),
                         "error": float(ffr[-1] - values[nearest])})
    matched = [abs(r["error"]) for r in rows if r["distance_mm"] <= match_mm]
    return {"rows": rows, "paths": len(rows), "matched": len(matched), "true_outlets": outlets, "outlets_found": found,
            "median_abs_error": float(np.median(matched)) if matched else float("nan"),
            "max_abs_error": float(np.max(matched)) if matched else float("nan")}
