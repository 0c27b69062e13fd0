"""Input readers: NRRD/NHDR, NIfTI, MHA/MHD and DICOM series folders.

Every reader returns a `LoadedImage`: the SimpleITK image (physical geometry intact) plus the DICOM
attributes modules need (modality, KVP, rescale, contrast agent, slice positions). Bad input raises
`InputError` with one sentence saying what is wrong and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .geometry import NO_DATA_HU, direction_matrix

IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
# A slice exported as a picture (EMIDEC's LGE slices are PNGs): read as a 2D image, its pixel size unknown (the file
# has none). Not a study of its own in a cohort folder, where pictures are as often screenshots and reports.
SLICE_SUFFIXES = (".png",)
# What single-slice series share when they are one stack: frame of reference, orientation, rows, columns, pixel size.
STACKED_GEOMETRY = ("0020|0052", "0020|0037", "0028|0010", "0028|0011", "0028|0030")

# DICOM attributes kept from a series: (keyword used in code, "group|element" tag as SimpleITK names it).
DICOM_TAGS = {
    "modality": "0008|0060",
    "kvp": "0018|0060",
    "slice_thickness": "0018|0050",
    "pixel_spacing": "0028|0030",  # absent: the pixel size is unknown (SimpleITK then reports 1 mm)
    "rescale_slope": "0028|1053",
    "rescale_intercept": "0028|1052",
    "contrast_agent": "0018|0010",
    "manufacturer": "0008|0070",
    "series_description": "0008|103e",
    "series_instance_uid": "0020|000e",
    "study_instance_uid": "0020|000d",
    "frame_of_reference_uid": "0020|0052",
    "image_orientation": "0020|0037",  # present: the scan's orientation is stated (an axial series' too)
}


@dataclass
class LoadedImage:
    image: sitk.Image | None  # None for non-image inputs (CT-FFR centerline files)
    path: str
    format: str
    dicom: dict = field(default_factory=dict)
    source_files: list[str] = field(default_factory=list)  # DICOM files in slice order (for DICOM SEG)
    warnings: list[str] = field(default_factory=list)  # about how the input was read; every result repeats them
    stacked_series: int = 0  # DICOM read as one stack of this many single-slice series (0: one series)
    missing_slices: list[int] = field(default_factory=list)  # grid positions no file fills (`allow_slice_gaps`)
    gantry_tilt_deg: float = 0.0  # slices shifted in plane onto a regular grid (`_undo_gantry_tilt`)
    multiframe: bool = False  # read from one enhanced (multi-frame) DICOM file

    @property
    def volume(self) -> sitk.Image:
        """The image, for the analyses that read one (all but CT-FFR from centerline files alone)."""
        if self.image is None:
            raise InputError(f"{self.path} holds no image volume (a centerline file): give the scan itself.")
        return self.image

    @property
    def not_one_series(self) -> str | None:
        """Why a DICOM SEG cannot reference this volume's slices as one series' files, slice by slice; None when it
        can (or when there are no files)."""
        if self.stacked_series:
            return f"this stack was read from {self.stacked_series} single-slice series"
        if self.missing_slices:
            return f"{len(self.missing_slices)} missing slice(s) were added to put it on a regular grid"
        if self.gantry_tilt_deg:
            return f"its slices were shifted in plane onto a regular grid (gantry tilt {self.gantry_tilt_deg:.1f} degrees)"
        if self.multiframe:
            return "it was read from one multi-frame (enhanced) DICOM file, whose frames a slice-by-slice SEG does not reference"
        return None

    @property
    def modality(self) -> str | None:
        return self.dicom.get("modality") or None

    @property
    def kvp(self) -> float | None:
        try:
            return float(self.dicom["kvp"])
        except (KeyError, ValueError, TypeError):
            return None

    @property
    def slice_thickness_mm(self) -> float:
        """How thick the slices are along their normal: the DICOM Slice Thickness where it says more than the spacing
        (overlapping slices: 5 mm slices every 2.5 mm average over 5 mm), else the spacing."""
        try:
            stated = float(self.dicom.get("slice_thickness") or 0.0)
        except (TypeError, ValueError):
            stated = 0.0
        return max(float(self.volume.GetSpacing()[2]), stated)

    def array(self, dtype=np.float32) -> np.ndarray:
        return sitk.GetArrayFromImage(self.volume).astype(dtype, copy=False)


# DICOM attributes that travel with a volume into an analysis as NRRD keys (scene.write_run_input writes them).
RUN_ATTRIBUTES = ("modality", "kvp", "contrast_agent", "slice_increment", "image_orientation")
# The NRRD key that carries how the input was read (`reading_record`) into a background run.
READING_KEY = "cardioquant_reading"


def tube_voltage(loaded: LoadedImage, requested: float | None, used_for: str) -> tuple[float, list[str]]:
    """(kVp, warnings): the option's value, else the DICOM KVP, else 120 kVp with a warning naming what the
    assumption feeds (`used_for`: the calcium thresholds, the BMD calibration values)."""
    if requested:
        return float(requested), []
    if loaded.kvp:
        return loaded.kvp, []
    return 120.0, [f"tube voltage (KVP) unknown: 120 kVp {used_for} used; pass --kvp if the scan was not at 120 kVp"]


def _has_image_suffix(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES + SLICE_SUFFIXES)


def read_image(path: str | os.PathLike, allow_2d: bool = False, series: str | None = None,
               stack_single_slices: bool = False, allow_slice_gaps: bool = False) -> LoadedImage:
    """Read an image file or a DICOM folder and validate it (see `validate_image`). A DICOM folder is searched
    with its subfolders (patient/study/series as a PACS exports them); with several series, `series` (a Series
    Instance UID or its number in the listing) chooses one. With `stack_single_slices`, a folder whose series are
    single slices of one stack (`single_slice_stack`) is read as that stack unless `series` chooses one. With
    `allow_slice_gaps`, DICOM slices at uneven positions are placed on a regular grid (`_place_on_regular_grid`)
    instead of being refused."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}. Give an image file (.nrrd, .nii.gz, .mha) or a DICOM folder.")
    if path.is_dir():
        loaded = _read_dicom_folder(path, series=series, stack_single_slices=stack_single_slices,
                                    allow_slice_gaps=allow_slice_gaps)
    elif _has_image_suffix(path):
        loaded = _read_file(path)
    else:
        loaded = _read_dicom_folder(path.parent, only_file=path, allow_slice_gaps=allow_slice_gaps)
    validate_image(loaded, allow_2d=allow_2d)
    return loaded


