"""Enhanced (multi-frame) DICOM: a whole series in one file, as newer CT and MR scanners and PACS exports store it
(Enhanced CT/MR Image Storage, Legacy Converted Enhanced). A series reader that stacks files sees one file of
several frames as a 4D volume; GDCM reads the file itself as one 3D volume, its geometry from the per-frame
functional groups. What the series' other attributes were at the top level of a single-frame file (pixel spacing,
slice thickness, kVp, contrast agent) lie in the functional groups here, where a reader of top-level tags misses
them: a scar stack would then be taken for one of unknown pixel size, and a CT for one of unknown kVp.

Only one image per slice position is read: a multi-frame object can also hold cine phases, inversion times or
magnitude and phase-sensitive images at the same positions, which are not one volume.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from .errors import InputError
from .imageio import POSITION_TOLERANCE_MM, positions_held, several_images_per_position


def read(path: str, tags: dict[str, str]) -> tuple[sitk.Image, dict[str, str], np.ndarray]:
    """(the 3D volume, its attributes: `tags`' keys (name -> "group|element") -> value as a DICOM string, the
    frames' positions in the volume's slice order) of one multi-frame file, or InputError when its frames are not
    one image per slice position of one orientation."""
    with values_as_stored():
        dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
        return _read(path, dataset, tags)


@contextlib.contextmanager
def values_as_stored():
    """pydicom quiet about values outside their VR's rules (anonymised UIDs, as the real gated CTs here carry): the
    series reader takes them as they are, and a reader needs no warning about them."""
    mode = pydicom.config.settings.reading_validation_mode
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        yield
    finally:
        pydicom.config.settings.reading_validation_mode = mode


def _read(path: str, dataset, tags: dict[str, str]) -> tuple[sitk.Image, dict[str, str], np.ndarray]:
    """`read`, the header already read."""
    positions, orientations = _frame_geometry(dataset)
    name = Path(path).name
    planes = {tuple(np.round(orientation, 3)) for orientation in orientations}
    if len(planes) > 1:
        raise InputError(f"{name}: its frames lie in {len(planes)} orientations (a localizer or several stacks in one "
                         "object); export one stack and read that.")
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    depths = np.sort(positions @ normal)
    at = positions_held(depths)
    if at != len(depths):
        raise InputError(several_images_per_position(name, "the object", len(depths), at))
    image = sitk.ReadImage(str(path))
    if image.GetDimension() != 3 or image.GetSize()[2] != len(depths):
        raise InputError(f"{name}: a multi-frame file of {len(depths)} frames read as {image.GetSize()}; export the "
                         "series as single-frame files.")
    placed = _check_read_geometry(image, depths, normal, name)
    in_slice_order = np.argmin(np.abs(placed[:, None] - (positions @ normal)[None, :]), axis=1)
    return image, _attributes(dataset, tags), positions[in_slice_order]


def _frame_geometry(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the position of its first pixel and its row/column direction cosines (LPS)."""
    shared = dataset.get("SharedFunctionalGroupsSequence", [None])[0]
    frames = dataset.get("PerFrameFunctionalGroupsSequence", [])
    positions, orientations = [], []
    for frame in frames:
        position = _group_value(frame, shared, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _group_value(frame, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        if position is None or orientation is None:
            raise InputError("a multi-frame DICOM file without a position and orientation for each frame; export the "
                             "series as single-frame files.")
        positions.append([float(v) for v in position])
        orientations.append([float(v) for v in orientation])
    if not positions:
        raise InputError("a multi-frame DICOM file without per-frame geometry; export the series as single-frame files.")
    return np.array(positions), np.array(orientations)


def _group_value(frame, shared, sequence: str, keyword: str):
    """An attribute of a functional group: the frame's own, else the shared one."""
    for group in (frame, shared):
        if group is not None and sequence in group and keyword in group[sequence][0]:
            return group[sequence][0][keyword].value
    return None


def _in_functional_groups(frame, shared, keyword: str):
    """An attribute that an enhanced object keeps in a functional group rather than at its top level (pixel spacing
    and slice thickness in Pixel Measures, rescale in Pixel Value Transformation, kVp in CT X-Ray Details, or, in a
    legacy-converted object, in the Unassigned Converted Attributes): the first frame's, else the shared one."""
    for group in (frame, shared):
        for element in group or ():
            if element.VR == "SQ" and element.value and keyword in element.value[0]:
                return element.value[0][keyword].value
    return None


def _check_read_geometry(image: sitk.Image, depths: np.ndarray, normal: np.ndarray, name: str) -> np.ndarray:
    """GDCM's volume must put its slices where the frames say they are (frames stored out of order, or unevenly
    spaced, would otherwise be read onto a wrong grid without a word). Returns each slice's depth along `normal`,
    in the volume's slice order."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    slice_axis = direction[:, 2] * image.GetSpacing()[2]
    origin = np.array(image.GetOrigin())
    placed = np.array([(origin + k * slice_axis) @ normal for k in range(image.GetSize()[2])])
    if np.max(np.abs(np.sort(placed) - depths)) > max(POSITION_TOLERANCE_MM, 0.1 * abs(slice_axis @ normal)):
        raise InputError(f"{name}: its frames are not evenly spaced in slice order (read, they would land on a wrong "
                         "grid); export the series as single-frame files.")
    return placed


def _attributes(dataset, tags: dict[str, str]) -> dict[str, str]:
    """`tags`' attributes from the top level or the functional groups, as DICOM strings."""
    shared = dataset.get("SharedFunctionalGroupsSequence", [None])[0]
    first = dataset.get("PerFrameFunctionalGroupsSequence", [None])[0]
    values = {}
    for name, tag in tags.items():
        keyword = pydicom.datadict.keyword_for_tag(int(tag.replace("|", ""), 16))
        value = dataset.get(keyword)
        if value in (None, ""):
            value = _in_functional_groups(first, shared, keyword)
        if value not in (None, ""):
            values[name] = "\\".join(map(str, value)) if isinstance(value, pydicom.multival.MultiValue) else str(value)
    return values
