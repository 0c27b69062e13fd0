"""CalciumScoring end to end through the command line: exact scores on voxel-built phantoms, the output
contract, semi-automatic label maps, and refusal of unsuitable input."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_factory import write_ct_series

from cardioquant import cli, scene
from cardioquant.calcium.phantom import block_phantom
from cardioquant.calcium.pipeline import LABEL_TABLE


def chest(shape=(8, 64, 64)):
    """Air outside a soft-tissue body: enough anatomy for the CT plausibility check, nothing above 130 HU."""
    hu = np.full(shape, -1000.0, np.float32)
    hu[:, 4:60, 4:60] = 40.0
    return hu


def write(path, array, spacing=(0.5, 0.5, 3.0), origin=(0.0, 0.0, 0.0), meta=None, direction=None):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    for key, value in (meta or {}).items():
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(path), True)
    return path


def run(capsys, *args):
    code = cli.main([str(a) for a in args] + ["--quiet"])
    return code, capsys.readouterr()


@pytest.fixture
def semi_auto_case(tmp_path):
    """LAD 2x4x2 block at 400 HU: 8 px x 0.25 mm2 = 2 mm2 per slice, weight 4, 2 slices -> 16.
    RCA 3x4 at 250 HU: 12 px = 3 mm2, weight 2 -> 6. A 900 HU candidate no label covers (e.g. a valve)."""
    image, labels = block_phantom()
    image.SetMetaData("modality", "CT")
    image.SetMetaData("kvp", "120")
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"), True)
    sitk.WriteImage(labels, str(tmp_path / "labels.nrrd"), True)
    return tmp_path / "ct.nrrd", tmp_path / "labels.nrrd"


def test_semi_automatic_scores_are_exact(capsys, tmp_path, semi_auto_case):
    image, label_path = semi_auto_case
    code, _ = run(capsys, "calcium", image, "--labels", label_path, "-o", tmp_path / "out", "--mode", "noncontrast")
    assert code == 0
    result = json.loads((tmp_path / "out" / "calcium.json").read_text())
    assert result["total"]["agatston"] == pytest.approx(22.0)  # 3 mm slices: increment factor 1
    assert result["arteries"]["LAD"]["agatston"] == pytest.approx(16.0)
    assert result["arteries"]["RCA"]["agatston"] == pytest.approx(6.0)
    assert result["arteries"]["LAD"]["volume_mm3"] == pytest.approx(16 * 0.75)
    assert result["total"]["mass_mg"] is None
    assert result["risk"] == {"classic": "11-100", "cac_drs": "A1/N2"}
    assert [les["artery"] for les in result["lesions"]] == ["LAD", "RCA"]
    assert result["lesions"][0]["slices"] == [2, 3] and result["lesions"][0]["peak_hu"] == 400
    assert set(result["settings"]) >= {"kvp", "min_area_mm2", "connectivity", "increment_factor"}
    assert result["versions"]["cardioquant"] and result["input"]["voxels_sha256"]
    label_map = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "calcium_labels.nrrd")))
    assert int((label_map == 2).sum()) == 16 and int((label_map == 4).sum()) == 12
    assert label_map[6, 50, 50] == 5  # a candidate no label covers is not coronary
    csv = (tmp_path / "out" / "calcium.csv").read_text().splitlines()
    assert csv[0].startswith('"artery","agatston"') and csv[-1].startswith('"total",22')
    assert "nan" not in "".join(csv)  # no mass calibration: the mass cells are empty, as the JSON's null
    assert (tmp_path / "out" / "calcium_report.png").stat().st_size > 10_000


def test_output_labels_rerun_reproduces_scores(capsys, tmp_path, semi_auto_case):
    """The label map we write, fed back as --labels (what a user does after editing), gives the same scores."""
    image, label_path = semi_auto_case
    run(capsys, "calcium", image, "--labels", label_path, "-o", tmp_path / "a", "--mode", "noncontrast")
    run(capsys, "calcium", image, "--labels", tmp_path / "a" / "calcium_labels.nrrd", "-o", tmp_path / "b",
        "--mode", "noncontrast")
    a, b = (json.loads((tmp_path / d / "calcium.json").read_text()) for d in ("a", "b"))
    assert a["arteries"] == b["arteries"] and a["total"] == b["total"]


def test_segmentation_output_has_named_segments(capsys, tmp_path, semi_auto_case):
    image, label_path = semi_auto_case
    run(capsys, "calcium", image, "--labels", label_path, "-o", tmp_path / "out", "--mode", "noncontrast")
    seg = scene.load_segmentation(scene.new_scene(), tmp_path / "out" / "calcium.seg.nrrd")
    assert sorted(scene.segment_names(seg)) == sorted(s.name for s in LABEL_TABLE.segments)


def test_mass_with_given_calibration(capsys, tmp_path, semi_auto_case):
    image, label_path = semi_auto_case
    run(capsys, "calcium", image, "--labels", label_path, "-o", tmp_path / "out", "--mode", "noncontrast",
        "--mass-calibration", "0.00075")
    result = json.loads((tmp_path / "out" / "calcium.json").read_text())
    lad_mass = 0.00075 * 400 * 16 * 0.75  # c x HU x voxel volume, summed over 16 voxels
    assert result["arteries"]["LAD"]["mass_mg"] == pytest.approx(lad_mass)


def test_kvp_from_dicom_sets_thresholds(capsys, tmp_path):
    hu = chest()
    hu[3, 20:24, 20:24] = 150  # above the 100 kVp threshold (145), weight 1
    write_ct_series(tmp_path / "dicom", hu, spacing=(0.5, 0.5, 3.0), kvp=100)
    labels = np.zeros(hu.shape, np.uint8)
    labels[3, 18:26, 18:26] = 3
    write(tmp_path / "labels.nrrd", labels)
    code, _ = run(capsys, "calcium", tmp_path / "dicom", "--labels", tmp_path / "labels.nrrd", "-o", tmp_path / "out",
                  "--mode", "noncontrast")
    result = json.loads((tmp_path / "out" / "calcium.json").read_text())
    assert code == 0 and result["kvp"] == 100 and result["threshold"]["threshold_hu"] == 145
    assert result["arteries"]["LCX"]["agatston"] == pytest.approx(4.0)
    assert not result["warnings"]


def test_missing_kvp_defaults_to_120_with_warning(capsys, tmp_path, semi_auto_case):
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(semi_auto_case[0])))
    image = write(tmp_path / "nokvp.nrrd", hu)
    run(capsys, "calcium", image, "--labels", semi_auto_case[1], "-o", tmp_path / "out", "--mode", "noncontrast")
    result = json.loads((tmp_path / "out" / "calcium.json").read_text())
    assert result["kvp"] == 120 and any("KVP" in w for w in result["warnings"])


def test_mr_is_refused(capsys, tmp_path):
    image = write(tmp_path / "mr.nrrd", chest(), meta={"modality": "MR"})
    code, captured = run(capsys, "calcium", image, "-o", tmp_path / "out")
    assert code == 2 and "needs CT; this series is MR" in captured.err


def test_non_hu_data_is_refused(capsys, tmp_path):
    image = write(tmp_path / "raw.nrrd", np.random.default_rng(0).uniform(0, 4000, (8, 64, 64)).astype(np.float32))
    code, captured = run(capsys, "calcium", image, "-o", tmp_path / "out")
    assert code == 2 and "Hounsfield" in captured.err


def test_oblique_volume_is_refused(capsys, tmp_path):
    tilt = sitk.VersorTransform((1, 0, 0), 0.35).GetMatrix()
    image = write(tmp_path / "oblique.nrrd", chest(), direction=tilt)
    code, captured = run(capsys, "calcium", image, "-o", tmp_path / "out")
    assert code == 2 and "not axial" in captured.err


def test_tiny_volume_is_refused(capsys, tmp_path):
    image = write(tmp_path / "tiny.nrrd", chest(shape=(2, 64, 64)))
    code, captured = run(capsys, "calcium", image, "-o", tmp_path / "out")
    assert code == 2 and "too small" in captured.err


def test_cta_mode_without_contrast_is_refused(capsys, tmp_path, semi_auto_case):
    code, captured = run(capsys, "calcium", semi_auto_case[0], "--labels", semi_auto_case[1], "-o", tmp_path / "out",
                         "--mode", "cta")
    assert code == 2 and "does not look like a contrast CTA" in captured.err


def test_reassigning_a_lesion_moves_its_score(semi_auto_case):
    from cardioquant.calcium.pipeline import reassign_lesion, rescore

    image = sitk.ReadImage(str(semi_auto_case[0]))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(semi_auto_case[1])))
    hu = sitk.GetArrayFromImage(image)
    labels = np.where(hu >= 130, labels, 0).astype(np.uint8)
    before = rescore(image, labels)
    moved = reassign_lesion(labels, (2, 11, 10), 3)  # the LAD lesion becomes LCX
    after = rescore(image, moved)
    assert before["arteries"]["LAD"]["agatston"] == pytest.approx(16) and after["arteries"]["LAD"]["agatston"] == 0
    assert after["arteries"]["LCX"]["agatston"] == pytest.approx(16)
    assert after["total"]["agatston"] == pytest.approx(before["total"]["agatston"])
    assert rescore(image, reassign_lesion(labels, (2, 11, 10), 5))["total"]["agatston"] == pytest.approx(6)


def test_scene_workflow_edit_and_rescore(tmp_path):
    """What the Slicer module does, on real MRML nodes: load, run, segmentation node, user edit, rescore."""
    from cardioquant.calcium.phantom import write_block_phantom
    from cardioquant.calcium.pipeline import rescore, run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    mrml = scene.new_scene()
    ct_path, label_path = write_block_phantom(tmp_path)
    volume = scene.load_volume(mrml, ct_path)
    loaded = LoadedImage(image=scene.image_from_volume_node(volume), path="phantom", format="mrml")
    result = run(loaded, settings_for("calcium", labels=label_path, mode="noncontrast", kvp=120.0), Progress())
    segmentation = scene.segmentation_node_from_labelmap(mrml, result.label_image, volume, LABEL_TABLE, "cac")
    # The reader erases the RCA lesion in Segment Editor: export, edit, re-import as a fresh node.
    edited = scene.labelmap_from_segmentation_node(segmentation, volume, LABEL_TABLE)
    edited[edited == 4] = 0
    edited_node = scene.segmentation_node_from_labelmap(mrml, _like(edited, loaded.image), volume, LABEL_TABLE, "edited")
    scores = rescore(loaded.image, scene.labelmap_from_segmentation_node(edited_node, volume, LABEL_TABLE))
    assert result.summary["total"]["agatston"] == pytest.approx(22.0)
    assert scores["total"]["agatston"] == pytest.approx(16.0) and scores["arteries"]["RCA"]["lesions"] == 0


def _like(array, reference):
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def test_dicom_seg_written_for_dicom_input(capsys, tmp_path):
    import highdicom as hd

    image, labels = block_phantom()
    write_ct_series(tmp_path / "dicom", sitk.GetArrayFromImage(image), spacing=(0.5, 0.5, 3.0), kvp=120)
    sitk.WriteImage(labels, str(tmp_path / "labels.nrrd"))
    code, _ = run(capsys, "calcium", tmp_path / "dicom", "--labels", tmp_path / "labels.nrrd", "-o", tmp_path / "out",
                  "--mode", "noncontrast", "--dicom-seg")
    assert code == 0
    seg = hd.seg.segread(tmp_path / "out" / "calcium_seg.dcm")
    assert {seg.get_segment_description(n).segment_label for n in seg.segment_numbers} == {"LAD", "RCA", "not coronary"}


@pytest.mark.parametrize(("option", "value"), [("--kvp", "nan"), ("--kvp", "-120"), ("--kvp", "1e9"), ("--k", "-3"),
                                           ("--cta-scale", "-1"), ("--slice-increment", "0"),
                                           ("--mass-calibration", "-0.001"), ("--min-area", "-2")])
def test_out_of_range_options_are_refused_before_any_work(capsys, tmp_path, semi_auto_case, option, value):
    code, captured = run(capsys, "calcium", semi_auto_case[0], "--labels", semi_auto_case[1], "-o", tmp_path / "out",
                         "--mode", "noncontrast", f"{option}={value}")
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and option in lines[0] and "range" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("spacing", "words"), [((1e-6, 1e-6, 3.0), "pixel spacing"), ((0.5, 0.5, 50.0), "slice spacing")])
def test_impossible_spacing_is_refused(capsys, tmp_path, spacing, words):
    image, labels = block_phantom()
    image.SetSpacing(spacing)
    labels.SetSpacing(spacing)
    image.SetMetaData("modality", "CT")
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    sitk.WriteImage(labels, str(tmp_path / "labels.nrrd"))
    code, captured = run(capsys, "calcium", tmp_path / "ct.nrrd", "--labels", tmp_path / "labels.nrrd", "-o",
                         tmp_path / "out", "--mode", "noncontrast")
    assert code == 2 and words in captured.err and len(captured.err.strip().splitlines()) == 1


def test_thick_slices_are_scored_with_a_warning(capsys, tmp_path):
    image, labels = block_phantom()
    image.SetSpacing((0.5, 0.5, 5.0))
    labels.SetSpacing((0.5, 0.5, 5.0))
    image.SetMetaData("modality", "CT")
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    sitk.WriteImage(labels, str(tmp_path / "labels.nrrd"))
    code, _ = run(capsys, "calcium", tmp_path / "ct.nrrd", "--labels", tmp_path / "labels.nrrd", "-o", tmp_path / "out",
                  "--mode", "noncontrast")
    result = json.loads((tmp_path / "out" / "calcium.json").read_text())
    assert code == 0 and any("5 mm: Agatston is defined on 3 mm slices" in w for w in result["warnings"])


def test_rescore_right_after_a_cta_run_equals_the_run():
    """The panel re-scores the reader's edits with the run's own settings: right after a CTA run (adaptive
    threshold, Agatston-equivalent scale) the unedited segmentation gives the run's JSON figures, per artery.
    Scoring's defaults (120 kV, non-contrast) would give other figures."""
    from cardioquant.calcium import evaluation, phantom
    from cardioquant.calcium.pipeline import rescore
    from cardioquant.calcium.pipeline import run as run_calcium
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    case = phantom.make_cardiac_phantom(30510, spacing=(0.8, 0.8, 3.0), contrast=True, n_calcifications=8)
    loaded = evaluation.phantom_loaded(case)
    result = run_calcium(loaded, settings_for("calcium"), Progress())
    assert result.summary["mode"] == "cta" and result.summary["total"]["agatston"] > 0
    labels = sitk.GetArrayFromImage(result.label_image)
    again = rescore(loaded.image, labels, result.settings)
    assert again["total"]["agatston"] == pytest.approx(result.summary["total"]["agatston"])
    for artery, figures in result.summary["arteries"].items():
        assert again["arteries"][artery]["agatston"] == pytest.approx(figures["agatston"])
    assert again["risk"] == result.summary["risk"]
    defaults = rescore(loaded.image, labels)
    assert defaults["total"]["agatston"] != pytest.approx(result.summary["total"]["agatston"])