def _read_file(path: Path) -> LoadedImage:
    if path.name.lower().endswith(".gz"):
        _check_gzip_complete(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"cannot read {path}: not a readable image ({str(exc).strip().splitlines()[-1]})") from exc
    fmt = next(s for s in IMAGE_SUFFIXES + SLICE_SUFFIXES if path.name.lower().endswith(s)).lstrip(".")
    if fmt in (s.lstrip(".") for s in SLICE_SUFFIXES):
        image = _grey(image)
    # NRRD key/value fields written by the panels' background runs and this project's sample data (and by users
    # who want them honoured).
    dicom = {key: image.GetMetaData(key).strip() for key in RUN_ATTRIBUTES if image.HasMetaDataKey(key)}
    reading = image.GetMetaData(READING_KEY) if image.HasMetaDataKey(READING_KEY) else None
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:  # one time point stored on a fourth axis: a volume
        image = sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])
    loaded = LoadedImage(image=image, path=str(path), format=fmt, dicom=dicom)
    if reading is not None:  # a background run's input (scene.write_run_input)
        apply_reading_record(loaded, reading)
    return loaded


def reading_record(loaded: LoadedImage) -> str | None:
    """How `loaded` was read, as one line of JSON (None when it was read as stored): the warnings about it, the
    single-slice series stacked into it, the slices of its grid no file holds. It travels with a volume read in
    the panel (a node attribute) and into a background run (an NRRD key), so every run reports it as the command
    line does."""
    if not (loaded.warnings or loaded.stacked_series or loaded.missing_slices or loaded.gantry_tilt_deg):
        return None
    return json.dumps({"warnings": loaded.warnings, "stacked_series": loaded.stacked_series,
                       "missing_slices": loaded.missing_slices, "gantry_tilt_deg": loaded.gantry_tilt_deg})


def apply_reading_record(loaded: LoadedImage, record: str | None) -> None:
    """Give `loaded` what a `reading_record` says (nothing for None or a record this does not understand)."""
    try:
        read = json.loads(record) if record else {}
    except ValueError:
        return
    if not isinstance(read, dict):
        return
    try:
        told = ([str(w) for w in read.get("warnings", [])], int(read.get("stacked_series", 0)),
                [int(k) for k in read.get("missing_slices", [])], float(read.get("gantry_tilt_deg", 0.0)))
    except (TypeError, ValueError):
        return
    loaded.warnings, loaded.stacked_series, loaded.missing_slices, loaded.gantry_tilt_deg = told


def _grey(picture: sitk.Image) -> sitk.Image:
    """A picture's grey levels: a grey slice saved as RGB(A) or grey + alpha has its grey in the first channel (the
    alpha is dropped); a picture in colour keeps its channels and is refused by `validate_image`."""
    channels = picture.GetNumberOfComponentsPerPixel()
    if channels == 1:
        return picture
    colour = sitk.GetArrayViewFromImage(picture)[..., :3 if channels >= 3 else 1]
    return sitk.VectorIndexSelectionCast(picture, 0) if (colour == colour[..., :1]).all() else picture


def _check_gzip_complete(path: Path) -> None:
    """A truncated .nii.gz is read by ITK without a word, its missing slices as zeros: the whole stream is
    decompressed once (gzip checks the end marker, length and CRC) before the image is used."""
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"{path} is truncated or damaged (its compressed data ends early or fails its checksum: "
                         f"{exc}); copy it again from its source.") from exc


@dataclass
class DicomSeries:
    uid: str
    files: list[str]
    description: str
    thickness: str

    frames: int = 1  # frames of its first file (an enhanced DICOM series is one file of many frames)
    modality: str = ""

    @property
    def slices(self) -> int:
        return self.frames if len(self.files) == 1 else len(self.files)

    def line(self, number: int, root: Path | None = None) -> str:
        """How a listing names it; with `root`, the folder under it that holds its first file (a PACS export's
        patient/study/series folders tell series apart that carry no description)."""
        where = f"in {os.path.relpath(os.path.dirname(self.files[0]), root)}, " if root is not None and self.files else ""
        return (f"  {number}: {where}{self.description or '(no description)'}, {self.slices} slices, "
                f"{self.thickness or '?'} mm, UID {self.uid}")


