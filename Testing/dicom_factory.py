"""Write small synthetic DICOM CT series with pydicom (test fixtures; no patient data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_ct_series(folder: Path, volume_kji: np.ndarray, spacing=(0.5, 0.5, 3.0), origin=(0.0, 0.0, 0.0),
                    kvp: float | None = 120, modality: str = "CT", series_uid: str | None = None,
                    study_uid: str | None = None, rescale_intercept: float = -1024.0, z_positions=None,
                    pixel_spacing: bool = True, frame_uid: str | None = None, gantry_tilt_deg: float = 0.0,
                    slice_thickness: float | None = None) -> list[Path]:
    """One file per slice, axial orientation, HU stored with a rescale intercept like a scanner does.
    `pixel_spacing=False` leaves out Pixel Spacing, as some secondary-capture exports do. `gantry_tilt_deg` tilts
    the slices about the left-right axis (their columns run (0, cos, sin)) while their positions still step
    along the table (z), as a CT acquired with a tilted gantry stores them. `slice_thickness` (default: the spacing)
    over the spacing makes overlapping slices."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    paths = []
    for k, plane in enumerate(volume_kji):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"slice{k:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality = modality
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Test", "PHANTOM1", "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "A1"
        ds.ReferringPhysicianName = ""
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.Manufacturer = "CardioQuant phantom"
        if kvp is not None:
            ds.KVP = kvp
        z = origin[2] + k * spacing[2] if z_positions is None else z_positions[k]
        ds.ImagePositionPatient = [origin[0], origin[1], z]
        tilt = np.radians(gantry_tilt_deg)
        ds.ImageOrientationPatient = [1, 0, 0, 0, float(np.cos(tilt)), float(np.sin(tilt))]
        ds.GantryDetectorTilt = gantry_tilt_deg
        if pixel_spacing:
            ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2] if slice_thickness is None else slice_thickness
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = rescale_intercept, 1, "HU"
        ds.PixelData = np.clip(plane - rescale_intercept, 0, 65535).astype(np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def read_back(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)


def write_enhanced_ct(folder: Path, single_frame_files: list[Path], images_per_position: int = 1) -> Path:
    """The single-frame series `single_frame_files` as one Legacy Converted Enhanced CT file (highdicom), the form a
    newer scanner or a PACS export gives a whole series in; `images_per_position` > 1 repeats every frame (as an
    object holding, say, several phases per position does)."""
    import copy

    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    datasets = []
    for repeat in range(images_per_position):
        for path in single_frame_files:
            ds = pydicom.dcmread(path)
            ds.ContentDate, ds.ContentTime, ds.ImageType = "20260101", "120000", ["ORIGINAL", "PRIMARY", "AXIAL"]
            if repeat:
                ds = copy.deepcopy(ds)
                ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), ds.InstanceNumber + 1000 * repeat
            datasets.append(ds)
    enhanced = LegacyConvertedEnhancedCTImage(datasets, series_instance_uid=generate_uid(), series_number=2,
                                              sop_instance_uid=generate_uid(), instance_number=1)
    folder.mkdir(parents=True, exist_ok=True)
    enhanced.save_as(folder / "enhanced.dcm")
    return folder / "enhanced.dcm"


RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"


def write_one_frame_rt_dose(path: Path) -> Path:
    """An RT Dose object of one frame, with its Grid Frame Offset Vector and no Number of Frames, as planning
    systems export one beside the scans: GDCM's folder scan fails on it (for every file of the folder)."""
    folder = path.parent / f".{path.name}.tmp"
    written = write_ct_series(folder, np.zeros((1, 4, 4)), origin=(0.0, 0.0, 500.0), kvp=None, modality="RTDOSE")[0]
    ds = pydicom.dcmread(written)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = RT_DOSE_STORAGE
    ds.GridFrameOffsetVector = [0.0]
    ds.save_as(path, enforce_file_format=True)
    written.unlink()
    folder.rmdir()
    return path


def write_seg(path: Path, ct_files: list[Path], labels_kji: np.ndarray, names: dict[int, str]) -> Path:
    """A binary DICOM SEG over the CT series `ct_files` (slice k = ct_files[k]) as another program writes one
    (highdicom, as TotalSegmentator's `--output_type dicom` and PACS AI tools do): segment n holds the voxels
    `labels_kji == n` and is labelled names[n]; slices without a segment are left out of the file."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(p) for p in ct_files]
    algorithm = hd.AlgorithmIdentificationSequence(name="test", version="1", family=codes.cid7162.ArtificialIntelligence)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=number, segment_label=name, segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Bone, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm) for number, name in sorted(names.items())]
    seg = hd.seg.Segmentation(source_images=sources, pixel_array=labels_kji.astype(np.uint8),
                              segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                              segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=99,
                              sop_instance_uid=hd.UID(), instance_number=1, manufacturer="another program",
                              manufacturer_model_name="test", software_versions="1", device_serial_number="1")
    seg.save_as(path)
    return path