def test_the_automatic_path_says_the_left_main_is_scored_with_the_lad_until_the_reader_labels_it(tmp_path):
    """Position cannot tell the left main from the proximal LAD, so the automatic path scores LM calcium with the
    LAD: its LM row must say so ("with LAD"), not read as "no left-main calcium". Once the reader moves a lesion to
    LM, the LM figures are the reader's and are scored as such; a reader's label map is never marked."""
    from cardioquant.calcium import evaluation, phantom
    from cardioquant.calcium.pipeline import edited_result, reassign_lesion, summary_line
    from cardioquant.calcium.pipeline import run as run_calcium
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    case = phantom.make_cardiac_phantom(30510, spacing=(0.8, 0.8, 3.0), n_calcifications=8)
    loaded = evaluation.phantom_loaded(case)
    result = run_calcium(loaded, settings_for("calcium"), Progress())
    assert result.summary["arteries"]["LM"]["scored_with"] == "LAD"
    assert "LM with LAD" in summary_line(result)
    assert [row.get("scored_with") for row in result.table_rows] == ["LAD", None, None, None, None]  # LM..RCA, total

    labels = sitk.GetArrayFromImage(result.label_image)
    run_document = json.loads(json.dumps({**result.summary, "settings": result.settings, "warnings": []}))
    edited = edited_result(loaded, reassign_lesion(labels, tuple(np.argwhere(labels == 2)[0]), 1), run_document)
    left_main = edited.summary["arteries"]["LM"]
    assert "scored_with" not in left_main and left_main["agatston"] > 0 and left_main["lesions"] >= 1

    sitk.WriteImage(_like(case.truth_labels(), loaded.image), str(tmp_path / "labels.nrrd"))
    by_reader = run_calcium(loaded, settings_for("calcium", labels=str(tmp_path / "labels.nrrd")), Progress())
    assert "scored_with" not in by_reader.summary["arteries"]["LM"]