def walk_folders(root: str | Path, skip: str | Path | None = None):
    """(folder, its file names) for `root` and every folder under it, subfolders in name order, as os.walk gives
    them but following links to folders: a cohort or an exam is often a tree of links to where the scans are stored
    (os.walk and Path.rglob pass over a linked folder, and its series were "not found"). Each real folder is read
    once: a second link to it, or a link to a folder above it, is passed over. Nothing under `skip` (a subfolder)."""
    seen: set[str] = set()
    passed_over = os.path.realpath(skip) if skip is not None else None
    for directory, subdirectories, names in os.walk(root, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirectories[:] = []
            continue
        seen.add(real)
        subdirectories[:] = sorted(d for d in subdirectories
                                   if (inner := os.path.realpath(os.path.join(directory, d))) not in seen
                                   and inner != passed_over)
        yield directory, names


def find_dicom_series(folder: Path, skip: Path | None = None, unreadable: list[str] | None = None) -> list[DicomSeries]:
    """Every DICOM series in `folder` and its subfolders (but not under `skip`), in folder order (a series split
    over folders is one). `unreadable` gets the DICOM files that could not be read and were left out (_series_in)."""
    by_uid: dict[str, list[str]] = {}
    split: set[str] = set()
    for directory, names in walk_folders(folder, skip):
        if not names:
            continue
        in_folder, left_out = _series_in(directory, names)
        if unreadable is not None:
            unreadable.extend(left_out)
        for uid, files in in_folder.items():
            if uid in by_uid:
                split.add(uid)
            by_uid.setdefault(uid, []).extend(files)
    found = []
    for uid, files in by_uid.items():
        if uid in split:  # GDCM orders each folder's slices; a series split over folders is ordered again whole
            files = _across_folders(folder, uid, files)
        header = dicom_header(files[0])
        found.append(DicomSeries(uid, files, _tag(header, "0008|103e"), _tag(header, "0018|0050"), _frames(header),
                                 _tag(header, "0008|0060")))
    return found


# Objects a study holds beside its scans that are not scans: segmentations (this project's --dicom-seg among them),
# structure sets, dose grids, plans, presentation states, key-object selections, reports, registrations.
NOT_SCANS = ("SEG", "RTSTRUCT", "RTDOSE", "RTPLAN", "PR", "KO", "SR", "REG")


def scans_of(found: list[DicomSeries]) -> tuple[list[DicomSeries], list[DicomSeries]]:
    """(the series that are scans, the others: NOT_SCANS by their modality)."""
    return ([series for series in found if series.modality not in NOT_SCANS],
            [series for series in found if series.modality in NOT_SCANS])


def not_scans_line(derived: list[DicomSeries]) -> str:
    """The DICOM objects that are not scans, in words: how many, each one's modality and description."""
    named = ", ".join(f"{series.modality} {series.description or '(no description)'}" for series in derived[:3])
    return (f"{len(derived)} DICOM series {'that is' if len(derived) == 1 else 'that are'} not a scan ({named}"
            f"{', ...' if len(derived) > 3 else ''})")


def _series_in(directory: str, names: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """The DICOM series in one folder (series UID -> its files in slice order, as GDCM orders them) and the DICOM
    images there that could not be read (_not_read_images). GDCM passes over a file it cannot read (a slice cut
    short by an interrupted transfer: the series then has a gap, or silently one slice fewer at an end), and one
    object it cannot parse makes it fail for every file of the folder (an RT Dose object of one frame, as planning
    exports hold beside the scans): then each file is read on its own, and the others are grouped by series and
    put in slice order."""
    reader = sitk.ImageSeriesReader
    paths = [os.path.join(directory, name) for name in sorted(names) if name.upper() != "DICOMDIR"]  # an index
    with _itk_warnings_hidden():
        try:
            in_folder = {uid: list(reader.GetGDCMSeriesFileNames(directory, uid))
                         for uid in reader.GetGDCMSeriesIDs(directory)}
            held = {os.path.normpath(path) for files in in_folder.values() for path in files}
            return in_folder, _not_read_images([path for path in paths
                                                if os.path.normpath(path) not in held and _is_dicom_file(path)])
        except RuntimeError:
            pass
        by_uid: dict[str, list[tuple]] = {}  # series UID -> (place in the series, path) of each file
        not_read = []
        for path in paths:
            try:
                header = dicom_header(path)
            except RuntimeError:
                if _is_dicom_file(path):  # not other files: notes, image files of other kinds, folders
                    not_read.append(path)
                continue
            by_uid.setdefault(_tag(header, "0020|000e"), []).append((_place(header), path))
    return ({uid: [path for _, path in sorted(placed)] for uid, placed in by_uid.items()},
            _not_read_images(not_read))


PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float and Double Float Pixel Data


def _not_read_images(paths: list[str]) -> list[str]:
    """Of DICOM files that GDCM did not read, those a reader must hear of: images (pixel data) and files that cannot
    be parsed at all (damaged). Reports, plans, waveforms and other objects without pixel data are passed over,
    as GDCM passes over them."""
    if not paths:
        return []
    import pydicom  # only when a file was not read

    from .multiframe import values_as_stored

    images = []
    for path in paths:
        try:
            with values_as_stored():
                dataset = pydicom.dcmread(path, defer_size=1024)
        except Exception:  # noqa: BLE001 - whatever pydicom raises, the file cannot be parsed: damaged
            images.append(path)
            continue
        if any(tag in dataset for tag in PIXEL_DATA_TAGS):
            images.append(path)
    return images


def _across_folders(folder: Path, uid: str, files: list[str]) -> list[str]:
    """A series' files gathered from several folders, in slice order: GDCM's order over the whole tree, or, where
    GDCM cannot scan the tree (_series_in), the files' own positions."""
    try:
        with _itk_warnings_hidden():
            return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid, False, True))
    except RuntimeError:
        return _in_position_order(files)


def _is_dicom_file(path: str) -> bool:
    """A DICOM file as stored (DICOM part 10: "DICM" after a 128-byte preamble)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _in_position_order(files: list[str]) -> list[str]:
    """One series' files in slice order, as GDCM orders them (_place)."""
    return sorted(files, key=lambda path: (_place(dicom_header(path)), path))


def _place(header: sitk.ImageFileReader) -> tuple[float, int]:
    """Where a file's slice lies in its series, as GDCM orders them: its position along the slice normal (Image
    Position and Image Orientation Patient), then its instance number (the file name breaks ties)."""
    depth = 0.0
    if _tag(header, "0020|0032") and _tag(header, "0020|0037"):
        depth = float(_numbers(_tag(header, "0020|0032")) @ slice_normal(_tag(header, "0020|0037")))
    number = _tag(header, "0020|0013")
    return depth, int(number) if number.lstrip("-").isdigit() else 0


def _tag(header: sitk.ImageFileReader, key: str) -> str:
    return header.GetMetaData(key).strip() if header.HasMetaDataKey(key) else ""


def _numbers(text: str) -> np.ndarray:
    """A DICOM multi-valued decimal string ("a\\b\\c") as numbers."""
    return np.array([float(v) for v in text.split("\\")])


def slice_normal(orientation: str) -> np.ndarray:
    """The slice normal of an Image Orientation (Patient) value: its row and column directions crossed."""
    directions = _numbers(orientation)
    return np.cross(directions[:3], directions[3:])


