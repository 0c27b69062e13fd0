"""The four analyses' pipelines and the contract each implements, as the command line, the demo, the batch runner
and the Slicer panels see them.

A pipeline is a module of the package (`cardioquant.<analysis>.pipeline`) that implements `Pipeline`; the type
checker verifies that each does (the TYPE_CHECKING block below, `make lint`).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:  # annotations only: the Slicer modules import this registry before their dependencies exist
    from .imageio import LoadedImage
    from .progress import Progress
    from .results import ModuleResult
    from .settings import AnalysisSettings


class Pipeline(Protocol):
    """One analysis, from the command line's options to its result."""

    TITLE: str        # the analysis as a reader names it, with its Slicer module
    ALLOW_2D: bool    # whether a single 2D image is a valid input

    @property
    def SETTINGS(self) -> type[AnalysisSettings]:  # noqa: N802  (a module constant)
        """Its one settings object: the options of the command line, the panel and the JSON."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Its own command-line options (the fields of SETTINGS), added to `parser`."""

    def check_options(self, settings: Any) -> None:
        """InputError naming the option when a value is out of its range; before anything is read."""

    def read_input(self, path: str, series: str | None = None) -> LoadedImage:
        """The input as this analysis reads it (a DICOM folder, an image file; CT-FFR also a centerline file)."""

    def check_input(self, loaded: LoadedImage) -> list[str]:
        """InputError when the input cannot be analysed (wrong modality, geometry); else its warnings."""

    def run(self, loaded: LoadedImage, settings: Any, progress: Progress) -> ModuleResult:
        """The analysis (settings: an instance of SETTINGS)."""

    def sample_input(self) -> Path:
        """The bundled sample for `cardioquant demo` and the Slicer self-test."""

    def sample_options(self) -> dict:
        """Settings the sample needs (e.g. its masks), as field name -> value."""

    def summary_line(self, result: ModuleResult) -> str:
        """One line for the demo table."""


PIPELINES: dict[str, str] = {
    "calcium": "cardioquant.calcium.pipeline",
    "scar": "cardioquant.scar.pipeline",
    "bmd": "cardioquant.bmd.pipeline",
    "ffr": "cardioquant.ffr.pipeline",
}

TITLES = {
    "calcium": "Coronary artery calcium (CalciumScoring)",
    "scar": "Myocardial scar on LGE MRI (ScarQuantification)",
    "bmd": "Vertebral bone mineral density (BoneDensity)",
    "ffr": "CT-derived fractional flow reserve (CTFFR)",
}


def get(name: str) -> Pipeline:
    """The pipeline of one analysis (imported on first use: each brings its own heavy dependencies)."""
    return cast(Pipeline, importlib.import_module(PIPELINES[name]))


def settings_class(name: str) -> type[AnalysisSettings]:
    """The settings class of one analysis, imported without the analysis itself (no SciPy, no network): the
    Slicer panels build their parameter nodes from it when Slicer starts, before their dependencies exist."""
    return importlib.import_module(f"{__package__}.{name}.settings").SETTINGS


def settings_for(name: str, **values) -> AnalysisSettings:
    """The settings of one analysis: its defaults, with `values` (field names; TypeError for one it lacks)."""
    return settings_class(name)(**values)


def run_analysis(name: str, loaded: LoadedImage, settings: AnalysisSettings, progress: Progress) -> ModuleResult:
    """The one run path of an analysis, for the command line, the batch workers, the demo and the Slicer panels
    (the background run goes through the command line; Logic.process comes here directly). The result records
    the settings it ran with (the JSON's "options"), which a re-run or re-scoring reads back."""
    check_segs_drawn_on(loaded, settings)
    result = get(name).run(loaded, settings, progress)
    # How the input was read (e.g. single-slice series stacked) and whose masks were resampled come first.
    result.warnings[:0] = loaded.warnings + masks_on_other_grids(loaded, settings)
    result.options = settings.to_json()
    return result


def check_segs_drawn_on(loaded: LoadedImage, settings: AnalysisSettings) -> None:
    """Refuse, before any work, a mask given as a DICOM SEG that was made on another scan: its Frame of Reference
    UID is not the DICOM series'. Positions in another frame (another study of the patient, or another patient) are
    not this scan's: the mask would land elsewhere, unsaid. Masks in other formats carry no frame to check."""
    from .dicomseg import seg_frame_of_reference
    from .errors import InputError

    scan_frame = loaded.dicom.get("frame_of_reference_uid")
    if not scan_frame:
        return
    for field, _, _ in settings.fields():
        path = getattr(settings, field.name)
        if not field.metadata["path"] or not isinstance(path, str) or not Path(path).is_file():
            continue
        if (seg_frame := seg_frame_of_reference(path)) and seg_frame != scan_frame:
            raise InputError(f"{settings.flag(field.name)} {path}: this DICOM SEG was made on another scan (its Frame "
                             f"of Reference UID {seg_frame} is not this series' {scan_frame}): give the mask made on "
                             "this scan")


def masks_on_other_grids(loaded: LoadedImage, settings: AnalysisSettings) -> list[str]:
    """A warning for each mask file given whose voxels are not the scan's: another spacing or direction, or an origin
    off the scan's voxel lattice. A mask drawn on the scan shares its grid (Slicer's segmentations crop it to their
    extent, on the same lattice; TotalSegmentator writes the scan's); one on another grid was resampled onto it,
    and may have been drawn on another scan: a label map of another scan given as artery labels was scored as
    calcium, unsaid. Read from the files' headers; DICOM SEGs are checked by their frame of reference instead."""
    from .geometry import on_the_lattice_of

    if loaded.image is None:
        return []
    said = []
    for field, _, _ in settings.fields():
        path = getattr(settings, field.name)
        if (field.metadata["path"] and isinstance(path, str) and Path(path).is_file()
                and (grid := _grid_of(path)) is not None and not on_the_lattice_of(grid, loaded.image)):
            said.append(f"{settings.flag(field.name)} {Path(path).name} is on another grid than the scan "
                        f"({_describe(grid)} against {_describe(loaded.image)}): it was resampled onto the scan; "
                        "check that it was drawn on this scan")
    return said


def _grid_of(path: str):
    """The image file's header (an ImageFileReader: size, spacing, origin, direction), or None for a file that is
    no image of one (a DICOM SEG, a centerline file)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return None if reader.GetImageIO() == "GDCMImageIO" else reader


def _describe(grid) -> str:
    return (f"{'x'.join(str(n) for n in grid.GetSize())} voxels of "
            f"{'x'.join(f'{v:.3g}' for v in grid.GetSpacing())} mm")


if TYPE_CHECKING:  # the type checker proves that every analysis implements the contract
    from .bmd import pipeline as _bmd
    from .calcium import pipeline as _calcium
    from .ffr import pipeline as _ffr
    from .scar import pipeline as _scar

    _IMPLEMENTATIONS: tuple[Pipeline, ...] = (_calcium, _scar, _bmd, _ffr)
