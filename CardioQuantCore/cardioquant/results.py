"""The result of one module run and the files every module writes (the output contract).

OUTDIR/<module>.json         scores, options (the settings given), settings (derived: thresholds...), versions, input
                             fingerprint, label table, warnings
OUTDIR/<module>.seg.nrrd     Slicer segmentation (names, colours, terminology; input grid)
OUTDIR/<module>_labels.nrrd  plain label map on the input grid (values in the JSON's `labels`)
OUTDIR/<module>.csv          the main table (one row per artery / vertebra / segment / vessel), and its column types
                             for Slicer's reader (<module>.schema.csv)
OUTDIR/<module>_report.png   one-page visual report (and .pdf)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__, geometry
from .errors import InputError
from .imageio import LoadedImage, fingerprint
from .labels import LabelTable


@dataclass
class ModuleResult:
    module: str
    summary: dict
    label_image: sitk.Image | None
    label_table: LabelTable
    table_rows: list[dict]
    settings: dict  # what the analysis derived and used (thresholds, the method chosen, the RV insertion)
    models: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # draws the report into the given path (.png; .pdf beside it) with the run's warnings on it
    report: Callable[[Path, list[str]], None] | None = None
    extra_outputs: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # file name -> writer
    options: dict = field(default_factory=dict)  # the settings object the run was given (settings.AnalysisSettings)



def output_names(module: str) -> list[str]:
    return [f"{module}.json", f"{module}.seg.nrrd", f"{module}_labels.nrrd", f"{module}.csv",
            f"{module}_report.png", f"{module}_report.pdf", f"{module}.schema.csv", f"{module}_seg.dcm",
            f"{module}_centerlines.vtp", f"{module}_surface.vtp"]


def check_can_write(outdir: Path, module: str, overwrite: bool) -> None:
    """Refuse to replace earlier results (they may hold a user's edits) unless overwrite was asked for, and refuse
    a folder that cannot be written, before any analysis runs."""
    _check_writable(Path(outdir))
    existing = [n for n in output_names(module) if (outdir / n).exists()]
    if existing and not overwrite:
        raise InputError(f"{outdir} already holds {module} results ({', '.join(existing)}); "
                         "choose another output folder or pass --overwrite to replace them.")
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"output path {outdir} exists and is not a folder")


@contextlib.contextmanager
def run_lock(outdir: Path, module: str):
    """One run at a time writes a module's results into a folder: a second one is refused (exit 2) instead of
    silently replacing the first's files. The lock is the OS's (fcntl), so a killed run never leaves it held."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with open(outdir / f".{module}.lock", "w") as handle:  # noqa: SIM117 (the lock is held inside)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise InputError(f"another cardioquant run is writing {module} results into {outdir}: wait for it to "
                             "finish or choose another output folder.") from exc
        yield


def _check_writable(outdir: Path) -> None:
    """Probe the output folder (or the nearest folder above it that exists) with a real write: permission bits
    say nothing for root, read-only mounts or /proc."""
    existing = outdir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"output path {existing} exists and is not a folder; choose another output folder.")
    try:
        probe = tempfile.mkdtemp(prefix=".cardioquant-probe-", dir=existing)
        os.rmdir(probe)
    except OSError as exc:
        raise InputError(f"cannot write to {outdir} ({exc.strerror or exc}); choose a folder you can write to.") from exc