@contextlib.contextmanager
def _itk_warnings_hidden():
    """ITK's own warnings off (output hygiene) where this module says the same in its words: GDCM's for a folder
    that holds no DICOM, the series reader's for uneven slices (`_check_slice_spacing`)."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


# A study as a PACS exports it holds, beside the scan, a localizer (scout, topogram) and a dose report: one or two
# images each. Series this small are never the volume to analyse when another series is one.
SINGLE_IMAGES = 2


def _choose_series(folder: Path, found: list[DicomSeries], series: str | None, stacks: list[list[DicomSeries]],
                   warnings: list[str]) -> DicomSeries:
    """The series `series` names (a UID or its number in the listing), the folder's only one, or its only volume
    beside series of one or two images (localizers, a dose report: said in `warnings`); else the listing, which
    names the `stacks` (single-slice series that are one stack) and how to read each with --series."""
    volumes = [candidate for candidate in found if candidate.slices > SINGLE_IMAGES]
    if series is None and len(found) > 1 and len(volumes) == 1 and not stacks:
        volume = volumes[0]
        warnings.append(f"{folder} holds {len(found)} DICOM series: read series {found.index(volume) + 1} "
                        f"({volume.description or 'no description'}, {volume.slices} slices), the only volume; the "
                        "others hold one or two images each (such as a localizer or a dose report); --series chooses "
                        "another")
        return volume
    if series is not None:
        for number, candidate in enumerate(found, start=1):
            if series in (candidate.uid, str(number)):
                return candidate
        listing = "; ".join(c.line(n, folder).strip() for n, c in enumerate(found, start=1))
        raise InputError(f"--series {series} is not in {folder} ({listing}); give one of these numbers or UIDs.")
    if len(found) > 1:
        listing = "; ".join(c.line(n, folder).strip() for n, c in enumerate(found, start=1))
        hint = "".join(f"; series {', '.join(str(found.index(c) + 1) for c in stack)} are the single slices of one "
                       f"stack: --series {','.join(str(found.index(c) + 1) for c in stack)} reads them as one"
                       for stack in stacks)
        raise InputError(f"{folder} holds {len(found)} DICOM series ({listing}); choose one with --series N or "
                         f"--series UID{hint}.")
    return found[0]


def _read_dicom_folder(folder: Path, only_file: Path | None = None, series: str | None = None,
                       stack_single_slices: bool = False, allow_slice_gaps: bool = False) -> LoadedImage:
    if only_file is None and not any(folder.iterdir()):
        raise InputError(f"folder is empty: {folder}. Point to a folder holding one DICOM series.")
    warnings, stacked = [], None
    unreadable: list[str] = []  # DICOM images in the folders searched that GDCM cannot read
    if only_file is not None:
        uid = _series_uid_of_file(only_file)
        in_folder, unreadable = _series_in(str(folder), os.listdir(folder))
        if uid not in in_folder:
            raise InputError(f"cannot read {only_file}: neither a DICOM file nor an image file of a kind this reads "
                             f"({', '.join(IMAGE_SUFFIXES + SLICE_SUFFIXES)})")
        files = in_folder[uid]
    else:
        found, derived = scans_of(find_dicom_series(folder, unreadable=unreadable))
        if not found:
            raise InputError(f"no DICOM series found in {folder} or its subfolders; " + (
                f"it holds {not_scans_line(derived)}: give the scan's series." if derived else
                f"{_unreadable(unreadable)} could not be read: give a folder holding a DICOM series of images."
                if unreadable else _image_files_hint(folder)))
        if derived:
            warnings.append(f"{folder} holds {not_scans_line(derived)}: left out")
        if series is not None and "," in series:  # several series: single slices to read as one stack
            stacked = _chosen_stack(folder, found, series.split(","), stack_single_slices)
        stacks = single_slice_stacks(found) if stack_single_slices and series is None else []
        if len(stacks) == 1 and len(stacks[0]) == len(found):  # every series is a slice of the one stack
            stacked = [candidate.files[0] for candidate in stacks[0]]
        files = stacked or _choose_series(folder, found, series, stacks, warnings).files
        if stacked:
            warnings.append(f"{len(stacked)} single-slice series stacked into one volume (one orientation, frame of "
                            "reference and pixel grid; in slice order); give --series to read one of them alone")
    if unreadable:
        warnings.append(f"{_unreadable(unreadable)} under {folder} could not be read and were left out")
    if len(files) == 1 and _frame_count(files[0]) > 1:
        # pydicom is installed on first use in Slicer, whose panels import this module: imported here.
        from . import multiframe

        image, dicom, positions = multiframe.read(files[0], DICOM_TAGS)
        dicom["slice_increment"] = f"{image.GetSpacing()[2]:.6g}"  # its frames checked evenly spaced
        loaded = LoadedImage(image=image, path=str(folder), format="dicom", dicom=dicom, source_files=files,
                             warnings=warnings, multiframe=True)
        _undo_gantry_tilt(loaded, positions)
        return loaded
    slices, image = _read_slices(files, folder)
    if copies := _copied_images(slices, len(files)):
        copy, original = next(iter(copies.items()))
        warnings.append(f"{len(copies)} DICOM file{'s' * (len(copies) > 1)} in {folder} repeat{'s' * (len(copies) == 1)} "
                        f"another's image (the same SOP Instance UID at the same position, e.g. {Path(files[copy]).name} "
                        f"and {Path(files[original]).name}: the series copied twice into the folder?): each image read once")
        files = [path for index, path in enumerate(files) if index not in copies]
        slices, image = _read_slices(files, folder)
    dicom = {key: slices.GetMetaData(0, tag).strip() for key, tag in DICOM_TAGS.items() if slices.HasMetaDataKey(0, tag)}
    loaded = LoadedImage(image=image, path=str(folder), format="dicom", dicom=dicom, source_files=files,
                         warnings=warnings, stacked_series=len(stacked or []))
    stated = [slices.GetMetaData(i, "0020|0032") for i in range(len(files)) if slices.HasMetaDataKey(i, "0020|0032")]
    points = np.array([_numbers(position) for position in stated])  # each slice's, in file (= array) order
    if len(stated) == len(files) and len(files) > 1:
        _undo_gantry_tilt(loaded, points)
    if len(stated) == len(files) and len(files) > 2:
        try:
            _check_slice_spacing(loaded, points, allow_slice_gaps)
        except InputError as exc:
            if not unreadable:
                raise
            raise InputError(f"{exc} {_unreadable(unreadable)} could not be read: a damaged slice leaves a gap; export "
                             "the series again.") from exc
    return loaded


def _read_slices(files: list[str], folder: Path) -> tuple[sitk.ImageSeriesReader, sitk.Image]:
    """(the reader, with each slice's header; the volume) of a series' files in slice order."""
    slices = sitk.ImageSeriesReader()
    slices.SetImageIO("GDCMImageIO")  # as dicom_header
    slices.SetFileNames(files)
    slices.MetaDataDictionaryArrayUpdateOn()
    slices.LoadPrivateTagsOff()
    try:
        with _itk_warnings_hidden():
            image = slices.Execute()
    except RuntimeError as exc:
        raise InputError(f"cannot read the DICOM series in {folder}: {str(exc).strip().splitlines()[-1]}") from exc
    return slices, image


def _copied_images(slices: sitk.ImageSeriesReader, count: int) -> dict[int, int]:
    """The slices that repeat an earlier one's image (index -> the earlier one's): the same SOP Instance UID (by
    DICOM's definition the same image) at the same position, as a series copied twice into one folder gives
    ("IM1.dcm" and "IM1 (1).dcm"). Such a folder was refused as holding several images per position (cardiac
    phases). Both tags are asked for, so that an anonymiser that blanked or repeated the UIDs does not make distinct
    slices copies."""
    first: dict[tuple[str, str], int] = {}
    copies = {}
    for index in range(count):
        if not (slices.HasMetaDataKey(index, "0008|0018") and slices.HasMetaDataKey(index, "0020|0032")):
            return {}
        image = (slices.GetMetaData(index, "0008|0018").strip(), slices.GetMetaData(index, "0020|0032").strip())
        if image in first:
            copies[index] = first[image]
        first.setdefault(image, index)
    return copies


def _unreadable(files: list[str]) -> str:
    """The DICOM files that could not be read (_series_in), in words: how many, of what kind, the first."""
    return (f"{len(files)} DICOM image file{'s' * (len(files) > 1)} that GDCM cannot read (damaged, e.g. cut short by "
            f"an interrupted transfer, or an object it cannot parse such as an RT Dose of one frame; the first "
            f"{files[0]})")


def _image_files_hint(folder: Path, named: int = 3) -> str:
    """What to give instead of a folder without DICOM: its own image files by name when it holds some (a case
    folder of NIfTI files, a folder of exported slices), so the reader need not go looking."""
    images = sorted(path.name for path in folder.iterdir() if path.is_file() and _has_image_suffix(path))
    if not images:
        return "give an image file or a folder of DICOM files."
    shown = ", ".join(images[:named]) + (f" and {len(images) - named} more" if len(images) > named else "")
    return f"it holds {len(images)} image file{'s' * (len(images) > 1)} ({shown}): give one of them as the input."


def _frame_count(path: str) -> int:
    """Frames in one DICOM file (1 for a single-frame file)."""
    return _frames(dicom_header(str(path)))


def _frames(header: sitk.ImageFileReader) -> int:
    """Number of Frames (0028,0008) of the file whose header was read (1 where absent: a single-frame file)."""
    frames = header.GetMetaData("0028|0008").strip() if header.HasMetaDataKey("0028|0008") else ""
    return int(frames) if frames.isdigit() else 1


def _chosen_stack(folder: Path, found: list[DicomSeries], names: list[str], allowed: bool) -> list[str]:
    """The files of the single-slice series `names` (a --series list of UIDs or numbers in the listing) as one
    stack, or why not."""
    if not allowed:
        raise InputError("--series takes one series for this analysis (a list stacks single-slice MR series for scar "
                         "quantification only)")
    numbered = {str(number): candidate.uid for number, candidate in enumerate(found, start=1)}
    uids = [numbered.get(name.strip(), name.strip()) for name in names]
    chosen = [candidate for candidate in found if candidate.uid in uids]
    missing = sorted(set(uids) - {candidate.uid for candidate in chosen})
    if missing:
        raise InputError(f"--series: {len(missing)} of the series given are not in {folder} ({', '.join(missing[:3])}); "
                         "give numbers or UIDs from the folder's listing.")
    stacked = single_slice_stack(chosen)
    if stacked is None:
        raise InputError("--series: the series given are not single slices of one stack (one slice each, one frame of "
                         "reference, orientation and pixel grid, each at its own position); give them one by one.")
    return stacked


def single_slice_stack(found: list[DicomSeries]) -> list[str] | None:
    """The files of series that are each one slice of the same stack, in slice order: one frame of reference, one
    orientation and one pixel grid, each at its own position. Many scanners store a short-axis LGE stack this way,
    one series per breath-hold. None when the series are anything else (a localizer, two stacks, magnitude and
    phase-sensitive images at the same positions)."""
    if len(found) < 2 or any(len(candidate.files) != 1 for candidate in found):
        return None
    ordered = _in_slice_order(found, [slice_geometry(candidate.files[0]) for candidate in found])
    return [candidate.files[0] for candidate in ordered] if ordered else None


def single_slice_stacks(found: list[DicomSeries]) -> list[list[DicomSeries]]:
    """The groups of `found`'s single-slice series that are each one stack (`single_slice_stack`), each in slice
    order, each header read once."""
    groups: dict[tuple, tuple[list, list]] = {}  # geometry -> (series, their descriptions)
    for candidate in found:
        if len(candidate.files) == 1:
            described = slice_geometry(candidate.files[0])
            series, descriptions = groups.setdefault(described[0], ([], []))
            series.append(candidate)
            descriptions.append(described)
    stacks = (_in_slice_order(series, descriptions) for geometry, (series, descriptions) in groups.items()
              if geometry and len(series) >= 2)
    return [stack for stack in stacks if stack]


def _in_slice_order(found: list[DicomSeries], described: list[tuple]) -> list[DicomSeries] | None:
    """`found` in slice order when their `slice_geometry` descriptions say they are one stack, else None."""
    shared = {geometry for geometry, _ in described}
    if len(shared) != 1 or () in shared:
        return None
    normal = slice_normal(described[0][0][STACKED_GEOMETRY.index("0020|0037")])
    depth = np.array([position for _, position in described]) @ normal
    if np.min(np.diff(np.sort(depth))) <= 1e-3:
        return None
    return [found[k] for k in np.argsort(depth)]


def slice_geometry(path: str) -> tuple[tuple, np.ndarray]:
    """(what the slices of one stack share: STACKED_GEOMETRY's values, () when one is missing; the slice's position)
    of a DICOM file."""
    header = dicom_header(path)
    if not all(header.HasMetaDataKey(key) for key in STACKED_GEOMETRY + ("0020|0032",)):
        return (), np.zeros(3)
    position = _numbers(header.GetMetaData("0020|0032"))
    return tuple(header.GetMetaData(key).strip() for key in STACKED_GEOMETRY), position


def _series_uid_of_file(path: Path) -> str:
    try:
        header = dicom_header(str(path))
    except RuntimeError as exc:
        raise InputError(f"cannot read {path}: neither a DICOM file nor an image file of a kind this reads "
                         f"({', '.join(IMAGE_SUFFIXES + SLICE_SUFFIXES)})") from exc
    return header.GetMetaData("0020|000e").strip() if header.HasMetaDataKey("0020|000e") else ""


def dicom_header(path: str) -> sitk.ImageFileReader:
    """A DICOM file's header, read by GDCM (RuntimeError when it cannot). GDCM is named rather than left for
    SimpleITK to choose by the file's first bytes: a file without the part 10 preamble, as some older systems
    export, is DICOM that only GDCM recognises."""
    header = sitk.ImageFileReader()
    header.SetImageIO("GDCMImageIO")
    header.SetFileName(path)
    header.ReadImageInformation()
    return header


POSITION_TOLERANCE_MM = 0.01


def positions_held(depths: np.ndarray) -> int:
    """How many distinct slice positions the depths along the slice normal hold."""
    return int(np.sum(np.diff(np.sort(depths)) > POSITION_TOLERANCE_MM)) + 1


def several_images_per_position(name: str, what: str, images: int, positions: int) -> str:
    """The one line for a series or object holding more than one image at each slice position."""
    return (f"{name}: {images} images at {positions} slice positions: {what} holds several images per position "
            "(cardiac phases, cine phases, inversion times, or magnitude and phase-sensitive images); export one "
            "image per position (one phase, e.g. the diastolic one for a cardiac CT; one inversion time) and read that.")


def _check_slice_spacing(loaded: LoadedImage, points: np.ndarray, allow_gaps: bool = False) -> None:
    """Refuse series with gaps or uneven slice steps: a single spacing would misplace slices silently. With
    `allow_gaps` such a series is placed on a regular grid where it can be (`_place_on_regular_grid`). `points`: the
    slices' Image Position (Patient), in file (= array) order."""
    normal = direction_matrix(loaded.volume)[:, 2]
    depths = (points - points[0]) @ normal  # along the volume's slice axis, in file (= array) order
    held = positions_held(depths)
    if held * 2 <= len(depths):  # every position (or most) imaged again: phases, not a stray duplicate
        raise InputError(several_images_per_position(loaded.path, "the series", len(depths), held))
    steps = np.diff(np.sort(depths))
    uneven = steps.min() <= 0 or (steps.max() - steps.min()) > 0.01 * steps.mean() + 1e-3
    if uneven and not (allow_gaps and _place_on_regular_grid(loaded, depths)):
        raise InputError(f"{loaded.path}: slice positions are unevenly spaced (steps {steps.min():.3f}-{steps.max():.3f} mm) "
                         "or duplicated; export a series with a constant slice increment.")
    loaded.dicom["slice_increment"] = f"{loaded.volume.GetSpacing()[2] if uneven else float(np.median(steps)):.6g}"


# Slices whose in-plane offsets from the first slice's stay under this share of a pixel are read as stored.
MAX_IN_PLANE_OFFSET_PIXELS = 0.1


def _undo_gantry_tilt(loaded: LoadedImage, points: np.ndarray) -> None:
    """A CT acquired with the gantry tilted (head and neck, some older chest and abdominal protocols) has its
    slices stepping along the table, not along their normal: each slice's position is shifted in plane from the
    last. ITK stacks the slices along the normal at the distance between positions, so the volume is sheared and
    every volume and mass reads 1 / cos(tilt) too large. Each slice is shifted back in plane (linear
    interpolation) onto a grid that holds them all, on the slices' own axes, at their spacing along the normal, as
    Slicer's acquisition geometry regularization does; the grid grows by the shift and is filled as no data.
    `points`: the slices' Image Position (Patient), in the array's slice order."""
    direction = direction_matrix(loaded.volume)
    spacing = np.array(loaded.volume.GetSpacing())
    offsets = (points - points[0]) @ direction[:, :2] / spacing[:2]  # each slice's shift in pixels (columns, rows)
    if np.abs(offsets).max() <= MAX_IN_PLANE_OFFSET_PIXELS:
        return
    depths = (points - points[0]) @ direction[:, 2]
    steps = np.diff(depths)
    low = offsets.min(axis=0)
    grown = np.ceil(offsets.max(axis=0) - low).astype(int)  # extra (columns, rows)
    image = sitk.GetImageFromArray(_shifted_onto_one_grid(loaded, offsets - low, grown))
    image.SetDirection(loaded.volume.GetDirection())
    image.SetSpacing((*spacing[:2], abs(float(np.median(steps))) if steps.size else float(spacing[2])))
    image.SetOrigin(tuple(points[0] + direction[:, :2] @ (low * spacing[:2])))
    for key in loaded.volume.GetMetaDataKeys():
        image.SetMetaData(key, loaded.volume.GetMetaData(key))
    drift_per_mm = np.linalg.norm((points[-1] - points[0]) @ direction[:, :2]) / max(abs(depths[-1]), 1e-6)
    loaded.gantry_tilt_deg = float(np.degrees(np.arctan(drift_per_mm)))
    loaded.image = image
    loaded.warnings.append(
        f"the slices are shifted in plane from one to the next (gantry tilt {loaded.gantry_tilt_deg:.1f} degrees): "
        f"they were shifted back onto a regular grid, {grown[0]} column(s) and {grown[1]} row(s) wider, so that "
        "the anatomy is not sheared and volumes are not overstated (results are on that grid)")


def _shifted_onto_one_grid(loaded: LoadedImage, shifts: np.ndarray, grown: np.ndarray) -> np.ndarray:
    """The volume's slices, each shifted by its (columns, rows) in `shifts` (linear interpolation) into a grid
    `grown` (columns, rows) larger, the rest filled as no data (a CT's padding, else the scan's lowest value)."""
    from scipy import ndimage

    array = sitk.GetArrayViewFromImage(loaded.volume)
    fill = min(float(array.min()), -3024.0) if loaded.modality == "CT" else float(array.min())
    out = np.full((array.shape[0], array.shape[1] + grown[1], array.shape[2] + grown[0]), fill, np.float32)
    for k, plane in enumerate(array):  # slice by slice: no whole-volume float copy of the input
        padded = np.full(out.shape[1:], fill, np.float32)
        padded[:plane.shape[0], :plane.shape[1]] = plane
        out[k] = ndimage.shift(padded, (shifts[k][1], shifts[k][0]), order=1, mode="constant", cval=fill)
    return np.round(out).astype(array.dtype) if np.issubdtype(array.dtype, np.integer) else out


# A slice further than this share of the step from its grid position is not placed on the grid: the series is refused.
MAX_GRID_SHIFT = 0.25


def _place_on_regular_grid(loaded: LoadedImage, depths: np.ndarray) -> bool:
    """Short-axis stacks are often uneven: a breath-hold skipped leaves a slice missing, breath-holds shift slices by
    a few mm. Each slice is given its nearest position on a grid of the median step, the grid is fitted to the
    slices (least squares), and the positions no slice fills hold the series' lowest value (not imaged: the scar
    analysis skips constant slices). False (refuse) where slices are not in order along the slice axis, two share
    a position, or one would move more than MAX_GRID_SHIFT of the step."""
    steps = np.diff(depths)
    if len(steps) == 0 or steps.min() <= 0:
        return False
    index = np.round(depths / float(np.median(steps))).astype(int)
    if np.any(np.diff(index) <= 0):
        return False
    step, offset = np.polyfit(index, depths, 1)  # the grid nearest the slices: least squares over their positions
    shift = np.abs(depths - (offset + index * step))
    if shift.max() > MAX_GRID_SHIFT * step:
        return False
    array = sitk.GetArrayFromImage(loaded.volume)
    grid = np.full((index[-1] + 1,) + array.shape[1:], array.min(), array.dtype)
    grid[index] = array
    image = sitk.GetImageFromArray(grid)
    image.SetOrigin(tuple(np.array(loaded.volume.GetOrigin()) + offset * direction_matrix(loaded.volume)[:, 2]))
    image.SetDirection(loaded.volume.GetDirection())
    image.SetSpacing(loaded.volume.GetSpacing()[:2] + (float(step),))
    loaded.image = image
    loaded.missing_slices = sorted(set(range(len(grid))) - set(index.tolist()))
    loaded.warnings.append(
        f"slice positions are uneven (steps {steps.min():.1f}-{steps.max():.1f} mm): the slices were placed on a "
        f"regular {step:.3g} mm grid"
        + (f", each moved at most {shift.max():.1f} mm" if shift.max() >= 0.05 else "")
        + (f", {len(loaded.missing_slices)} missing slice(s) left empty and not analysed"
           if loaded.missing_slices else ""))
    return True


def validate_image(loaded: LoadedImage, allow_2d: bool = False) -> None:
    """Checks shared by every module: dimension, finite voxels, positive spacing."""
    image = loaded.volume
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{loaded.path}: image has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "give a single-channel (greyscale) scan.")
    is_2d = image.GetDimension() == 2 or (image.GetDimension() == 3 and image.GetSize()[2] == 1)
    if image.GetDimension() not in (2, 3):
        raise InputError(f"{loaded.path}: {image.GetDimension()}D images are not supported; give a 3D volume.")
    if is_2d and not allow_2d:
        raise InputError(f"{loaded.path}: this is a 2D image (size {image.GetSize()}); this module needs a 3D volume.")
    spacing = np.array(image.GetSpacing())
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"{loaded.path}: voxel spacing {tuple(spacing)} is missing or invalid; fix the header.")
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError(f"{loaded.path}: {bad} voxels are NaN or infinite; the scan is corrupt or was "
                         "resampled with an invalid fill value.")


