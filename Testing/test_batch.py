"""`cardioquant batch` on a LocalCluster of 2 workers, with a cohort of generated studies of known answers: the
hand-worked block phantom (LAD 16 + RCA 6 = Agatston 22 at 120 kV) with its label map, the spine phantom with its
vertebra labels, a corrupt file, a study that never finishes (a named pipe: reading it blocks for ever), and a
missing file."""

import csv
import json
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from cardioquant import cli
from cardioquant.batch import engine, studies
from cardioquant.calcium.phantom import write_block_phantom
from cardioquant.pipelines import get


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    for name in ("a", "b"):
        (root / name).mkdir()
        write_block_phantom(root / name)
    bmd_sample = get("bmd").sample_input()
    shutil.copy(bmd_sample, root / "spine.nrrd")
    shutil.copy(bmd_sample.with_name("spine_phantom_vertebrae.nrrd"), root / "spine_vertebrae.nrrd")
    (root / "corrupt.nrrd").write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 9 9 9\n\nnot pixels")
    os.mkfifo(root / "hangs.nrrd")
    rows = [("A", "a/ct.nrrd", "a/labels.nrrd", "", ""), ("B", "b/ct.nrrd", "b/labels.nrrd", "80", ""),
            ("spine", "spine.nrrd", "", "", "spine_vertebrae.nrrd"), ("corrupt", "corrupt.nrrd", "", "", ""),
            ("hangs", "hangs.nrrd", "", "", "")]
    with open(root / "cohort.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "path", "labels", "kvp", "vertebra_mask"])
        for study, path, labels, kvp, vertebrae in rows:
            writer.writerow([study, path, str(root / labels) if labels else "", kvp,
                             str(root / vertebrae) if vertebrae else ""])
    return root


def _batch(cohort, out, *more):
    return cli.main(["batch", str(cohort / "cohort.csv"), "-o", str(out), "--analyses", "calcium,bmd",
                     "--workers", "2", "--timeout", "15", "--retries", "1", "--quiet", "--device", "cpu", *more])


def _table(out):
    with open(out / "cohort.csv", newline="") as handle:
        return {(row["study"], row["analysis"]): row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def first_run(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "out"
    code = _batch(cohort, out)
    return code, out


def test_cohort_table_equals_the_single_study_results(first_run, cohort, tmp_path):
    code, out = first_run
    table = _table(out)
    assert code == 3  # some studies failed; the others are done and in the table
    assert table[("A", "calcium")]["status"] == "done"
    assert float(table[("A", "calcium")]["agatston_total"]) == pytest.approx(22.0)  # worked by hand
    assert float(table[("A", "calcium")]["agatston_LAD"]) == pytest.approx(16.0)
    assert table[("spine", "bmd")]["status"] == "done"
    for study, analysis, extra in (("B", "calcium", ["--labels", str(cohort / "b" / "labels.nrrd"), "--kvp", "80"]),
                                   ("spine", "bmd", ["--vertebra-mask", str(cohort / "spine_vertebrae.nrrd")])):
        single = tmp_path / f"{study}-{analysis}"
        source = {"B": cohort / "b" / "ct.nrrd", "spine": cohort / "spine.nrrd"}[study]
        assert cli.main([analysis, str(source), "-o", str(single), "--quiet", "--device", "cpu", *extra]) == 0
        expected = json.loads((single / f"{analysis}.json").read_text())
        row = table[(study, analysis)]
        if analysis == "calcium":
            assert float(row["agatston_total"]) == pytest.approx(expected["total"]["agatston"])
            assert row["risk_category"] == expected["risk"]["classic"]
        else:
            assert float(row["bmd_mg_cm3"]) == pytest.approx(expected["patient"]["bmd_mg_cm3"])
            assert row["acr_category"] == expected["patient"]["acr_category"]
        # the study folder holds exactly what the single-study command writes
        assert sorted(p.name for p in (out / study / analysis).iterdir()) == sorted(p.name for p in single.iterdir())


def test_bad_and_hung_studies_fail_alone_with_their_reasons(first_run):
    _, out = first_run
    table = _table(out)
    assert table[("corrupt", "calcium")]["status"] == "failed" and "cannot read" in table[("corrupt", "calcium")]["error"]
    assert table[("hangs", "calcium")]["status"] == "failed" and "timed out after 15 s" in table[("hangs", "calcium")]["error"]
    assert table[("spine", "calcium")]["status"] == "failed"  # no heart in a spine phantom: one line, exit 2
    assert "no heart" in table[("spine", "calcium")]["error"]
    with sqlite3.connect(out / "ledger.sqlite") as ledger:
        attempts = dict(ledger.execute("SELECT study || '/' || analysis, attempts FROM runs").fetchall())
    assert attempts["hangs/calcium"] == 2 and attempts["corrupt/calcium"] == 1  # only a crash or time-out is retried
    assert not any((out / ".staging").iterdir())


def test_a_rerun_skips_what_is_done_and_finishes_the_rest(first_run, cohort):
    _, out = first_run
    done = out / "A" / "calcium" / "calcium.json"
    before = done.stat().st_mtime_ns
    with sqlite3.connect(out / "ledger.sqlite") as ledger:  # a run killed while B was being scored
        ledger.execute("UPDATE runs SET status = 'running' WHERE study = 'B' AND analysis = 'calcium'")
    shutil.rmtree(out / "B" / "calcium")
    (out / ".staging" / "B-calcium-dead").mkdir()  # what the killed run left half-written
    assert _batch(cohort, out, "--timeout", "10", "--retries", "0") == 3  # the hung study still fails
    assert done.stat().st_mtime_ns == before  # finished studies untouched
    table = _table(out)
    assert table[("B", "calcium")]["status"] == "done" and (out / "B" / "calcium" / "calcium.json").exists()
    assert not (out / ".staging" / "B-calcium-dead").exists()
    assert not list((out / "A").glob("calcium.previous-*"))


def test_a_killed_engine_loses_only_its_study(tmp_path):
    """A crash inside compiled code, or a kill, ends the engine process; the study is reported crashed and the
    next study gets a fresh engine."""
    os.mkfifo(tmp_path / "hangs.nrrd")
    worker_engine = engine.Engine()
    killer = threading.Timer(3.0, lambda: os.kill(worker_engine.process.pid, 9))
    killer.start()
    started = time.perf_counter()
    code, message = worker_engine.run(["calcium", str(tmp_path / "hangs.nrrd"), "-o", str(tmp_path / "o"), "--quiet"],
                                      timeout=60.0)
    assert code == 134 and "killed by signal 9" in message and time.perf_counter() - started < 30
    paths = write_block_phantom(tmp_path)
    fresh = engine.Engine()
    code, message = fresh.run(["calcium", paths[0], "--labels", paths[1], "-o", str(tmp_path / "ok"), "--quiet"], 120.0)
    fresh.stop()
    assert code == 0 and json.loads((tmp_path / "ok" / "calcium.json").read_text())["total"]["agatston"] == 22.0


def test_folder_tree_studies_are_every_image_and_dicom_series(tmp_path):
    import numpy as np
    from dicom_factory import write_ct_series

    write_block_phantom(tmp_path)
    (tmp_path / "labels.nrrd").unlink()
    write_ct_series(tmp_path / "patient1" / "study" / "series1", np.zeros((3, 8, 8)))
    write_ct_series(tmp_path / "patient1" / "study" / "series2", np.zeros((4, 8, 8)))
    found = studies.discover(tmp_path)
    assert sorted(s.path for s in found) == sorted([str(tmp_path / "ct.nrrd"),
                                                    str(tmp_path / "patient1" / "study" / "series1"),
                                                    str(tmp_path / "patient1" / "study" / "series2")])
    assert all(s.series for s in found if "patient1" in s.path) and len({s.id for s in found}) == 3
    shutil.copy(tmp_path / "ct.nrrd", tmp_path / "ct_heart.seg.nrrd")  # a reader's segmentation saved beside it
    left_out: list[str] = []
    assert len(studies.discover(tmp_path, left_out=left_out)) == 3
    assert left_out == [f"{tmp_path / 'ct_heart.seg.nrrd'} (a Slicer segmentation, not a scan)"]
    (tmp_path / "out" / "ct" / "calcium").mkdir(parents=True)  # a batch's own results inside the tree
    shutil.copy(tmp_path / "ct.nrrd", tmp_path / "out" / "ct" / "calcium" / "calcium_labels.nrrd")
    assert len(studies.discover(tmp_path, output=tmp_path / "out")) == 3


def test_a_cohort_of_links_to_stored_scans_has_one_study_per_scan(tmp_path):
    """A cohort folder of links to each patient's stored data: every scan behind a link is a study, and its
    fingerprint (a rerun's test of whether it changed) reads the files behind the link."""
    import numpy as np
    from dicom_factory import write_ct_series

    write_ct_series(tmp_path / "store" / "p1" / "series", np.zeros((3, 8, 8)))
    (tmp_path / "store" / "p2").mkdir()
    write_block_phantom(tmp_path / "store" / "p2")
    (tmp_path / "store" / "p2" / "labels.nrrd").unlink()
    (tmp_path / "cohort").mkdir()
    for patient in ("p1", "p2"):
        (tmp_path / "cohort" / patient).symlink_to(tmp_path / "store" / patient)
    found = studies.discover(tmp_path / "cohort")
    assert sorted(Path(s.path).relative_to(tmp_path / "cohort").parts[0] for s in found) == ["p1", "p2"]
    dicom = next(s for s in found if s.series)
    before = dicom.fingerprint()
    (tmp_path / "store" / "p1" / "series" / "extra.dcm").write_bytes(b"changed")
    assert dicom.fingerprint() != before


def test_the_cohort_table_leaves_the_left_main_blank_where_the_automatic_path_scored_it_with_the_lad():
    """An automatic run's LM is scored with the LAD (its JSON says so): the cohort row leaves agatston_LM empty and
    names where it went, rather than a 0 that reads as no left-main calcium; a reader-labelled LM keeps its figure."""
    from cardioquant.batch.runner import headline

    def summary(left_main):
        return {"total": {"agatston": 40.0, "volume_mm3": 30.0}, "risk": {"classic": "11-100", "cac_drs": "A1/N1"},
                "mode": "noncontrast", "arteries": {"LM": left_main, "LAD": {"agatston": 40.0}, "LCX": {"agatston": 0.0},
                                                    "RCA": {"agatston": 0.0}}}

    automatic = headline("calcium", summary({"agatston": 0.0, "scored_with": "LAD"}))
    assert automatic["agatston_LM"] is None and automatic["LM_scored_with"] == "LAD"
    assert automatic["agatston_LAD"] == 40.0
    labelled = headline("calcium", summary({"agatston": 12.0}))
    assert labelled["agatston_LM"] == 12.0 and "LM_scored_with" not in labelled


def test_a_calcium_study_exported_with_its_topogram_and_dose_report_is_one_study(tmp_path):
    """Each patient's study as a PACS exports it: the scan, a one-image topogram and a one-image dose report. One
    study per patient (the scan); the other two are left out and named. A patient folder with only a topogram
    (no volume beside it) keeps it as a study: it is refused when run, with its reason."""
    import numpy as np
    from dicom_factory import write_ct_series

    for patient in ("p1", "p2"):
        study = tmp_path / patient / "study"
        write_ct_series(study / "scan", np.zeros((5, 8, 8)))
        write_ct_series(study / "topogram", np.zeros((1, 8, 8)), origin=(0, 0, 300))
        write_ct_series(study / "dose", np.zeros((1, 8, 8)), origin=(0, 0, 500))
    write_ct_series(tmp_path / "p3" / "study" / "topogram", np.zeros((1, 8, 8)))
    left_out: list[str] = []
    found = studies.discover(tmp_path, left_out=left_out)
    assert sorted(Path(s.path).relative_to(tmp_path).as_posix() for s in found) == [
        "p1/study/scan", "p2/study/scan", "p3/study/topogram"]
    assert len(left_out) == 4


def test_an_lge_stack_stored_one_series_per_slice_is_one_study_read_whole(tmp_path):
    """An exam folder with a short-axis LGE stack stored one series per breath-hold, a single slice of another grid
    (a localizer) and a multi-slice series: two studies, the stack one of them, which the scar command reads
    whole (its myocardium on every slice) from the UIDs the study names; the localizer is left out and named."""
    import numpy as np
    import SimpleITK as sitk
    from dicom_factory import write_ct_series
    from pydicom.uid import generate_uid

    from cardioquant.scar.phantom import make_lge_phantom
    from cardioquant.scar.pipeline import read_input

    exam = tmp_path / "patient1" / "exam"
    case = make_lge_phantom(slices=4, noise=3.0)
    frame, study = generate_uid(), generate_uid()
    for k in range(4):
        write_ct_series(exam / f"lge_{k}", case.signal[k:k + 1], spacing=(1.5, 1.5, 8.0), kvp=None, modality="MR",
                        rescale_intercept=0.0, z_positions=[8.0 * k], frame_uid=frame, study_uid=study)
    write_ct_series(exam / "localizer", np.zeros((1, 32, 32)), kvp=None, modality="MR", rescale_intercept=0.0,
                    frame_uid=frame, study_uid=study)
    write_ct_series(exam / "cine", np.zeros((3, 16, 16)), kvp=None, modality="MR", rescale_intercept=0.0,
                    frame_uid=frame, study_uid=study)
    left_out: list[str] = []
    found = studies.discover(tmp_path, left_out=left_out)
    assert len(found) == 2 and len(left_out) == 1 and left_out[0].startswith(str(exam / "localizer"))
    stack = next(s for s in found if s.series and s.series.count(",") == 3)
    assert stack.path == str(exam) and "stack of 4 single-slice series" in stack.description
    stacked = sitk.GetArrayFromImage(read_input(stack.path, stack.series).image)
    assert np.array_equal(stacked, np.clip(case.signal, 0, None).astype(np.uint16))  # every slice, in slice order


def test_a_dicom_file_gdcm_cannot_parse_does_not_stop_a_cohort_search_and_is_named(tmp_path):
    """A cohort tree in which one exam folder holds an RT Dose object GDCM cannot parse beside its scan: every
    scan is still a study (that exam's too), and the object is named as left out."""
    import numpy as np
    from dicom_factory import write_ct_series, write_one_frame_rt_dose

    for patient in ("p1", "p2"):
        write_ct_series(tmp_path / patient / "study" / "scan", np.zeros((3, 8, 8)))
    dose = write_one_frame_rt_dose(tmp_path / "p2" / "study" / "scan" / "RD.dcm")
    from cardioquant.batch.runner import build_parser, prepare

    options, passed_on = build_parser().parse_known_args([str(tmp_path), "-o", str(tmp_path / "out"),
                                                          "--analyses", "calcium"])
    plan = prepare(options, passed_on)
    assert sorted(Path(s.path).relative_to(tmp_path).as_posix() for s in plan["studies"]) == [
        "p1/study/scan", "p2/study/scan"]
    assert plan["unreadable"] == [str(dose)] and plan["left_out"] == []


def test_a_segmentation_exported_with_a_study_is_no_study_of_its_own(tmp_path):
    import numpy as np
    from dicom_factory import write_ct_series
    from test_scene_geometry import TABLE

    from cardioquant.dicomseg import export_dicom_seg
    from cardioquant.imageio import read_image

    write_ct_series(tmp_path / "p1" / "study" / "ct", np.full((6, 10, 12), -1000.0))
    label = np.zeros((6, 10, 12), np.uint8)
    label[1:5, 2:5, 3:7] = 2
    (tmp_path / "p1" / "study" / "seg").mkdir()
    export_dicom_seg(label, TABLE, read_image(tmp_path / "p1").source_files, tmp_path / "p1" / "study" / "seg" / "s.dcm",
                     "CalciumScoring")
    left_out: list[str] = []
    found = studies.discover(tmp_path, left_out=left_out)
    assert [Path(s.path).relative_to(tmp_path).as_posix() for s in found] == ["p1/study/ct"]
    assert len(left_out) == 1 and "SEG" in left_out[0] and "not a scan" in left_out[0]


def test_bad_batch_options_are_refused_before_any_work(tmp_path, capsys):
    write_block_phantom(tmp_path)
    code = cli.main(["batch", str(tmp_path), "-o", str(tmp_path / "out"), "--analyses", "calcium,bones"])
    assert code == 2 and "--analyses" in capsys.readouterr().err
    code = cli.main(["batch", str(tmp_path), "-o", str(tmp_path / "out"), "--analyses", "calcium", "--kvp", "-5"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "ledger.sqlite").exists()
    assert Path(tmp_path / "ct.nrrd").exists()


def test_a_killed_worker_is_replaced_and_its_study_not_duplicated(tmp_path):
    """The Dask worker running a study is killed (SIGKILL) mid-run: Dask replaces it and runs the study again
    on the new worker; the other study is written exactly once and the batch still ends with its table."""
    import subprocess
    import sys

    import psutil

    write_block_phantom(tmp_path)
    os.mkfifo(tmp_path / "hangs.nrrd")
    with open(tmp_path / "cohort.csv", "w") as handle:
        handle.write(f"id,path,labels\nhangs,hangs.nrrd,\ngood,ct.nrrd,{tmp_path / 'labels.nrrd'}\n")
    out = tmp_path / "out"
    batch = subprocess.Popen([sys.executable, "-m", "cardioquant.cli", "batch", str(tmp_path / "cohort.csv"), "-o",
                              str(out), "--analyses", "calcium", "--workers", "1", "--timeout", "12", "--retries",
                              "0", "--quiet"], stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.time() + 60
    while killed is None and time.time() < deadline:
        time.sleep(0.5)
        engines = [p for p in psutil.Process(batch.pid).children(recursive=True)
                   if "cardioquant.batch.engine" in " ".join(p.cmdline())]
        if engines:
            worker = engines[0].parent()
            time.sleep(2.0)  # the engine has taken its first study
            worker.kill()
            killed = worker.pid
    _, err = batch.communicate(timeout=240)
    assert killed is not None, "no engine started"
    table = _table(out)
    assert table[("good", "calcium")]["status"] == "done"
    assert float(table[("good", "calcium")]["agatston_total"]) == pytest.approx(22.0)
    assert table[("hangs", "calcium")]["status"] == "failed"
    assert [p.name for p in (out / "good").iterdir()] == ["calcium"]  # once: no second copy, no backup
    assert "1 done" in err and "1 failed" in err
