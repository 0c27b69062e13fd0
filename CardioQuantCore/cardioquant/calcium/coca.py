"""Stanford COCA gated calcium CTs: the scan and the experts' per-artery lesion traces as a label map.

Layout (docs/REFERENCE.md section 6): `patient/<id>/<series>/*.dcm` and `calcium_xml/<id>.xml`, an OsiriX plist
(Images -> ROIs; each ROI has Name and Point_mm, the polygon in DICOM patient coordinates, LPS mm, on one axial
slice). A lesion's truth is the voxels >= 130 HU inside its polygon; the artery comes from the ROI name.
Research-use data: nothing here is shipped, scripts and the bench take the data path.
"""

from __future__ import annotations

import plistlib
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.path import Path as Polygon

from .scoring import ARTERIES

ARTERY_OF_ROI_NAME = {
    "left coronary artery": 1,  # the left main (COCA's sheet calls it LCA)
    "left main coronary artery": 1,
    "left anterior descending artery": 2,
    "left circumflex artery": 3,
    "right coronary artery": 4,
}
LABEL_OF = {name: value for value, name in ARTERIES.items()}


def case_ids(root: str | Path) -> list[str]:
    """Cases with both a scan folder and a trace file, in numeric order."""
    root = Path(root)
    ids = [p.stem for p in (root / "calcium_xml").glob("*.xml") if (root / "patient" / p.stem).is_dir()]
    return sorted(ids, key=lambda s: int(s) if s.isdigit() else s)


def series_folder(root: str | Path, case_id: str) -> Path:
    folders = [p for p in sorted((Path(root) / "patient" / case_id).iterdir()) if p.is_dir()]
    if not folders:
        raise FileNotFoundError(f"no series folder under patient/{case_id}")
    return folders[0]


def read_polygons(xml_path: str | Path) -> list[tuple[int, np.ndarray]]:
    """[(artery label 1-4, polygon points (n, 3) LPS mm)] from an OsiriX ROI plist."""
    with open(xml_path, "rb") as handle:
        plist = plistlib.load(handle)
    polygons = []
    for image in plist.get("Images", []):
        for roi in image.get("ROIs", []):
            name = str(roi.get("Name", "")).strip().lower()
            if name not in ARTERY_OF_ROI_NAME:
                continue
            points = np.array([[float(v) for v in re.findall(r"[-+0-9.eE]+", p)] for p in roi.get("Point_mm", [])])
            if len(points) >= 3:
                polygons.append((ARTERY_OF_ROI_NAME[name], points))
    return polygons


def truth_labels(image: sitk.Image, polygons, threshold_hu: float = 130.0) -> np.ndarray:
    """Artery label [k, j, i] of every voxel >= threshold whose centre lies inside a traced polygon on its slice.
    No margin is given to the test: matplotlib's `radius` grows or shrinks a polygon by which way round it was drawn,
    and every COCA trace runs the way that shrinks it."""
    hu = sitk.GetArrayViewFromImage(image)
    labels = np.zeros(hu.shape, np.uint8)
    for artery, points in polygons:
        index = np.array([image.TransformPhysicalPointToContinuousIndex(tuple(float(c) for c in p)) for p in points])
        k = int(round(float(np.median(index[:, 2]))))
        if not 0 <= k < hu.shape[0]:
            continue
        lo = np.maximum(np.floor(index[:, :2].min(0)).astype(int) - 1, 0)
        hi = np.minimum(np.ceil(index[:, :2].max(0)).astype(int) + 2, [hu.shape[2], hu.shape[1]])
        jj, ii = np.mgrid[lo[1]:hi[1], lo[0]:hi[0]]
        inside = Polygon(index[:, :2]).contains_points(np.column_stack([ii.ravel(), jj.ravel()]))
        inside = inside.reshape(jj.shape) & (hu[k, lo[1]:hi[1], lo[0]:hi[0]] >= threshold_hu)
        labels[k, lo[1]:hi[1], lo[0]:hi[0]][inside] = artery
    return labels


def load_case(root: str | Path, case_id: str):
    """(LoadedImage of the scan, truth artery labels [k, j, i])."""
    from ..imageio import read_image

    loaded = read_image(series_folder(root, case_id))
    assert loaded.image is not None  # read_image always gives an image
    polygons = read_polygons(Path(root) / "calcium_xml" / f"{case_id}.xml")
    return loaded, truth_labels(loaded.image, polygons)