def read_label_image(path: str | os.PathLike) -> sitk.Image:
    """A label/mask image on its own grid: one whole number per voxel (a DICOM SEG's: its segment numbers)."""
    return read_labelled_image(path)[0]


def read_labelled_image(path: str | os.PathLike) -> tuple[sitk.Image, dict[int, str]]:
    """(a label/mask image on its own grid, one whole number per voxel; label value -> name where the file names
    them: a DICOM SEG's segment numbers and labels, a Slicer segmentation's (.seg.nrrd) label values and segment
    names, else empty)."""
    from .dicomseg import is_dicom_seg, read_dicom_seg

    path = Path(path)
    if not path.exists():
        raise InputError(f"mask not found: {path}")
    if path.is_file() and is_dicom_seg(path):
        return read_dicom_seg(path)
    image = (_read_file(path) if path.is_file() else _read_dicom_folder(path)).volume
    if image.GetNumberOfComponentsPerPixel() != 1 and slicer_segments(image):
        raise InputError(f"{path}: a Slicer segmentation of {image.GetNumberOfComponentsPerPixel()} layers (segments "
                         "that overlap): give one whose segments do not overlap (Segment Editor's masking: 'Overwrite "
                         "other segments'), or export the segment meant as a label map.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: the mask has {image.GetNumberOfComponentsPerPixel()} values per voxel (a colour or "
                         "vector image); give a label map, one value per voxel.")
    values = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(values.dtype, np.floating):
        for plane in values:  # a slice at a time: no whole-volume copies of a large float mask
            fractional = plane[plane != np.round(plane)]
            if fractional.size:  # cast to whole numbers it would lose these voxels, or the whole mask
                raise InputError(f"{path}: the mask holds fractional values (such as {float(fractional[0]):.3g}): a "
                                 "probability map? give a label map (threshold it first, e.g. at 0.5).")
    if values.size and (lowest := float(values.min())) < 0:  # a CT's air and fat; no label map has them
        raise InputError(f"{path}: the mask holds negative values (down to {lowest:.0f}): a scan, not a label map? "
                         "give a label map (0 outside, whole numbers 1, 2, ... inside).")
    return image, {value: name for value, (name, _) in slicer_segments(image).items()}


