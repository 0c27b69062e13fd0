"""`cardioquant` command line: one subcommand per module, plus `demo`.

Exit codes: 0 success, 2 bad input or usage (one line on stderr says what is wrong and what to do),
3 processing failure. Existing results are never replaced without --overwrite.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from pathlib import Path

import SimpleITK as sitk

from . import __version__, pipelines
from .errors import INTERRUPTED, CardioQuantError, InputError, interrupted
from .progress import Progress, StderrBar, machine_readable
from .results import ModuleResult, check_can_write, write_outputs

EXIT_OK, EXIT_PROCESSING = 0, 3  # bad input exits 2 (CardioQuantError.exit_code, argparse)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong and where the help is), not the usage block first:
    the same form as every other refusal of bad input."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="scan: .nrrd/.nhdr/.nii(.gz)/.mha file or a DICOM folder (subfolders searched); "
                                      "scar also reads a .png slice")
    parser.add_argument("--series", help="DICOM folder with several series: the Series Instance UID or the number "
                                         "the listing gives; for scar, several separated by commas: single-slice "
                                         "series read as one stack")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace results already in the output folder")
    parser.add_argument("--dicom-seg", action="store_true",
                        help="also write <module>_seg.dcm (DICOM SEG referencing the input; DICOM input only)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="print tracebacks on failure")
    parser.add_argument("--progress-format", choices=("bar", "lines"), default="bar",
                        help="bar: text bar on stderr; lines: 'PROGRESS f message' lines on stdout (for Slicer)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser. Each analysis's options are its pipeline's, whose import brings SciPy and more
    (the four took 0.3-0.5 s of a 4 s scar command): given the `command` to be run (the first word of the command
    line), only its options are added and the other analyses are listed by name; without one, every analysis's."""
    parser = OneLineParser(prog="cardioquant", description="Quantitative cardiac CT/MRI measurements.")
    parser.add_argument("--version", action="version", version=f"cardioquant {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("batch", help="run analyses on a whole cohort (folder tree or CSV manifest) on a Dask "
                                      "cluster: `cardioquant batch --help`", add_help=False)
    for name, title in pipelines.TITLES.items():
        sub = commands.add_parser(name, help=title, description=title)
        if command in (None, name):
            _add_common(sub)
            pipelines.get(name).add_arguments(sub)
    demo = commands.add_parser("demo", help="run every module on the bundled sample data")
    demo.add_argument("-o", "--output", required=True, type=Path, help="output folder (one subfolder per module)")
    demo.add_argument("--device", default="auto")
    demo.add_argument("--overwrite", action="store_true")
    demo.add_argument("--quiet", action="store_true")
    demo.add_argument("--debug", action="store_true")
    return parser


def _progress(label: str, options: argparse.Namespace) -> Progress:
    if getattr(options, "progress_format", "bar") == "lines":
        return Progress(machine_readable())
    return Progress(None if options.quiet else StderrBar(label))


def run_module(name: str, options: argparse.Namespace) -> tuple[ModuleResult, list[Path]]:
    module = pipelines.get(name)
    settings = module.SETTINGS.from_options(options)
    module.check_options(settings)  # option ranges first: before the output folder or the input
    check_can_write(options.output, name, options.overwrite)
    loaded = module.read_input(options.input, options.series)
    if options.dicom_seg and loaded.format != "dicom":
        raise InputError(f"--dicom-seg needs a DICOM input (the SEG references its slices); this input is "
                         f"{loaded.format}: leave --dicom-seg out or give the DICOM series.")
    if options.dicom_seg and loaded.not_one_series:
        raise InputError(f"--dicom-seg references one DICOM series, slice by slice; {loaded.not_one_series}: leave "
                         "--dicom-seg out (the .seg.nrrd holds the segmentation).")
    result = pipelines.run_analysis(name, loaded, settings, _progress(name, options))
    if options.dicom_seg and result.label_image is not None:
        from .dicomseg import seg_writer

        result.extra_outputs[f"{name}_seg.dcm"] = seg_writer(sitk.GetArrayFromImage(result.label_image),
                                                             result.label_table, loaded.source_files, module.TITLE)
    written = write_outputs(result, loaded, options.output, overwrite=options.overwrite)
    return result, written


def run_demo(options: argparse.Namespace) -> int:
    """Each module on its bundled sample."""
    rows = []
    for name in pipelines.TITLES:
        module = pipelines.get(name)
        sample = module.SETTINGS(device=options.device, **module.sample_options())
        sub = build_parser().parse_args([name, str(module.sample_input()), "-o", str(options.output / name),
                                         *sample.to_arguments(), *(["--overwrite"] if options.overwrite else []),
                                         *(["--quiet"] if options.quiet else [])])
        started = time.perf_counter()
        result, _ = run_module(name, sub)
        rows.append((name, f"ok ({time.perf_counter() - started:.1f} s)", module.summary_line(result)))
    width = max(len(r[1]) for r in rows)
    print(f"CardioQuant {__version__} demo - outputs in {options.output}")
    for name, status, text in rows:
        print(f"  {name:<8} {status:<{width}}  {text}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="cardioquant: %(levelname)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["batch"]:
        from .batch.runner import main as batch_main

        return batch_main(argv[1:])
    parser = build_parser(argv[0] if argv else None)
    options = parser.parse_args(argv)  # usage errors exit with 2 (argparse)
    code, message = run_parsed(options)
    if message:
        print(f"cardioquant: {message}", file=sys.stderr)
    return code


def run_parsed(options: argparse.Namespace) -> tuple[int, str]:
    """Run a parsed command: (exit code, the one line that says what went wrong, or "")."""
    try:
        if options.command == "demo":
            return run_demo(options), ""
        result, written = run_module(options.command, options)
        if not options.quiet:
            print(pipelines.get(options.command).summary_line(result))
            print(f"wrote {len(written)} files to {options.output}")
        return EXIT_OK, ""
    except CardioQuantError as exc:
        if options.debug:
            traceback.print_exc()
        return exc.exit_code, f"error: {exc}"
    except KeyboardInterrupt:
        return EXIT_PROCESSING, INTERRUPTED
    except Exception as exc:  # a bug or an unexpected failure: still one clear line and exit 3
        if interrupted(exc):  # Ctrl-C while a library was being imported
            return EXIT_PROCESSING, INTERRUPTED
        if options.debug:
            traceback.print_exc()
        return EXIT_PROCESSING, f"processing failed: {type(exc).__name__}: {exc} (rerun with --debug for details)"


if __name__ == "__main__":  # the panels' background run
    from .launcher import leave_objects_to_the_system_at_exit

    leave_objects_to_the_system_at_exit()
    sys.exit(main())
