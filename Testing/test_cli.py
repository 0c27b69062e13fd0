"""Command line: exit codes, one clear error line, and the no-overwrite rule."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_factory import write_ct_series

from cardioquant import cli


def run(capsys, *args):
    code = cli.main(list(map(str, args)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_block(folder):
    """The hand-worked block phantom (Agatston 22) as ct.nrrd + labels.nrrd."""
    from cardioquant.calcium.phantom import write_block_phantom

    return write_block_phantom(folder)


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("cardioquant:")]
    assert len(lines) == 1, err
    return lines[0]


def test_missing_input_exits_2(capsys, tmp_path):
    code, _, err = run(capsys, "calcium", tmp_path / "nope.nrrd", "-o", tmp_path / "out")
    assert code == 2 and "input not found" in _error_line(err)


def test_empty_folder_exits_2(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "calcium", tmp_path / "empty", "-o", tmp_path / "out")
    assert code == 2 and "empty" in _error_line(err)


def test_mixed_series_exits_2(capsys, tmp_path):
    write_ct_series(tmp_path / "mixed", np.zeros((3, 4, 4)))
    for path in write_ct_series(tmp_path / "b", np.zeros((3, 4, 4)), origin=(0, 0, 50)):
        path.rename(tmp_path / "mixed" / ("b" + path.name))
    code, _, err = run(capsys, "calcium", tmp_path / "mixed", "-o", tmp_path / "out")
    assert code == 2 and "2 DICOM series" in _error_line(err) and "--series" in _error_line(err)


def test_2d_image_exits_2(capsys, tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((16, 16), np.int16)), str(tmp_path / "slice.nrrd"))
    code, _, err = run(capsys, "calcium", tmp_path / "slice.nrrd", "-o", tmp_path / "out")
    assert code == 2 and "2D image" in _error_line(err)


def test_nan_voxels_exit_2(capsys, tmp_path):
    array = np.zeros((4, 16, 16), np.float32)
    array[2, 3, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "nan.nrrd"))
    code, _, err = run(capsys, "calcium", tmp_path / "nan.nrrd", "-o", tmp_path / "out")
    assert code == 2 and "NaN" in _error_line(err)


def test_existing_results_are_not_overwritten(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "calcium.seg.nrrd").write_text("the user's edited segmentation")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 16, 16), np.int16)), str(tmp_path / "ct.nrrd"))
    code, _, err = run(capsys, "calcium", tmp_path / "ct.nrrd", "-o", out)
    assert code == 2 and "--overwrite" in _error_line(err)
    assert (out / "calcium.seg.nrrd").read_text() == "the user's edited segmentation"


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as exc:
        cli.main(["calcium"])
    assert exc.value.code == 2


@pytest.mark.parametrize(("argv", "what"), [(["calcium", "ct.nrrd", "-o", "out", "--mode", "foo"], "--mode"),
                                            (["calcium", "ct.nrrd"], "-o/--output"),
                                            (["scar", "mr.nrrd", "-o", "out", "--n-sd", "many"], "--n-sd"),
                                            (["perfusion", "ct.nrrd"], "perfusion")])
def test_a_usage_error_is_one_line_naming_the_option_and_the_help(capsys, argv, what):
    """A mistyped option is refused like any bad input: exit 2 and one line (not argparse's usage block)."""
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(lines) == 1
    assert what in lines[0] and "--help" in lines[0]


def test_console_script_exit_code_and_single_line(tmp_path):
    """The installed entry point, as a user runs it: a separate process, one error line, exit 2."""
    result = subprocess.run([sys.executable, "-m", "cardioquant.cli", "bmd", str(tmp_path / "missing.nii.gz"),
                             "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"cardioquant: error: input not found: {tmp_path / 'missing.nii.gz'}. "
                                                  "Give an image file (.nrrd, .nii.gz, .mha) or a DICOM folder."]


def test_demo_runs_and_exits_0(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "-o", tmp_path / "demo", "--quiet")
    assert code == 0
    for name in ("calcium", "scar", "bmd", "ffr"):
        assert any(line.strip().startswith(name) for line in out.splitlines())


def test_unwritable_output_folder_is_refused_before_the_analysis(capsys, tmp_path):
    image, labels = write_block(tmp_path)
    code, _, err = run(capsys, "calcium", image, "--labels", labels, "--mode", "noncontrast",
                       "-o", "/proc/cardioquant-out")
    assert code == 2 and "cannot write to /proc/cardioquant-out" in _error_line(err)


def test_dicom_seg_on_a_non_dicom_input_is_refused_before_writing(capsys, tmp_path):
    image, labels = write_block(tmp_path)
    code, _, err = run(capsys, "calcium", image, "--labels", labels, "--mode", "noncontrast", "--dicom-seg",
                       "-o", tmp_path / "out")
    assert code == 2 and "--dicom-seg needs a DICOM input" in _error_line(err)
    assert not (tmp_path / "out").exists()


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_second_run_into_a_folder_being_written_is_refused(capsys, tmp_path):
    """Two runs into one folder at once: the second exits 2 with one line and changes nothing."""
    from cardioquant.results import run_lock

    ct, labels = write_block(tmp_path)
    out = tmp_path / "out"
    assert run(capsys, "calcium", ct, "--labels", labels, "-o", out, "--quiet")[0] == 0
    before = _files(out)
    with run_lock(out, "calcium"):  # the first run, still writing
        code, _, err = run(capsys, "calcium", ct, "--labels", labels, "-o", out, "--overwrite", "--quiet")
    assert code == 2 and "another cardioquant run is writing calcium results" in _error_line(err)
    assert _files(out) == before


def test_overwrite_keeps_the_previous_results_with_the_readers_edits(capsys, caplog, tmp_path):
    """--overwrite moves the earlier results, a reader's edited segmentation included, into previous/ and says
    so; a staging folder a killed run left is cleaned."""
    ct, labels = write_block(tmp_path)
    out = tmp_path / "out"
    assert run(capsys, "calcium", ct, "--labels", labels, "-o", out, "--quiet")[0] == 0
    edited = (out / "calcium.seg.nrrd").read_bytes() + b"\n# the reader's edit\n"
    (out / "calcium.seg.nrrd").write_bytes(edited)
    (out / ".calcium-killedrun").mkdir()
    code, _, _ = run(capsys, "calcium", ct, "--labels", labels, "-o", out, "--overwrite", "--quiet")
    assert code == 0 and "previous calcium results were moved to" in caplog.text  # a warning on stderr
    kept = list((out / "previous").glob("calcium-*/calcium.seg.nrrd"))
    assert len(kept) == 1 and kept[0].read_bytes() == edited
    assert (out / "calcium.seg.nrrd").read_bytes() != edited and (out / "calcium.json").exists()
    assert not (out / ".calcium-killedrun").exists()


KILLED_DURING_SWAP = """
import os, signal, sys
from cardioquant import cli
real_replace = os.replace
arrived = []
def replace(source, target, *args, **kwargs):
    if "/.calcium-" in str(source):  # a new file arriving from staging
        arrived.append(target)
        if len(arrived) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # killed between the first new file and the second
    return real_replace(source, target, *args, **kwargs)
os.replace = replace
cli.main(sys.argv[1:])
"""


def test_a_run_killed_during_the_swap_leaves_a_set_the_next_run_completes(capsys, tmp_path):
    """Killed between two files of the swap: the journal it left makes the next run finish that swap first, so
    OUTDIR ends with the killed run's whole set and previous/ with the whole earlier set, byte for byte."""
    import json

    ct, labels = write_block(tmp_path)
    out = tmp_path / "out"
    assert run(capsys, "calcium", ct, "--labels", labels, "-o", out, "--quiet")[0] == 0
    earlier = {name: data for name, data in _files(out).items() if not str(name).startswith(".")}
    killed = subprocess.run([sys.executable, "-c", KILLED_DURING_SWAP, "calcium", str(ct), "--labels", str(labels),
                             "-o", str(out), "--overwrite", "--quiet", "--no-increment-scaling"], check=False)
    assert killed.returncode == -9 and (out / ".calcium.swap.json").exists()
    from cardioquant.results import finish_swap

    finish_swap(out, "calcium")  # what the next run into OUTDIR does first, under its lock
    assert not (out / ".calcium.swap.json").exists() and not list(out.glob(".calcium-*"))
    kept = list((out / "previous").glob("calcium-*"))
    assert len(kept) == 1 and _files(kept[0]) == {Path(str(n)): d for n, d in earlier.items()}
    now = json.loads((out / "calcium.json").read_text())
    assert now["settings"]["increment_scaling"] is False  # the killed run's set, complete
    assert {p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")} == {str(n) for n in earlier}


@pytest.mark.parametrize(("analysis", "option", "value"), [
    ("bmd", "--kvp", "-80"), ("bmd", "--kvp", "nan"), ("ffr", "--venous-pressure", "120"),
    ("ffr", "--murray-exponent", "-1"), ("ffr", "--min-stenosis", "-10"), ("ffr", "--left-share", "1.5"),
    ("calcium", "--cta-scale", "-1")])
def test_options_out_of_range_exit_2_naming_the_option_before_anything_is_read(capsys, tmp_path, analysis, option,
                                                                               value):
    code, _, err = run(capsys, analysis, tmp_path / "not-read.nrrd", f"{option}={value}", "-o", tmp_path / "out")
    assert code == 2 and f"{option} " in _error_line(err) and "out of range" in _error_line(err)
    assert not (tmp_path / "out").exists()


def test_an_unknown_lowest_level_is_a_usage_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bmd", str(tmp_path / "x.nrrd"), "--lowest-level", "Q7", "-o", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "--lowest-level" in capsys.readouterr().err


@pytest.mark.parametrize("analysis", ["calcium", "bmd", "ffr"])
def test_ct_stored_as_hu_plus_1024_or_mr_is_refused_by_every_ct_analysis(capsys, tmp_path, analysis):
    """A CT stored as HU + 1024 (uint16, no rescale) and an oblique MR-range volume: one line about Hounsfield
    units, not a 'reformat to axial' hint or a run of vmtk on nonsense, and nothing written."""
    rng = np.random.default_rng(0)
    hu = np.full((40, 64, 64), -1000.0)
    hu[:, 12:52, 12:52] = 40.0 + rng.normal(0, 10, (40, 40, 40))
    shifted = sitk.GetImageFromArray((hu + 1024).astype(np.uint16))
    mr = sitk.GetImageFromArray(rng.uniform(0, 900, (40, 64, 64)).astype(np.float32))
    mr.SetDirection((0.9, 0.1, -0.42, 0.0, 0.97, 0.23, 0.44, -0.2, 0.88))  # oblique, roughly orthonormal
    for name, image in (("shifted.nrrd", shifted), ("mr.nrrd", mr)):
        sitk.WriteImage(image, str(tmp_path / name))
        code, _, err = run(capsys, analysis, tmp_path / name, "-o", tmp_path / f"out-{name}")
        assert code == 2 and "Hounsfield" in _error_line(err), err
        assert not (tmp_path / f"out-{name}").exists()


@pytest.mark.parametrize("analysis", ["calcium", "bmd", "ffr"])
def test_a_segmentation_given_as_the_scan_is_named_a_label_map_by_every_ct_analysis(capsys, tmp_path, analysis):
    """A TotalSegmentator-like label map (organ numbers 0-117 in flat regions) given where the CT goes: the line
    says it is a label map and that the scan is the input, not that the CT lacks its rescale intercept."""
    labels = np.zeros((40, 64, 64), np.uint8)
    labels[5:35, 10:40, 10:40] = 51  # a heart
    labels[5:35, 42:54, 20:32] = 52  # an aorta
    labels[:, 50:60, 28:36] = 32  # a vertebra
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(tmp_path / "segmentation.nii.gz"))
    code, _, err = run(capsys, analysis, tmp_path / "segmentation.nii.gz", "-o", tmp_path / "out")
    assert code == 2 and "label map" in _error_line(err) and "CT scan as its input" in _error_line(err), err
    assert not (tmp_path / "out").exists()


def test_a_truncated_nifti_is_refused_not_read_with_zero_slices(capsys, tmp_path):
    """ITK reads a .nii.gz cut in half without a word, its missing slices as zeros: refused with one line."""
    ct, labels = write_block(tmp_path)
    sitk.WriteImage(sitk.ReadImage(ct), str(tmp_path / "scan.nii.gz"))
    data = (tmp_path / "scan.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    code, _, err = run(capsys, "calcium", tmp_path / "cut.nii.gz", "--labels", labels, "-o", tmp_path / "out")
    assert code == 2 and "truncated" in _error_line(err) and not (tmp_path / "out").exists()
    assert run(capsys, "calcium", tmp_path / "scan.nii.gz", "--labels", labels, "-o", tmp_path / "ok")[0] == 0


def test_progress_bar_only_on_a_terminal_and_report_without_folder_names(capsys, tmp_path, monkeypatch):
    """The bar's carriage returns go to a terminal only (a log or a pipe gets the one error line alone), and the
    report names the input file, never the folders above it (they often carry the patient's name)."""
    import io

    from cardioquant import report
    from cardioquant.progress import StderrBar

    piped = io.StringIO()
    StderrBar("calcium", piped)(0.5, "scoring")
    assert piped.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    StderrBar("calcium", terminal)(1.0, "done")
    assert terminal.getvalue().startswith("\rcalcium [")
    subtitles = []
    original = report.new_page
    monkeypatch.setattr(report, "new_page", lambda title, subtitle="": subtitles.append(subtitle) or original(title, subtitle))
    folder = tmp_path / "Doe^John 1947"
    folder.mkdir()
    ct, labels = write_block(folder)
    assert run(capsys, "calcium", ct, "--labels", labels, "-o", tmp_path / "out")[0] == 0
    assert subtitles and "Doe" not in subtitles[0] and "ct.nrrd" in subtitles[0]


def test_identical_runs_write_identical_files(capsys, tmp_path):
    """Same input, same options: the same bytes in every result file (segment IDs included), so results can be
    checksummed and compared."""
    ct, labels = write_block(tmp_path)
    for out in ("one", "two"):
        assert run(capsys, "calcium", ct, "--labels", labels, "-o", tmp_path / out, "--quiet")[0] == 0
    for name in ("calcium.seg.nrrd", "calcium_labels.nrrd", "calcium.csv", "calcium.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_ctrl_c_while_a_library_is_imported_ends_in_one_line(capsys, tmp_path, monkeypatch):
    """VTK reports a Ctrl-C during its import as an ImportError: still "interrupted", exit 3, nothing written."""
    from cardioquant.calcium import pipeline

    def interrupted_import(loaded, options, progress):  # noqa: ARG001 (the run it stands for)
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise ImportError("vtkCommonCore: initialization failed") from interrupt

    monkeypatch.setattr(pipeline, "run", interrupted_import)
    ct, labels = write_block(tmp_path)
    code, _, err = run(capsys, "calcium", ct, "--labels", labels, "-o", tmp_path / "out")
    assert code == 3 and _error_line(err) == "cardioquant: interrupted; nothing was written"
    assert not (tmp_path / "out").exists()


def test_ctrl_c_while_the_command_line_loads_ends_in_one_line(capsys, monkeypatch):
    """The entry point imports the command line itself: Ctrl-C during start-up is one line, not a traceback."""
    from cardioquant import cli, launcher

    def interrupted(argv=None):  # noqa: ARG001 (the command line it stands for)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "main", interrupted)
    assert launcher.main() == 3
    assert capsys.readouterr().err.strip() == "cardioquant: interrupted; nothing was written"


def test_a_command_loads_its_own_analysis_only_and_the_help_lists_all_four(capsys):
    """Each analysis's options come from its pipeline, whose import brings SciPy and more: the scar command loads
    the scar pipeline and no other (a fresh interpreter); the command list still names every analysis."""
    code = ("import sys; from cardioquant import cli; options = cli.build_parser('scar').parse_args("
            "['scar', 'lge.nii.gz', '-o', 'out', '--min-scar-ml', '0']); "
            "print(options.min_scar_ml, sorted(m for m in sys.modules if m.endswith('.pipeline')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split(" ", 1) == ["0.0", "['cardioquant.scar.pipeline']\n"]
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("calcium", "scar", "bmd", "ffr", "batch", "demo"))


@pytest.mark.parametrize("left_to_the_system", [False, True])
def test_a_command_ends_without_pythons_last_collection_walking_every_object(left_to_the_system):
    """With PyTorch, VTK and Matplotlib loaded, Python's last garbage collection at exit took 0.7-2 s on the
    benchmark machine. The command leaves its objects to the operating system: a cycle still alive at exit is not
    collected (its finalizer does not run), where a plain Python process collects it."""
    leave = "launcher.leave_objects_to_the_system_at_exit(); " if left_to_the_system else ""
    code = ("from cardioquant import launcher\n"
            "class Cycle:\n"
            "    def __del__(self): print('collected at exit', flush=True)\n"
            f"{leave}\n"
            "cycle = Cycle(); cycle.me = cycle\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ("collected at exit" in done.stdout) is not left_to_the_system


def test_the_runs_warnings_are_printed_on_its_report_below_everything_else(capsys, tmp_path, monkeypatch):
    """What the JSON warns of, the one-page report says too (a reader may see only the page): every warning, in
    full, in a block at the foot of the page that no figure, table or text of the report overlaps."""
    from cardioquant import report

    pages, original = [], report.save_page
    monkeypatch.setattr(report, "save_page", lambda figure, path, warnings=(): original(figure, path, warnings)
                        or pages.append(figure))
    ct, labels = write_block(tmp_path)
    assert run(capsys, "calcium", ct, "--labels", labels, "-o", tmp_path / "out", "--quiet")[0] == 0
    warnings = json.loads((tmp_path / "out" / "calcium.json").read_text())["warnings"]
    assert warnings and len(pages) == 1
    block = next(text for text in pages[0].texts if text.get_text().startswith("Warnings"))
    assert block.get_text().replace("\n  ", " ").count("\n- ") == len(warnings)
    for warning in warnings:
        assert warning in block.get_text().replace("\n  ", " ")
    top_of_block = block.get_position()[1]
    assert all(ax.get_position().y0 >= top_of_block for ax in pages[0].axes)
    assert all(text.get_position()[1] > top_of_block for text in pages[0].texts if text is not block)


@pytest.mark.parametrize("line", ["2:0:5,99:100", "2:0", "2:0,2:100", "2:zero,99:100", "2:0,nan:100"])
def test_a_phantom_line_that_is_not_two_points_is_refused_before_the_scan_is_read(capsys, tmp_path, monkeypatch,
                                                                                    line):
    """--phantom fits BMD = a x HU + b through the scanner's phantom: two or more HU:density pairs at different HU.
    Anything else is exit 2 with one line naming the option, before the scan is read or a vertebra searched for."""
    from cardioquant.bmd import pipeline

    monkeypatch.setattr(pipeline, "read_input", lambda *_: pytest.fail("the scan was read"))
    code, _, err = run(capsys, "bmd", pipeline.sample_input(), "-o", tmp_path / "out", "--phantom", line)
    assert code == 2 and _error_line(err).startswith(f"cardioquant: error: --phantom '{line}' must be two or more")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("module", "option"), [("calcium", "--labels"), ("calcium", "--roi"), ("calcium", "--heart-mask"),
                                                ("calcium", "--lumen-mask"), ("bmd", "--vertebra-mask"),
                                                ("bmd", "--vertebra-body-mask"), ("scar", "--myocardium-mask"),
                                                ("scar", "--remote-mask"), ("ffr", "--lumen-mask"), ("ffr", "--centerlines"),
                                                ("scar", "--weights")])
def test_an_option_naming_a_file_that_is_not_there_is_refused_before_any_work(capsys, tmp_path, monkeypatch, module,
                                                                              option):
    """A mistyped mask or weights path is one line naming the option, exit 2, before the scan is read: a remote
    myocardium ROI read after the networks' minutes is no place to find a typo."""
    from cardioquant import pipelines

    monkeypatch.setattr(pipelines.get(module), "read_input", lambda *_: pytest.fail("the scan was read"))
    missing = tmp_path / "no_such_mask.nii.gz"
    code, _, err = run(capsys, module, tmp_path / "scan.nrrd", "-o", tmp_path / "out", option, missing)
    assert code == 2 and _error_line(err) == f"cardioquant: error: {option} {missing}: no such file or folder; check the path."
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("arguments", "said"), [
    (["calcium", "--calibration-rod-mask", "{rod}"], "--calibration-rod-mask and --water-mask go together"),
    (["calcium", "--water-mask", "{rod}"], "--calibration-rod-mask and --water-mask go together"),
    (["calcium", "--calibration-rod-mask", "{rod}", "--water-mask", "{rod}", "--mass-calibration", "0.0008"],
     "--mass-calibration and the calibration rod's masks both set"),
    (["bmd", "--levels", "L1,L9"], "--levels L1,L9: L9 is not a vertebral level"),
])
def test_options_that_cannot_be_read_together_are_refused_before_any_work(capsys, tmp_path, monkeypatch, arguments, said):
    """A rod mask without the water ROI it is read against (or with a factor given as well), and a level that is not
    one, are refused in one line before the scan is read; before, the rod was silently passed over and the level
    looked for after the vertebrae were found."""
    from cardioquant import pipelines

    rod = tmp_path / "rod.nrrd"
    rod.write_bytes(b"")
    monkeypatch.setattr(pipelines.get(arguments[0]), "read_input", lambda *_: pytest.fail("the scan was read"))
    code, _, err = run(capsys, arguments[0], tmp_path / "scan.nrrd", "-o", tmp_path / "out",
                       *[a.format(rod=rod) for a in arguments[1:]])
    assert code == 2 and said in _error_line(err)


def test_a_mask_on_another_grid_than_the_scan_is_said_to_have_been_resampled(capsys, tmp_path):
    """Artery labels drawn on the scan, even cropped to their extent as Slicer saves a segmentation, share its voxel
    lattice and score as drawn (Agatston 22, no warning). The same labels on a coarser grid, as a mask of another
    scan would be, are resampled onto the scan and the result says so, naming the option and both grids."""
    import SimpleITK as sitk

    ct, labels = write_block(tmp_path)
    drawn = sitk.ReadImage(labels)
    cropped = tmp_path / "cropped.nrrd"
    sitk.WriteImage(drawn[2:-2, 2:-2, 1:], str(cropped))
    coarser = tmp_path / "coarser.nrrd"
    spacing = [2 * s for s in drawn.GetSpacing()]
    size = [max(1, n // 2) for n in drawn.GetSize()]
    sitk.WriteImage(sitk.Resample(drawn, size, sitk.Transform(), sitk.sitkNearestNeighbor, drawn.GetOrigin(), spacing,
                                  drawn.GetDirection()), str(coarser))
    for mask, out in ((cropped, "on_the_scan"), (coarser, "coarser")):
        assert run(capsys, "calcium", ct, "--labels", mask, "-o", tmp_path / out, "--quiet")[0] == 0
    on_the_scan = json.loads((tmp_path / "on_the_scan" / "calcium.json").read_text())
    assert on_the_scan["total"]["agatston"] == pytest.approx(22.0)
    assert not any("another grid" in w for w in on_the_scan["warnings"])
    said = [w for w in json.loads((tmp_path / "coarser" / "calcium.json").read_text())["warnings"] if "another grid" in w]
    assert len(said) == 1 and said[0].startswith("--labels coarser.nrrd is on another grid than the scan (")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="transparent huge pages are Linux's")
def test_numpy_uses_small_pages_in_cardioquants_own_processes_only():
    """A process that loads CardioQuant before NumPy (the command line, the panels' background run, cohort workers)
    asks NumPy not to mark its large arrays for transparent huge pages (their first touch stalled the benchmark
    machine: cardioquant.__init__); a value the user set is kept, and a process that loaded NumPy first (Slicer,
    a notebook) is left as it is."""
    import os

    def huge_pages(code: str, **environment) -> str:
        env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"} | environment
        return subprocess.run([sys.executable, "-c", f"{code}; print(np._core.multiarray._get_madvise_hugepage())"],
                              capture_output=True, text=True, check=True, env=env).stdout.strip()

    assert huge_pages("import cardioquant, numpy as np") == "False"
    assert huge_pages("import cardioquant, numpy as np", NUMPY_MADVISE_HUGEPAGE="1") == "True"
    assert huge_pages("import numpy as np, cardioquant") == huge_pages("import numpy as np")