def slicer_segments(header) -> dict[int, tuple[str, str]]:
    """Label value -> (segment name, the SNOMED CT code of its type, or "") of a Slicer segmentation file (.seg.nrrd,
    one layer: segments that do not overlap), from its header's SegmentN_Name, SegmentN_LabelValue and SegmentN_Tags
    (`header`: the image read, or an ImageFileReader after ReadImageInformation). A segmentation saved in Slicer,
    CardioQuant's own among them, names its segments there; read as a plain label map, CardioQuant's BMD
    segmentation's values were taken for TotalSegmentator's, its T2-L3 named C1-T5. Empty for other files."""
    keys = set(header.GetMetaDataKeys())
    segments = {}
    for key in sorted(keys):
        if not (key.startswith("Segment") and key.endswith("_Name")):
            continue
        prefix = key[:-len("Name")]
        value = header.GetMetaData(f"{prefix}LabelValue") if f"{prefix}LabelValue" in keys else ""
        if not value.strip().isdigit():
            continue
        tags = header.GetMetaData(f"{prefix}Tags") if f"{prefix}Tags" in keys else ""
        segments[int(value)] = (header.GetMetaData(key), _terminology_type_code(tags))
    return segments


def _terminology_type_code(tags: str) -> str:
    """The type's code in a Slicer segment's terminology tag ("TerminologyEntry:<context>~<category>~<type>~...",
    each "scheme^code^meaning"), "" without one."""
    entry = next((tag.split(":", 1)[1] for tag in tags.split("|") if tag.startswith("TerminologyEntry:")), "")
    parts = entry.split("~")
    return parts[2].split("^")[1] if len(parts) > 2 and parts[2].count("^") >= 2 else ""


