"""DICOM SEG export of any CardioQuant label map, referencing the DICOM series it was computed from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import __version__, geometry
from .errors import InputError
from .labels import LabelTable

if TYPE_CHECKING:
    import SimpleITK as sitk


def _code(triplet):
    from highdicom.sr import CodedConcept

    scheme, value, meaning = triplet
    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def export_dicom_seg(label_array_kji: np.ndarray, table: LabelTable, source_files: list[str], output_path: str | Path,
                     algorithm_name: str, algorithm_version: str = __version__, series_description: str = "") -> Path:
    """Write a binary DICOM Segmentation with one segment per label present, coded with the table's terminology.

    `label_array_kji` must be on the grid of the source series (slice k = `source_files[k]`, as read by
    `cardioquant.imageio`). Inputs that were not DICOM cannot be referenced, so they are refused.
    """
    import highdicom as hd
    import pydicom

    if not source_files:
        raise InputError("DICOM SEG export needs the input to be a DICOM series (a SEG must reference its images); "
                         "export the .seg.nrrd or label map instead.")
    sources = [pydicom.dcmread(f) for f in source_files]
    if label_array_kji.shape != (len(sources), int(sources[0].Rows), int(sources[0].Columns)):
        raise InputError(f"label map shape {label_array_kji.shape} does not match the DICOM series "
                         f"({len(sources)} x {sources[0].Rows} x {sources[0].Columns})")
    # The values found in one pass, not one comparison over the scan per table entry: BoneDensity's table has 104
    # (6 s for a 512 x 512 x 300 chest CT, and 1.6 s more to renumber its 31 segments one by one).
    found = geometry.label_values(label_array_kji)
    present = [s for s in table.segments if s.value in found]
    if not present:
        raise InputError("nothing to export: the segmentation is empty")
    # highdicom takes a label map whose values are segment numbers 1..N (other values: none).
    renumbered = table.renumbered(label_array_kji, {spec.value: number for number, spec in enumerate(present, 1)})
    descriptions = []
    algorithm = hd.AlgorithmIdentificationSequence(name=algorithm_name, version=algorithm_version,
                                                   family=_code(("DCM", "113027", "Specified")))  # no closer code exists
    for number, spec in enumerate(present, start=1):
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=spec.name,
            segmented_property_category=_code(spec.category),
            segmented_property_type=_code(spec.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=[_code(spec.region)] if spec.region else None,
        ))
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=renumbered,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=9001,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="CardioQuant",
        manufacturer_model_name=algorithm_name,
        software_versions=f"cardioquant {__version__}",
        device_serial_number="0",
        series_description=series_description or f"CardioQuant {algorithm_name}",
    )
    output_path = Path(output_path)
    seg.save_as(output_path)
    return output_path


def seg_writer(label_array_kji: np.ndarray, table: LabelTable, source_files: list[str], algorithm_name: str):
    """`<module>_seg.dcm` as one of a result's extra outputs (ModuleResult.extra_outputs): written into the staging
    folder and swapped in with the other files, so a failed run or export leaves the output folder as it was."""
    return lambda path: export_dicom_seg(label_array_kji, table, source_files, path, algorithm_name)


SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def is_dicom_seg(path: str | Path) -> bool:
    """Whether `path` is a DICOM Segmentation object (read from its header alone)."""
    import pydicom

    try:
        header = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001  (not DICOM, or unreadable: not a SEG)
        return False
    return str(getattr(header, "SOPClassUID", "")) == SEGMENTATION_STORAGE


def seg_frame_of_reference(path: str | Path) -> str | None:
    """The Frame of Reference UID a DICOM SEG's positions are in (read from its header alone); None for a file that
    is not a SEG, or a SEG that does not say."""
    import pydicom

    try:
        header = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SOPClassUID", "FrameOfReferenceUID"])
    except Exception:  # noqa: BLE001  (not DICOM, or unreadable: not a SEG)
        return None
    if str(getattr(header, "SOPClassUID", "")) != SEGMENTATION_STORAGE:
        return None
    return str(header.FrameOfReferenceUID) if "FrameOfReferenceUID" in header else None


def segment_descriptions(path: str | Path) -> dict[int, tuple[str, str]]:
    """Segment number -> (its label, the code value of its Segmented Property Type), read from the header alone."""
    import pydicom

    header = pydicom.dcmread(str(path), stop_before_pixels=True)
    return {int(item.SegmentNumber): (str(item.SegmentLabel), str(item.SegmentedPropertyTypeCodeSequence[0].CodeValue)
                                      if "SegmentedPropertyTypeCodeSequence" in item else "")
            for item in header.SegmentSequence}


def segment_labels(names: dict[int, str], at_most: int = 8) -> str:
    """A SEG's segment labels for a message: sorted, the first `at_most`, then '...'."""
    labels = sorted(names.values())
    return ", ".join(labels[:at_most]) + (", ..." if len(labels) > at_most else "")


def read_dicom_seg(path: str | Path) -> tuple[sitk.Image, dict[int, str]]:
    """(a label image on the SEG's own grid, each voxel its segment's number; segment number -> segment label) of a
    DICOM Segmentation, as a PACS or TotalSegmentator (`--output_type dicom`) stores a mask. Read through its frames'
    positions (highdicom): ITK reads a SEG's frames as a plain stack and loses where they lie."""
    import highdicom as hd
    import SimpleITK as sitk

    try:
        seg = hd.seg.segread(str(path))
        volume = seg.get_volume(combine_segments=True, relabel=False)
    except Exception as exc:  # noqa: BLE001  (highdicom raises ValueError, RuntimeError, AttributeError...)
        raise InputError(f"{path}: this DICOM SEG cannot be read as one label volume ({str(exc).splitlines()[0]}); "
                         "give the mask as a label map (NIfTI or NRRD) instead.") from exc
    names = {int(item.SegmentNumber): str(item.SegmentLabel) for item in seg.SegmentSequence}
    axes = np.asarray(volume.affine, float)[:3, :3]  # columns: the slice, row and column steps in LPS mm
    spacing = np.linalg.norm(axes, axis=0)
    image = sitk.GetImageFromArray(np.asarray(volume.array).astype(np.uint16))  # index (i, j, k) = (column, row, slice)
    image.SetSpacing([float(s) for s in spacing[::-1]])
    image.SetOrigin([float(v) for v in np.asarray(volume.affine, float)[:3, 3]])
    image.SetDirection([float(v) for v in (axes / spacing)[:, ::-1].ravel()])
    return image, names