def test_a_dicom_seg_made_on_another_scan_is_refused_before_any_work(capsys, tmp_path):
    """A mask given as a DICOM SEG carries its Frame of Reference: made on another scan (another study of the
    patient, or another patient), its positions are not this series', even where the grids coincide. It is refused
    in one line that names the option, before the output folder is made; the same SEG on its own series is read."""
    from dicom_factory import write_seg

    image, labels = block_phantom()
    voxels, traced = sitk.GetArrayFromImage(image), (sitk.GetArrayFromImage(labels) > 0).astype(np.uint8)
    names = {1: LABEL_TABLE.by_value(1).name}  # every lesion traced as one artery
    this_scan = write_ct_series(tmp_path / "this", voxels, spacing=(0.5, 0.5, 3.0), kvp=120)
    other_scan = write_ct_series(tmp_path / "other", voxels, spacing=(0.5, 0.5, 3.0), kvp=120)
    own = write_seg(tmp_path / "own.dcm", this_scan, traced, names)
    other = write_seg(tmp_path / "other.dcm", other_scan, traced, names)
    code, captured = run(capsys, "calcium", tmp_path / "this", "--labels", other, "-o", tmp_path / "refused",
                         "--mode", "noncontrast")
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"cardioquant: error: --labels {other}: this DICOM "
                                                                  "SEG was made on another scan")
    assert not (tmp_path / "refused").exists()
    code, _ = run(capsys, "calcium", tmp_path / "this", "--labels", own, "-o", tmp_path / "out", "--mode", "noncontrast")
    assert code == 0