def read_mask(path: str | os.PathLike, reference: sitk.Image) -> sitk.Image:
    """Read a label/mask image and put it on the reference grid (nearest neighbour when grids differ)."""
    return read_labelled_mask(path, reference)[0]


def read_one_structure(path: str | os.PathLike, reference: sitk.Image, called: tuple[str, ...] = ()) -> np.ndarray:
    """A mask of one structure (a lumen, a region, a rod) on the reference grid: its non-zero voxels. From a DICOM SEG
    of several segments, the one labelled as one of `called` (any case: the module's own SEG, or TotalSegmentator's
    class); with none so labelled it is refused, as merged they would be one structure that none of them is."""
    from .dicomseg import segment_labels

    image, names = read_labelled_mask(path, reference)
    wanted = [number for number, label in names.items() if label.strip().lower() in {c.lower() for c in called}]
    if len(names) > 1 and len(wanted) == 1:
        return sitk.GetArrayFromImage(image) == wanted[0]
    if len(names) > 1:
        raise InputError(f"{path}: this segmentation holds {len(names)} segments ({segment_labels(names)}) where one "
                         "structure is asked for; give a segmentation of that one segment, or a label map of it.")
    return sitk.GetArrayFromImage(image) > 0


def read_labelled_mask(path: str | os.PathLike, reference: sitk.Image) -> tuple[sitk.Image, dict[int, str]]:
    """`read_mask`, with the names of its label values where the file gives them (read_labelled_image)."""
    from .geometry import resample_to

    image, names = read_labelled_image(path)
    if image.GetDimension() != reference.GetDimension():
        raise InputError(f"{path}: mask is {image.GetDimension()}D but the scan is {reference.GetDimension()}D")
    return resample_to(sitk.Cast(image, sitk.sitkUInt16), reference, is_label=True), names


