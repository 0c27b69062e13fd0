"""A cohort's studies: every DICOM series and image file found in a folder tree, or the rows of a CSV manifest
(`id,path[,option columns]`: a column named like an analysis option, e.g. `kvp`, `labels`, `vertebra_mask`,
is that option for that study)."""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..imageio import (
    IMAGE_SUFFIXES,
    SINGLE_IMAGES,
    find_dicom_series,
    scans_of,
    single_slice_stacks,
    walk_folders,
)


@dataclass
class Study:
    id: str                  # folder name under OUTROOT: letters, digits, '.', '-', '_'
    path: str                # image file or DICOM folder
    series: str | None = None  # Series Instance UID within `path` (DICOM)
    description: str = ""
    options: dict = field(default_factory=dict)  # option name -> value (from the manifest)

    def fingerprint(self) -> str:
        """Cheap identity of the input files (names, sizes, modification times): changes when the data does."""
        digest = hashlib.sha256((self.series or "").encode())
        root = Path(self.path)
        files = (sorted(Path(folder, name) for folder, names in walk_folders(root) for name in names)
                 if root.is_dir() else [root])
        for path in files:
            try:
                stat = path.stat()
            except OSError:
                continue
            digest.update(f"{path.relative_to(root) if root.is_dir() else path.name}|{stat.st_size}|"
                          f"{stat.st_mtime_ns}".encode())
        return digest.hexdigest()


SEGMENTATION_SUFFIX = ".seg.nrrd"  # Slicer's segmentation files: masks a reader saved beside the scans


def safe_id(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return cleaned or "study"


def discover(inputs: str | Path, output: Path | None = None, left_out: list[str] | None = None,
             unreadable: list[str] | None = None) -> list[Study]:
    """Studies of a folder tree (the batch's own output folder left out, when it lies inside) or a CSV manifest;
    InputError when there is none. `left_out` gets the series of a folder tree that are not studies, `unreadable`
    its DICOM files that could not be read (`from_folder`)."""
    inputs = Path(inputs)
    if not inputs.exists():
        raise InputError(f"batch input not found: {inputs}. Give a folder tree of scans or a CSV manifest.")
    studies = from_manifest(inputs) if inputs.is_file() else from_folder(inputs, output, left_out, unreadable)
    if not studies:
        raise InputError(f"no DICOM series or image file ({', '.join(IMAGE_SUFFIXES)}) found in {inputs}.")
    ids = [study.id for study in studies]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InputError(f"study ids are not unique ({', '.join(duplicates[:5])}): give each row its own id.")
    return studies


def from_folder(root: Path, skip: Path | None = None, left_out: list[str] | None = None,
                unreadable: list[str] | None = None) -> list[Study]:
    """Every image file and every DICOM series under `root` but not under `skip` (a series: its own folder and
    UID), but for a series of one or two images beside a volume in the same exam folder: a localizer or a dose
    report, as a PACS exports them with the scan (named in `left_out`; the single-scan commands read the volume
    of such a folder and leave them out the same way), and for series that are not scans (segmentations,
    structure sets: imageio.NOT_SCANS, and Slicer segmentation files, .seg.nrrd, saved beside the scans), also named
    in `left_out`. DICOM files that cannot be read (an RT Dose object of one frame, a damaged file) do not stop the
    search: they are named in `unreadable`."""
    studies = []
    for directory, names in walk_folders(root, skip):
        for name in sorted(names):
            if name.lower().endswith(SEGMENTATION_SUFFIX) and not name.startswith("."):
                if left_out is not None:
                    left_out.append(f"{Path(directory) / name} (a Slicer segmentation, not a scan)")
            elif name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                path = Path(directory) / name
                stem = next(str(path.relative_to(root))[:-len(s)] for s in IMAGE_SUFFIXES
                            if name.lower().endswith(s))
                studies.append(Study(safe_id(stem), str(path)))
    found, derived = scans_of(find_dicom_series(root, skip, unreadable))
    if left_out is not None:
        left_out += [f"{_folder_of(series)} ({series.modality}: {series.description or 'no description'}, not a scan)"
                     for series in derived]
    stacks = _stacks_by_exam(found)
    stacked = {uid for stack in stacks.values() for uid in stack}
    folders = {series.uid: _folder_of(series) for series in found}  # a common path of every file: once each
    with_a_volume = {folders[series.uid].parent for series in found if series.slices > SINGLE_IMAGES}
    for series in found:
        folder = folders[series.uid]
        if series.uid in stacked:
            continue
        if series.slices <= SINGLE_IMAGES and folder.parent in with_a_volume:
            if left_out is not None:
                left_out.append(f"{folder} ({series.description or 'no description'}, {series.slices} image(s))")
            continue
        relative = str(folder.relative_to(root)) if folder != root else root.name
        studies.append(Study(safe_id(f"{relative}_{series.uid[-8:]}"), str(folder), series.uid, series.description))
    for exam, uids in stacks.items():
        relative = str(exam.relative_to(root)) if exam != root else root.name
        studies.append(Study(safe_id(f"{relative}_stack_{len(uids)}_slices"), str(exam), ",".join(uids),
                             f"stack of {len(uids)} single-slice series"))
    return studies


def _folder_of(series) -> Path:
    folder = Path(os.path.commonpath(series.files))
    return folder.parent if folder.is_file() else folder


def _stacks_by_exam(found) -> dict[Path, list[str]]:
    """Single-slice series that are one stack (`imageio.single_slice_stacks`: a short-axis LGE stack stored one
    series per breath-hold), gathered by the folder that holds their folders (the exam's): that folder -> their
    UIDs. One study each, read as one stack (`--series UID,UID,...`)."""
    by_exam: dict[Path, list] = {}
    for series in found:
        if len(series.files) == 1:
            by_exam.setdefault(_folder_of(series).parent, []).append(series)
    stacks = {}
    for exam, candidates in by_exam.items():
        stackable = single_slice_stacks(candidates)
        if len(stackable) == 1:  # two stacks in one exam folder: each series stays a study of its own
            stacks[exam] = [series.uid for series in stackable[0]]
    return stacks


def from_manifest(path: Path) -> list[Study]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"id", "path"} <= set(rows[0]):
        raise InputError(f"{path}: a batch manifest is a CSV with columns id,path (and optional option columns).")
    studies = []
    for row in rows:
        location = Path(row["path"])
        if not location.is_absolute():
            location = path.parent / location
        options = {key: value for key, value in row.items() if key not in ("id", "path", "series") and value not in ("", None)}
        studies.append(Study(safe_id(row["id"]), str(location), row.get("series") or None, options=options))
    return studies