def software_versions() -> dict:
    versions: dict[str, str | None] = {"cardioquant": __version__, "python": platform.python_version()}
    for package in ("slicer-core", "vtk", "torch", "monai", "SimpleITK", "numpy", "scipy", "highdicom", "vmtk", "svzerod"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _json_safe(value):
    """NaN/inf are not JSON: write them as null. numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _new_backup_folder(outdir: Path, module: str) -> Path:
    backup = outdir / "previous" / f"{module}-{time.strftime('%Y%m%d-%H%M%S')}"
    backup = Path(tempfile.mkdtemp(prefix=backup.name + "-", dir=backup.parent)) if backup.exists() else backup
    backup.mkdir(parents=True, exist_ok=True)
    return backup


def _warn_backup(module: str, backup: Path) -> None:
    logging.getLogger("cardioquant").warning("the previous %s results were moved to %s", module, backup)


# --- the swap: a complete old set or a complete new set, never a mix ----------------------------------------
# The new files are complete in a staging folder before anything in OUTDIR changes. A journal naming the staging
# and backup folders is then written (atomically); from that moment the swap is carried to its end: old files to
# the backup, new ones in, journal and staging removed. A run killed in between leaves the journal, and the next
# run into the folder finishes the swap before anything else; a run killed before the journal leaves only a stale
# staging folder, which the next run removes (the old set was never touched).

def _journal(outdir: Path, module: str) -> Path:
    return outdir / f".{module}.swap.json"


def _begin_swap(outdir: Path, module: str, staging: Path) -> None:
    old = [name for name in output_names(module) if (outdir / name).exists()]
    backup = _new_backup_folder(outdir, module) if old else None
    entry = {"staging": staging.name, "files": sorted(path.name for path in staging.iterdir()),
             "backup": str(backup.relative_to(outdir)) if backup else None}
    pending = outdir / f".{module}.swap.json.tmp"
    with open(pending, "w") as handle:
        json.dump(entry, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(pending, _journal(outdir, module))


def finish_swap(outdir: Path, module: str) -> list[Path]:
    """Carry a swap (this run's, or one a killed run left) to its end; idempotent, as each step looks at what is
    already done: a new file still in staging has not arrived, so a file of that name in OUTDIR is old; a result
    file the new set does not have is old. Returns the new set's paths."""
    journal = _journal(outdir, module)
    if not journal.exists():
        return []
    entry = json.loads(journal.read_text())
    staging, new_files = outdir / entry["staging"], set(entry["files"])
    backup = outdir / entry["backup"] if entry["backup"] else None
    for name in sorted(set(output_names(module)) | new_files):  # every staged file comes in, named or not
        arriving = name in new_files and (staging / name).exists()
        if (outdir / name).exists() and (arriving or name not in new_files):
            backup = backup or _new_backup_folder(outdir, module)
            backup.mkdir(parents=True, exist_ok=True)
            os.replace(outdir / name, backup / name)
        if arriving:
            os.replace(staging / name, outdir / name)
    journal.unlink()
    shutil.rmtree(staging, ignore_errors=True)
    if backup is not None and backup.is_dir():
        _warn_backup(module, backup)
    return [outdir / name for name in sorted(new_files)]


def result_document(result: ModuleResult, loaded: LoadedImage) -> dict:
    document = dict(result.summary)
    document.update({
        "module": result.module,
        "options": result.options,
        "settings": result.settings,
        "versions": {**software_versions(), "models": result.models},
        "input": fingerprint(loaded),
        "labels": result.label_table.to_json(),
        "warnings": result.warnings,
    })
    return _json_safe(document)


def write_outputs(result: ModuleResult, loaded: LoadedImage, outdir: str | Path, overwrite: bool = False) -> list[Path]:
    """Write every output into a staging folder first, then swap the whole set in (see the swap above), one run at
    a time (run_lock): a failure leaves OUTDIR untouched, and with --overwrite the results there are kept in
    previous/."""
    return swap_in(outdir, result.module, lambda staging: _write_result(result, loaded, staging), overwrite)


def swap_in(outdir: str | Path, module: str, fill: Callable[[Path], None], overwrite: bool = False) -> list[Path]:
    """A set of `module`'s files, written by `fill` into a staging folder, swapped into OUTDIR as a whole (the
    results already there kept in previous/): a run's outputs, or the files the panel's Export copies."""
    outdir = Path(outdir)
    _check_writable(outdir)  # before run_lock creates the folder
    with run_lock(outdir, module):
        finish_swap(outdir, module)  # a swap a killed run left: finished before anything else
        check_can_write(outdir, module, overwrite)  # under the lock: another run may just have finished
        for stale in outdir.glob(f".{module}-*"):  # staging a run killed before its swap left
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{module}-", dir=outdir))
        try:
            fill(staging)
            _begin_swap(outdir, module, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # nothing in OUTDIR was touched
            raise
        return finish_swap(outdir, module)


def write_label_map(label_image: sitk.Image, table: LabelTable, path: Path) -> None:
    """The plain label map (`<module>_labels.nrrd`), its values named in its header as a Slicer segmentation names
    them (LabelTable.header_keys): read back as a mask (imageio.slicer_segments), its values are this table's, not
    another convention's. The run's and a reader's edited one alike."""
    labels = sitk.Image(geometry.as_uint8(label_image))  # a copy: the header is the file's alone
    for key, value in table.header_keys().items():
        labels.SetMetaData(key, value)
    sitk.WriteImage(labels, str(path), True)


def _write_result(result: ModuleResult, loaded: LoadedImage, staging: Path) -> None:
    from . import scene as scene_layer

    name = result.module
    (staging / f"{name}.json").write_text(json.dumps(result_document(result, loaded), indent=2))
    scene_layer.save_table_file(result.table_rows, staging / f"{name}.csv")
    if result.label_image is not None and loaded.image is not None:
        write_label_map(result.label_image, result.label_table, staging / f"{name}_labels.nrrd")
        scene_layer.save_segmentation_file(result.label_image, result.label_table, staging / f"{name}.seg.nrrd")
    if result.report is not None:
        result.report(staging / f"{name}_report.png", result.warnings)
    for file_name, writer in result.extra_outputs.items():
        writer(staging / file_name)