def test_the_dicom_seg_cardioquant_writes_scores_the_same_when_read_back_as_labels(capsys, tmp_path):
    """A reader edits CardioQuant's DICOM SEG in a PACS and scores it again: its segments are numbered 1..N as
    present (LAD 1, RCA 2, not coronary 3), not by the module's values (LM 1, LAD 2, ...). Read by their labels, the
    same per-artery Agatston comes back; read by their numbers the LAD had been scored as the LM and the RCA as the
    LAD."""
    image, labels = block_phantom()
    write_ct_series(tmp_path / "dicom", sitk.GetArrayFromImage(image), spacing=(0.5, 0.5, 3.0), kvp=120)
    sitk.WriteImage(labels, str(tmp_path / "labels.nrrd"))
    assert run(capsys, "calcium", tmp_path / "dicom", "--labels", tmp_path / "labels.nrrd", "-o", tmp_path / "first",
               "--mode", "noncontrast", "--dicom-seg")[0] == 0
    assert run(capsys, "calcium", tmp_path / "dicom", "--labels", tmp_path / "first" / "calcium_seg.dcm", "-o",
               tmp_path / "again", "--mode", "noncontrast")[0] == 0
    first, again = (json.loads((tmp_path / name / "calcium.json").read_text()) for name in ("first", "again"))
    assert first["arteries"] == again["arteries"] and first["arteries"]["LAD"]["agatston"] > 0