def fingerprint(loaded: LoadedImage) -> dict:
    """Identifies the input without patient data: voxel checksum, grid, and file name."""
    image = loaded.image
    if image is None:  # a non-image input (e.g. centerlines): fingerprint the file itself
        with open(loaded.path, "rb") as handle:
            return {"file": os.path.basename(loaded.path), "format": loaded.format,
                    "file_sha256": hashlib.sha256(handle.read()).hexdigest()}
    digest = hashlib.sha256(sitk.GetArrayViewFromImage(image).data).hexdigest()  # the buffer itself, no copy
    return {
        "file": os.path.basename(loaded.path.rstrip("/")),
        "format": loaded.format,
        "voxels_sha256": digest,
        "size": list(image.GetSize()),
        "spacing_mm": [round(s, 6) for s in image.GetSpacing()],
        "origin_lps_mm": [round(o, 6) for o in image.GetOrigin()],
        "direction": [round(d, 6) for d in image.GetDirection()],
        "modality": loaded.modality,
        "kvp": loaded.kvp,
        # how a short-axis stack was assembled: from this many single-slice series (0: one series), with these
        # slices of the grid left empty (no file holds them)
        "stacked_series": loaded.stacked_series,
        "missing_slices": list(loaded.missing_slices),
        "multiframe": loaded.multiframe,  # read from one enhanced (multi-frame) DICOM file
        "gantry_tilt_deg": round(loaded.gantry_tilt_deg, 2),  # its slices shifted in plane onto a regular grid
    }


MIN_IN_VIEW_SHARE = 0.3  # a round field of view inscribed in its square leaves 79 % of it in view
MIN_PADDING_SHARE = 0.01  # ... and pads 21 %; a circle wider than the square pads its corners' few %


def check_hounsfield(image: sitk.Image, analysis: str, air_in_view: bool = True) -> None:
    """Refuse, with one line, intensities that are not CT in Hounsfield units (air near -1000): an MR series, or a
    CT stored as HU + 1024 without its rescale intercept, looks the same (0 to a few thousand) and would be
    segmented and scored as nonsense. Shared by every CT analysis, before any other check on the image. With
    `air_in_view` False (a CTA cropped to the heart may show no lung), only volumes with no negative value at all
    (no air and no fat, which no chest CT lacks) that reach 500 or more are refused."""
    array = sitk.GetArrayViewFromImage(image)
    step = max(1, int(round(max(array.shape[1:]) / 128)))
    sample = array[:, ::step, ::step]
    # The scanner's padding outside the reconstruction circle is no intensity of the patient: -3024 HU, or -32768
    # where a vendor stores HU with its padding at the int16 floor (read with it, such a CT was refused as not HU).
    in_view = sample[sample > NO_DATA_HU]
    padded = sample.size - in_view.size >= MIN_PADDING_SHARE * sample.size  # a stray voxel is no padding
    if in_view.size < MIN_IN_VIEW_SHARE * sample.size:  # mostly "padding": a CT under another offset (HU - 3000)
        in_view, padded = sample.ravel(), False
    low, high = np.percentile(in_view, [0.5, 99.9])
    # Padding is a CT scanner's mark (an MR series has no negative values): a round field of view inside the body
    # may show no air, as a CTA cropped to the heart may not.
    needs_air = air_in_view and not padded
    not_hu = (low > -500 if needs_air else low >= 0 and high >= 500) or high > 5000 or low < -3100
    # A segmentation given where the scan goes (TotalSegmentator's): never negative, unlike any CT with air or fat.
    if (not_hu or low >= 0) and looks_like_label_map(image):
        raise InputError(f"this image is a label map (whole-number values in flat regions), not a CT: {analysis} "
                         "needs the CT scan as its input; a segmentation goes with its own option (see --help).")
    if not_hu:
        raise InputError(f"intensities ({low:.0f} to {high:.0f}) do not look like CT in Hounsfield units (air near "
                         f"-1000 HU expected): an MR series, or a CT stored without its rescale intercept? {analysis} "
                         "needs CT in HU; check the modality or the rescale slope/intercept.")


# A label map is flat: in a segmentation 81-95 % of the neighbouring pixel pairs (background pairs aside) hold the
# same value (MyoPS's and EMIDEC's labels, a TotalSegmentator map); in a reconstructed image noise makes them
# differ (real LGE 6-33 %, 8-bit EMIDEC exports included; a real CT 24 %), and an export enlarged by repeating
# pixels (2 or 3 times) stays under about 70 %.
LABEL_MAP_FLAT_SHARE = 0.75
LABEL_MAP_MAX_VALUES = 256


def looks_like_label_map(image: sitk.Image) -> bool:
    """Whether an image is a segmentation rather than a scan: whole-number values, at most LABEL_MAP_MAX_VALUES of
    them, and neighbouring pixels that mostly hold the same value (read on up to 16 of its slices)."""
    array = sitk.GetArrayViewFromImage(image)
    planes = array.reshape((-1,) + array.shape[-2:])
    planes = planes[np.unique(np.linspace(0, len(planes) - 1, 16).round().astype(int))]
    if not np.array_equal(planes, np.round(planes)) or not 2 <= np.unique(planes).size <= LABEL_MAP_MAX_VALUES:
        return False  # (one value: a blank image, which the later checks name)
    left, right = planes[..., :-1], planes[..., 1:]
    counted = (left != 0) | (right != 0)
    return bool(counted.any() and ((left == right) & counted).sum() >= LABEL_MAP_FLAT_SHARE * counted.sum())
