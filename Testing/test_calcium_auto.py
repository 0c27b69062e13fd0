"""Automatic calcium path: heart anatomy, scan type, the fail-safe and artery assignment.

Truth comes from generated scans whose anatomy is known voxel by voxel (the cardiac phantom's lungs, heart and
coronary calcifications; the QRM insert with its calibration rod; a body with no lungs) and, where
../shared/data/coca is present, from the experts' per-artery traces on real gated scans.
"""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from cardioquant import cli, geometry
from cardioquant.calcium import anatomy, evaluation, phantom, qrm, territories
from cardioquant.calcium.pipeline import HEART_REGION, scan_type
from cardioquant.errors import InputError

COCA = Path(__file__).resolve().parents[2] / "shared" / "data" / "coca"


def _image(case):
    return evaluation.phantom_loaded(case).image


@pytest.fixture(scope="module")
def gated_pair():
    """The same anatomy and 8 calcifications without and with iodine (0.8 mm pixels, 3 mm slices)."""
    return [phantom.make_cardiac_phantom(30500, spacing=(0.8, 0.8, 3.0), contrast=c, n_calcifications=8)
            for c in (False, True)]


def test_heart_region_holds_every_coronary_calcification(gated_pair):
    case = gated_pair[0]
    heart = anatomy.find_heart(_image(case))
    coronary = (case.calcium_labels >= 1) & (case.calcium_labels <= 4)
    assert coronary.any() and heart.heart_region[coronary].all()
    assert heart.heart_region[case.hu < -400].mean() < 0.02  # lungs: only partial-volume edges of the 2 mm grid


def test_a_blank_slice_at_the_scans_end_changes_no_heart_region():
    """A volume resampled or padded may end with a slice of one value (-1024 throughout): no slice of the patient.
    Averaged into the 2 mm grid with the last real slice, it made that slice air from edge to edge, which joined
    the lungs to the air around the patient (the real chest CT resampled to 300 slices: no lungs, "no heart in the
    field of view"; here the region doubled). The heart region is the one found without it, and holds every
    coronary calcification."""
    case = phantom.make_cardiac_phantom(30500, spacing=(0.8, 0.8, 1.0), contrast=False, n_calcifications=8)
    image = _image(case)
    hu = sitk.GetArrayFromImage(image)[:149]  # an odd count: the blank slice shares a 2 mm block with a real one
    stored = sitk.GetImageFromArray(hu)
    padded = sitk.GetImageFromArray(np.concatenate([hu, np.full((1,) + hu.shape[1:], -1024, hu.dtype)]))
    for volume in (stored, padded):
        volume.SetSpacing(image.GetSpacing())
        volume.SetOrigin(image.GetOrigin())
        volume.SetDirection(image.GetDirection())
    without, with_blank = anatomy.find_heart(stored).heart_region, anatomy.find_heart(padded).heart_region[:149]
    assert (with_blank != without).sum() <= 0.01 * without.sum()
    coronary = (case.calcium_labels[:149] >= 1) & (case.calcium_labels[:149] <= 4)
    assert coronary.any() and with_blank[coronary].all()


def test_scan_type_comes_from_the_blood_in_the_heart(gated_pair):
    plain, enhanced = (anatomy.find_heart(_image(case)) for case in gated_pair)
    assert plain.blood_hu < 80 and not plain.contrast  # phantom blood 40 HU
    assert enhanced.blood_hu > 200 and enhanced.contrast  # phantom iodine 330-480 HU
    mode, info = scan_type(type("O", (), {"mode": "auto"})(), enhanced)
    assert mode == "cta" and "blood inside the heart" in info["decided_by"]


def test_calibration_phantom_is_not_a_cta():
    """A QRM insert with its 200 mg HA rod has no lungs and no heart: never a contrast-filled aorta."""
    insert = qrm.make_qrm_phantom()
    image = sitk.GetImageFromArray(insert.hu.astype(np.float32))
    image.SetSpacing(insert.spacing)
    with pytest.raises(InputError, match="no heart in the field of view"):
        anatomy.find_heart(image)
    assert scan_type(type("O", (), {"mode": "auto"})(), None)[0] == "noncontrast"


def test_no_heart_in_view_exits_2_with_one_line(tmp_path, capsys):
    """An abdomen-like volume (body, fat, a bright bone, no lungs) is refused before any scoring."""
    hu = np.full((30, 96, 96), -1000.0, np.float32)
    yy, xx = np.mgrid[:96, :96]
    body = ((xx - 48) / 44.0) ** 2 + ((yy - 48) / 36.0) ** 2 <= 1
    hu[:, body] = 50.0
    hu[:, 70:80, 44:52] = 700.0
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((3.0, 3.0, 3.0))
    image.SetMetaData("modality", "CT")
    sitk.WriteImage(image, str(tmp_path / "abdomen.nrrd"))
    code = cli.main(["calcium", str(tmp_path / "abdomen.nrrd"), "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no heart in the field of view: calcium scoring needs the heart" in err[0]
    assert not (tmp_path / "out" / "calcium.json").exists()


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(31000, 31999))
def test_no_coronary_label_outside_the_heart_region(seed):
    case = phantom.make_cardiac_phantom(seed, spacing=(1.0, 1.0, 3.0), fov_mm=200.0)
    result = evaluation.run_pipeline(case, mode="auto")
    labels = sitk.GetArrayFromImage(result.label_image)
    heart = anatomy.find_heart(_image(case)).heart_region
    coronary = (labels >= 1) & (labels <= 4)
    assert not (coronary & ~heart).any()
    assert (labels == HEART_REGION).any()  # the searched region is shown to the reader


def test_artery_follows_the_side_and_groove_of_the_heart():
    """u: share of the heart's cross-section from its right edge; t: from its front."""
    assert territories.artery_from_position(0.2, 0.3)[0] == territories.RCA     # right AV groove
    assert territories.artery_from_position(0.8, 0.3)[0] == territories.LAD     # anterior interventricular groove
    assert territories.artery_from_position(0.9, 0.8)[0] == territories.LCX     # left AV groove, behind
    assert territories.artery_from_position(0.5, 0.3)[1]                        # near the RCA boundary: review
    assert territories.artery_from_position(0.8, 0.62)[1]                       # near the LAD/LCX groove: review
    assert not territories.artery_from_position(0.1, 0.3)[1]


def _heart_cube():
    heart = np.zeros((60, 60, 60), bool)
    heart[10:50, 10:50, 10:50] = True  # a 40 mm cube: 20 mm inscribed radius
    return heart


def _assign_in_a_heart(candidates):
    return territories.assign(candidates, _heart_cube(), lambda ijk: np.asarray(ijk, float), (1.0, 1.0, 1.0))


def test_bone_running_out_of_the_heart_is_not_coronary():
    candidates = np.zeros((60, 60, 60), bool)
    candidates[30, 12:14, 40:42] = True    # on the surface, left and front: a coronary (LAD)
    candidates[30, 45:55, 25:27] = True    # crosses the region's edge: chest wall
    candidates[30, 0:2, 0:2] = True        # outside
    found = _assign_in_a_heart(candidates)
    assert found.labels[30, 12, 40] == territories.LAD
    assert found.labels[30, 48, 25] == territories.NOT_CORONARY
    assert found.labels[30, 0, 0] == territories.OUTSIDE_HEART


def test_calcium_behind_the_atria_on_the_right_is_not_the_rca_but_at_the_crux_it_is():
    """The RCA runs in front of the right atrium and reaches the back of the heart only at its bottom, the crux.
    On the right side at the back of the section (front-back 0.95) in the upper part of the heart (a quarter of the
    way down) lie the pulmonary veins, the left atrium's wall and the subcarinal lymph nodes: not coronary. At the
    same place near the bottom (0.9 of the way down) it is the RCA at the crux, and in front it is the RCA."""
    candidates = np.zeros((60, 60, 60), bool)
    candidates[40, 46:48, 12:14] = True    # right, back, upper: a subcarinal node
    candidates[14, 46:48, 12:14] = True    # right, back, at the bottom: the crux
    candidates[40, 12:14, 12:14] = True    # right, front, upper: the right atrioventricular groove
    found = _assign_in_a_heart(candidates)
    assert found.labels[40, 46, 12] == territories.NOT_CORONARY
    assert "behind the atria" in next(e["reason"] for e in found.per_candidate if e["label"] == territories.NOT_CORONARY)
    assert found.labels[14, 46, 12] == territories.RCA and found.labels[40, 12, 12] == territories.RCA


def test_calcium_where_the_field_of_view_cuts_the_heart_region_is_bone_running_out_of_view():
    """A field of view cut in front of the heart: the heart search region (a 40 mm cube, 1 mm voxels, rows running
    front to back) runs to the image's front edge (row 0), where the sternum runs on out of view. A bright piece 2 mm from that edge is not
    coronary; the same piece 10 mm from it, and a plaque on the cube's surface, are. So is a piece 2 mm from the
    scanner's padding outside its reconstruction circle (-3024 HU) when the region meets that instead."""
    region = np.zeros((60, 60, 60), bool)
    region[10:50, 0:40, 10:50] = True
    candidates = np.zeros_like(region)
    candidates[30, 2:4, 40:42] = True      # 2 mm from the front edge
    candidates[30, 10:12, 20:22] = True    # 10 mm from it
    found = territories.assign(candidates, region, lambda ijk: np.asarray(ijk, float), (1.0, 1.0, 1.0))
    assert found.labels[30, 2, 40] == territories.NOT_CORONARY
    assert next(e["reason"] for e in found.per_candidate
                if e["label"] == territories.NOT_CORONARY).startswith(territories.AT_VIEW_EDGE)
    assert found.labels[30, 10, 20] in (territories.LAD, territories.RCA)
    hu = np.where(candidates, 400.0, -80.0).astype(np.float32)
    hu[:, :5, :] = -3024.0                 # padding in front: the region meets it at row 5
    region[:, :5, :] = False
    candidates[30, 2:4, 40:42] = False
    candidates[30, 7:9, 40:42] = True      # 2 mm from the padding
    hu[30, 7:9, 40:42] = 400.0
    found = territories.assign(candidates, region, lambda ijk: np.asarray(ijk, float), (1.0, 1.0, 1.0), hu=hu)
    assert found.labels[30, 7, 40] == territories.NOT_CORONARY
    assert found.labels[30, 10, 20] in (territories.LAD, territories.RCA)


def test_calcium_near_the_field_of_views_side_edge_is_judged_as_any_other():
    """At the sides a tight field of view cuts the lungs, and the heart region reaches the edge there (a third of
    the gated COCA scans' slices) with the heart's border and its coronaries near it: a plaque 2 mm from the
    image's right edge (column 0, the patient's right in LPS) on the region's right border is the RCA's."""
    region = np.zeros((60, 60, 60), bool)
    region[10:50, 10:50, 0:40] = True
    candidates = np.zeros_like(region)
    candidates[30, 30:32, 2:4] = True
    found = territories.assign(candidates, region, lambda ijk: np.asarray(ijk, float), (1.0, 1.0, 1.0))
    assert found.labels[30, 30, 2] == territories.RCA


def test_a_plaque_poking_a_voxel_out_of_the_heart_region_over_the_lung_is_scored_and_flagged():
    """The heart search region (a 40 mm cube of epicardial fat, 1 mm voxels) ends at the lung in front (-800 HU)
    and at soft tissue on the right (40 HU). A 400 HU plaque on its front surface with one of its 33 voxels a layer
    out over the lung is a coronary plaque on the heart's surface (flagged); the same plaque poking a voxel out into
    the soft tissue, and a piece half outside over the lung, run out of the region (chest wall, lung). The plaque
    is scored on its voxels in the region: nothing outside the region is ever labelled coronary."""
    hu = np.full((60, 60, 60), -80.0, np.float32)
    hu[:, :10, :] = -800.0                     # the lung in front of the heart
    hu[:, 10:, :10] = 40.0                     # soft tissue on its right
    candidates = np.zeros(hu.shape, bool)
    candidates[30:32, 10:14, 38:42] = True     # on the front surface, left of centre: LAD
    candidates[30, 9, 39] = True               # ... one voxel of it over the lung
    candidates[40:42, 20:24, 10:14] = True     # on the right surface ...
    candidates[40, 21, 9] = True               # ... one voxel of it in the soft tissue
    candidates[20:22, 8:12, 30:34] = True      # half of it outside, over the lung
    hu[candidates] = 400.0
    found = territories.assign(candidates, _heart_cube(), lambda ijk: np.asarray(ijk, float), (1.0, 1.0, 1.0), hu=hu)
    assert found.labels[31, 12, 40] == territories.LAD
    assert found.labels[30, 9, 39] == territories.OUTSIDE_HEART
    plaque = next(e for e in found.per_candidate if e["candidate"] == found.components[30, 12, 40])
    assert plaque["review"] and "out of the heart search region over the lung" in plaque["reason"]
    assert found.labels[40, 21, 9] == found.labels[41, 22, 12] == territories.NOT_CORONARY
    assert found.labels[20, 10, 31] == territories.NOT_CORONARY


def test_calcium_deep_inside_the_heart_is_valve_not_coronary():
    """The centre of the region (the aortic valve's place) is 1.0 of its inscribed radius deep."""
    candidates = np.zeros((60, 60, 60), bool)
    candidates[29:31, 29:31, 29:31] = True
    candidates[30, 12:14, 40:42] = True
    found = _assign_in_a_heart(candidates)
    assert found.labels[30, 30, 30] == territories.AORTA_OR_VALVE
    assert found.labels[30, 12, 40] in (territories.LAD, territories.LCX, territories.RCA)


def test_at_the_left_mains_level_calcium_by_the_aortic_root_is_scored_with_the_lad_and_the_circumflex_groove_keeps_lcx():
    """In a 40 mm heart (1 mm voxels, 20 mm inscribed radius) two plaques at the top of the left system, both behind
    the LAD/LCX boundary (t > 0.6): one 11 mm under the surface (0.55 of the radius), where the left main runs
    from the aortic root, the other 3 mm under it, out in the left atrioventricular groove. Both are flagged; the
    deep one is scored with the LAD (the LM folded into it), the groove's stays LCX, and so does an LCX plaque
    lower down."""
    candidates = np.zeros((60, 60, 60), bool)
    candidates[38:40, 35:37, 37:39] = True   # u 0.70, t 0.64, 11 mm deep: the left main's place
    candidates[38:40, 39:41, 46:48] = True   # u 0.92, t 0.74, 3 mm deep: the circumflex's groove
    candidates[20:22, 40:42, 46:48] = True   # 18 mm lower in the same groove
    found = _assign_in_a_heart(candidates)
    at_left_main, in_groove, lower = found.labels[38, 35, 37], found.labels[38, 39, 46], found.labels[20, 40, 46]
    assert (at_left_main, in_groove, lower) == (territories.LAD, territories.LCX, territories.LCX)
    flagged = {entry["candidate"]: entry["review"] for entry in found.per_candidate}
    assert flagged[found.components[38, 35, 37]] and flagged[found.components[38, 39, 46]]
    assert not flagged[found.components[20, 40, 46]]


def test_metal_and_what_lies_within_10_mm_of_it_is_not_coronary():
    """1 mm voxels, a heart in fat. A clip reaching the top of a 12-bit scale (3071 HU) is metal, not calcium; a
    400 HU speck 5 mm from it could be a streak or blooming (not scored); the same speck 20 mm away is coronary."""
    hu = np.full((60, 60, 60), -80.0, np.float32)
    candidates = np.zeros(hu.shape, bool)
    for k, j, i, value in ((30, 14, 20, 3071.0), (30, 14, 25, 400.0), (30, 14, 40, 400.0)):
        hu[k, j:j + 2, i:i + 2] = value
        candidates[k, j:j + 2, i:i + 2] = True
    found = territories.assign(candidates, _heart_cube(), lambda ijk: np.asarray(ijk, float), (1.0, 1.0, 1.0),
                               hu=hu)
    reasons = {int(e["point_lps_mm"][0]): e["reason"] for e in found.per_candidate}  # by column
    assert found.labels[30, 14, 20] == found.labels[30, 14, 25] == territories.NOT_CORONARY
    assert reasons[20].startswith(territories.METAL) and reasons[25].startswith(territories.BESIDE_METAL)
    assert found.labels[30, 14, 40] in (territories.LAD, territories.LCX)


def test_a_pacemaker_lead_and_its_streaks_score_nothing():
    """The same generated patient without and with a transvenous pacemaker lead (SVC, right atrium, right ventricle;
    metal to the top of a 12-bit scale, bright and dark streaks around it; 1 mm pixels, as a chest CT's): each
    artery's score within 10 %, and the run says what it set aside. Without the metal rule the lead's pieces and
    streaks add 83 points to the RCA (82 without the lead)."""
    from cardioquant.calcium.pipeline import run
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    def scored(lead):
        case = phantom.make_cardiac_phantom(30506, spacing=(1.0, 1.0, 3.0), n_calcifications=8, pacemaker_lead=lead)
        return run(evaluation.phantom_loaded(case), settings_for("calcium", device="cpu"), Progress())

    without, with_lead = scored(False), scored(True)
    for artery, values in without.summary["arteries"].items():
        assert with_lead.summary["arteries"][artery]["agatston"] == pytest.approx(values["agatston"], rel=0.1, abs=1.0)
    assert sum(v["agatston"] for v in without.summary["arteries"].values()) > 50
    assert any(w.startswith("metal (3000 HU or more") for w in with_lead.warnings)


def test_the_filled_hull_of_a_square_of_points_holds_its_edges():
    """The lungs' hull (anatomy._hull_mask) of the corners of a 7 x 7 pixel square is the 49 pixels, edges included."""
    points = np.array([[2, 2], [2, 8], [8, 8], [8, 2], [5, 5]])
    hull = anatomy._hull_mask(points, (12, 12))
    assert hull.sum() == 49 and hull[2:9, 2:9].all()


@pytest.mark.parametrize("way_round", ["one way", "the other way"])
def test_a_traced_lesion_is_the_calcified_voxels_whose_centres_lie_inside_its_polygon(way_round):
    """COCA's truth (REFERENCE section 6): a lesion is the >= 130 HU voxels inside the expert's polygon, whichever
    way round it was drawn. The square runs 0.2 pixel outside a 3 x 3 block of voxel centres (0.5 mm pixels, the
    image's origin at (10, 20, 30) mm, the traced slice at z = 36 mm); one of the nine voxels reads 120 HU, and the
    calcified column beside the block lies outside."""
    from cardioquant.calcium import coca

    hu = np.zeros((5, 12, 12), np.float32)
    hu[2, 4:7, 3:6] = 300.0
    hu[2, 5, 5] = 120.0
    hu[2, 4:7, 6] = 300.0                      # calcified, its centres 0.8 pixel outside the polygon
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.5, 0.5, 3.0))
    image.SetOrigin((10.0, 20.0, 30.0))
    corners = [(2.8, 3.8), (5.2, 3.8), (5.2, 6.2), (2.8, 6.2)]                  # (i, j) around columns 3-5, rows 4-6
    if way_round == "the other way":
        corners = corners[::-1]
    polygon = np.array([(10.0 + 0.5 * i, 20.0 + 0.5 * j, 36.0) for i, j in corners])
    labels = coca.truth_labels(image, [(coca.LABEL_OF["LCX"], polygon)])
    expected = np.zeros(hu.shape, np.uint8)
    expected[2, 4:7, 3:6] = coca.LABEL_OF["LCX"]
    expected[2, 5, 5] = 0
    assert np.array_equal(labels, expected)


@pytest.mark.skipif(not COCA.is_dir(), reason="real COCA scans not present (../shared/data/coca)")
def test_real_gated_scans_keep_every_traced_lesion_in_the_heart_region():
    from cardioquant.calcium import coca

    for case_id in coca.case_ids(COCA):
        loaded, truth = coca.load_case(COCA, case_id)
        heart = anatomy.find_heart(loaded.image)
        assert not heart.contrast
        traced = truth > 0
        assert heart.heart_region[traced].mean() >= 0.99, case_id


def test_weights_option_is_refused_for_calcium(tmp_path, capsys):
    """Calcium runs no network: a --weights file would silently do nothing, so it is refused before any work."""
    case = phantom.make_cardiac_phantom(30500, spacing=(1.0, 1.0, 3.0), n_calcifications=0)
    sitk.WriteImage(_image(case), str(tmp_path / "ct.nrrd"))
    (tmp_path / "w.pt").write_bytes(b"")
    code = cli.main(["calcium", str(tmp_path / "ct.nrrd"), "-o", str(tmp_path / "out"), "--weights",
                     str(tmp_path / "w.pt"), "--quiet"])
    assert code == 2 and "--weights does not apply to calcium scoring" in capsys.readouterr().err


def test_cta_noise_peak_inside_a_chamber_is_not_coronary():
    """On CTA a bright voxel cluster with iodine all round is the blood's own noise tail, not a plaque."""
    hu = np.full((60, 60, 60), -80.0, np.float32)        # epicardial fat
    hu[20:40, 20:40, 20:40] = 400.0                      # an iodine-filled chamber
    candidates = np.zeros(hu.shape, bool)
    candidates[30, 30:32, 22:24] = True                  # a noise peak in the chamber
    candidates[30, 12:14, 40:42] = True                  # a plaque in the fat on the surface
    hu[candidates] = 700.0
    found = territories.assign(candidates, _heart_cube(), lambda ijk: np.asarray(ijk, float), (1.0, 1.0, 1.0),
                               hu=hu, contrast=True)
    assert found.labels[30, 30, 22] == territories.AORTA_OR_VALVE
    assert found.labels[30, 12, 40] == territories.LAD


def test_review_flags_follow_the_lesions_through_reader_edits():
    """The panel re-scores after every edit: a flagged lesion stays flagged until the reader reassigns it."""
    import json

    from cardioquant.calcium.pipeline import carry_review_flags, reassign_lesion, rescore

    run_lesions = [
        {"artery": "LAD", "centroid_ijk": [10.0, 10.0, 2.0], "review": "at the left main's level"},
        {"artery": "RCA", "centroid_ijk": [40.0, 40.0, 5.0], "review": None},
    ]
    image, labels_image = phantom.block_phantom()  # LAD block at (10-11, 10-13, 2-3), RCA at (30-33, 30-32, 5)
    labels = sitk.GetArrayFromImage(labels_image)
    hu = sitk.GetArrayFromImage(image)
    candidates = np.where(hu >= 130, labels, 0).astype(np.uint8)
    candidates[(hu >= 130) & (candidates == 0)] = 5
    lesions = rescore(image, candidates)["lesions"]
    lad = next(les for les in lesions if les["artery"] == "LAD")
    run_lesions[0]["centroid_ijk"] = lad["centroid_ijk"]
    flagged = carry_review_flags(json.loads(json.dumps(lesions)), run_lesions)
    assert [les["review"] for les in flagged if les["artery"] == "LAD"] == ["at the left main's level"]
    assert all(les["review"] is None for les in flagged if les["artery"] == "RCA")
    seed = tuple(int(round(c)) for c in lad["centroid_ijk"][::-1])
    moved = rescore(image, reassign_lesion(candidates, seed, 3))["lesions"]  # the reader calls it LCX
    assert all(les["review"] is None for les in carry_review_flags(moved, run_lesions))


def _thorax(upper_half_width_mm: float = 12.0):
    """A voxel-built thorax, 2 x 2 x 3 mm, LPS: soft tissue in air; two lungs; a spine; between the lungs a
    mediastinum 90 mm wide for the heart's 30 lower slices and `upper_half_width_mm` x 2 above (great vessels)."""
    shape = (50, 160, 160)
    hu = np.full(shape, -1000.0, np.float32)
    y, x = (np.mgrid[:160, :160] - 80.0) * 2.0          # mm from the centre; x to the left, y posterior
    hu[:, (x / 150) ** 2 + (y / 110) ** 2 <= 1] = 40.0
    for k in range(shape[0]):
        half = 45.0 if k < 30 else upper_half_width_mm
        lung = (np.abs(x) > half) & (np.abs(x) < half + 70) & (np.abs(y + 5) < 60)
        hu[k][lung] = -850.0
    hu[:, (np.abs(x) < 20) & (y > 60) & (y < 95)] = 300.0   # vertebral bodies
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((2.0, 2.0, 3.0))
    image.SetOrigin((-160.0, -160.0, 0.0))
    return image


def test_calcium_in_the_upper_mediastinum_is_outside_the_heart():
    """A plaque between the great vessels above the heart is outside the searched region; one on the heart is
    coronary."""
    image = _thorax()
    hu = sitk.GetArrayFromImage(image)
    hu[45, 70:72, 80:82] = 600.0   # upper mediastinum, 45 mm above the heart
    hu[15, 60:62, 100:102] = 600.0  # on the heart: front and left, next to the left lung
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((2.0, 2.0, 3.0))
    image.SetOrigin((-160.0, -160.0, 0.0))
    image.SetMetaData("modality", "CT")
    heart = anatomy.find_heart(image)
    assert heart.heart_region[15, 60, 100] and not heart.heart_region[40:].any()
    found = territories.assign(hu >= 130, heart.heart_region,
                               lambda ijk: np.asarray(ijk, float) * (2.0, 2.0, 3.0) + (-160.0, -160.0, 0.0),
                               (2.0, 2.0, 3.0))
    assert found.labels[45, 70, 80] == territories.OUTSIDE_HEART
    assert found.labels[15, 60, 100] in (territories.LAD, territories.LCX)


def test_cta_plaque_on_the_aortic_wall_is_not_coronary_but_one_on_a_coronary_lumen_is():
    """1 mm voxels. A 10 mm-radius iodine tube (the aorta) and a 2 mm one (a coronary) in epicardial fat; a plaque
    on the wall of each."""
    hu = np.full((60, 60, 60), -80.0, np.float32)
    y, x = np.mgrid[:60, :60]
    hu[:, (x - 30) ** 2 + (y - 30) ** 2 <= 10 ** 2] = 400.0     # aorta, running through every slice
    hu[:, (x - 44) ** 2 + (y - 14) ** 2 <= 2 ** 2] = 400.0      # coronary lumen, front and left
    candidates = np.zeros(hu.shape, bool)
    candidates[30, 30:32, 40:42] = True                          # on the aortic wall (x 40-41)
    candidates[30, 14:16, 46:48] = True                          # on the coronary's wall
    hu[candidates] = 800.0
    found = territories.assign(candidates, _heart_cube(), lambda ijk: np.asarray(ijk, float), (1.0, 1.0, 1.0),
                               hu=hu, contrast=True)
    assert found.labels[30, 30, 40] == territories.AORTA_OR_VALVE
    assert found.labels[30, 14, 46] in (territories.LAD, territories.LCX)


def test_scores_do_not_depend_on_how_the_scan_is_stored_or_framed():
    """The same physical scan stored mirrored (direction -1 on x and y), or framed by scanner padding outside the
    reconstruction circle (-3024 HU), gives the same per-artery scores."""
    from cardioquant.calcium.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    image = _image(phantom.make_cardiac_phantom(30502, spacing=(0.8, 0.8, 3.0), n_calcifications=8))

    def arteries(stored):
        loaded = LoadedImage(image=stored, path="scan", format="nrrd", dicom={"modality": "CT", "kvp": "120"})
        found = run(loaded, settings_for("calcium", device="cpu"), Progress()).summary["arteries"]
        return {name: round(values["agatston"], 3) for name, values in found.items()}

    reference = arteries(image)
    assert sum(reference.values()) > 0
    assert arteries(sitk.Flip(image, [True, True, False])) == reference
    assert arteries(sitk.ConstantPad(image, [40, 40, 0], [40, 40, 0], -3024.0)) == reference


def test_a_round_field_of_view_scores_as_the_square_one_whatever_its_corners_hold():
    """A cardiac field of view (172 mm, the lungs running out of it) whose scanner left out the corners outside its
    reconstruction circle: filled with -1024 HU, as a stored 0 rescaled by -1024 or a converter clipping at -1024
    leaves them, padded with -3024 HU, or with -32768 HU (a vendor's int16 floor): the per-artery scores of the
    square scan. Read as air, the -1024 HU fill joined the lungs and the heart region took in the chest wall around
    them (RCA 828 for 32); the -32768 HU padding was refused as not Hounsfield units."""
    from cardioquant.calcium.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    image = _image(phantom.make_cardiac_phantom(30502, spacing=(0.5, 0.5, 3.0), n_calcifications=8, fov_mm=172.0))
    hu = sitk.GetArrayFromImage(image)
    rows, columns = np.indices(hu.shape[1:])
    outside = np.hypot(rows - (hu.shape[1] - 1) / 2, columns - (hu.shape[2] - 1) / 2) > hu.shape[1] / 2

    def arteries(fill=None):
        stored = image
        if fill is not None:
            stored = sitk.GetImageFromArray(np.where(outside, np.float32(fill), hu))
            stored.CopyInformation(image)
        loaded = LoadedImage(image=stored, path="scan", format="nrrd", dicom={"modality": "CT", "kvp": "120"})
        found = run(loaded, settings_for("calcium", device="cpu"), Progress()).summary["arteries"]
        return {name: round(values["agatston"], 3) for name, values in found.items()}

    square = arteries()
    assert sum(square.values()) > 0
    assert arteries(-1024.0) == square
    assert arteries(-3024.0) == square
    assert arteries(-32768.0) == square


def test_depth_below_the_hearts_surface_does_not_depend_on_how_the_scan_is_stored(monkeypatch):
    """The depth map behind the valve rule is made on a subsample of the scan's grid (here ~4.5 mm, by allowing it
    few samples). Stored mirrored (columns running right to left), the same patient must be sampled at the same
    places: every heart voxel reads the same depth, and the region the same deepest point. 299 columns: a
    subsample counted from the array's first column would take other voxels from the mirrored array."""
    monkeypatch.setattr(territories, "DEPTH_SAMPLES", 2000)
    spacing = (0.35, 0.35, 3.0)
    k, j, i = np.mgrid[:20, :120, :299]
    heart = ((i - 150) * 0.35 / 45) ** 2 + ((j - 60) * 0.35 / 20) ** 2 + ((k - 10) * 3.0 / 25) ** 2 <= 1

    def stored(columns_reversed):
        sign, first = (-1.0, 298 * 0.35) if columns_reversed else (1.0, 0.0)

        def to_lps(ijk):
            ijk = np.asarray(ijk, float)
            return np.column_stack([first + sign * ijk[:, 0] * 0.35, ijk[:, 1] * 0.35, ijk[:, 2] * 3.0]) + 7.3
        return territories._region_depth(heart[:, :, ::-1] if columns_reversed else heart, spacing, to_lps)

    (depth_at, deepest), (mirrored_depth_at, mirrored_deepest) = stored(False), stored(True)
    kk, jj, ii = np.nonzero(heart[:, :, ::7])
    assert deepest == pytest.approx(mirrored_deepest, abs=1e-6)
    for voxel in zip(kk[::37, None], jj[::37, None], 7 * ii[::37, None], strict=True):
        assert depth_at(*voxel) == pytest.approx(mirrored_depth_at(voxel[0], voxel[1], 298 - voxel[2]), abs=1e-4)


def test_depth_below_the_hearts_surface_is_measured_to_about_a_millimetre():
    """A 50 mm-radius ball on a 0.4 x 0.4 x 3 mm grid: its deepest point is 50 mm below the surface, and a voxel
    30 mm from the centre 20 mm (0.4 of the radius), within a millimetre (the valve rule's cut-off is 0.6)."""
    spacing = (0.4, 0.4, 3.0)
    k, j, i = np.mgrid[:41, :271, :271]
    ball = ((i - 135) * 0.4) ** 2 + ((j - 135) * 0.4) ** 2 + ((k - 20) * 3.0) ** 2 <= 50 ** 2
    depth_at, deepest = territories._region_depth(ball, spacing, lambda ijk: np.asarray(ijk, float) * [0.4, 0.4, 3.0])
    assert deepest == pytest.approx(50.0, abs=1.0)
    assert depth_at(np.array([20]), np.array([135]), np.array([135 + 75])) == pytest.approx(20.0, abs=1.0)


def test_totalsegmentator_is_offered_as_the_heart_provider(tmp_path, monkeypatch, capsys):
    """--heart-mask totalsegmentator runs TotalSegmentator's heart and aorta classes when it is installed (here a
    stand-in with its API and file layout, writing the phantom's soft tissue and coronaries as "heart", and as
    "aorta" a box round one coronary calcification) and says how to install it when it is not. Calcium its aorta
    holds is aortic (its own segment, not scored); the other coronary calcium is scored as before."""
    import json
    import sys
    import types

    case = phantom.make_cardiac_phantom(30503, spacing=(1.0, 1.0, 3.0), n_calcifications=6)
    sitk.WriteImage(_image(case), str(tmp_path / "ct.nrrd"))
    monkeypatch.setitem(sys.modules, "totalsegmentator", None)  # not installed
    code = cli.main(["calcium", str(tmp_path / "ct.nrrd"), "-o", str(tmp_path / "a"), "--heart-mask",
                     "totalsegmentator", "--quiet"])
    assert code == 2 and "TotalSegmentator is not installed" in capsys.readouterr().err

    coronary = ndimage.label((case.calcium_labels >= 1) & (case.calcium_labels <= 4))[0]
    in_the_aorta = coronary == 1
    k, j, i = (slice(max(a.min() - 1, 0), a.max() + 2) for a in np.nonzero(in_the_aorta))
    calls = []

    def totalsegmentator(input, output, roi_subset=None, **_):
        calls.append(roi_subset)
        scan = sitk.ReadImage(input)
        Path(output).mkdir(parents=True)
        heart = (case.vessel_labels > 0) | (case.hu > 20) & (case.hu < 80)
        aorta = np.zeros(case.hu.shape, np.uint8)
        aorta[k, j, i] = 1
        for name, mask in (("heart", heart), ("aorta", aorta)):
            written = sitk.GetImageFromArray(mask.astype(np.uint8))
            written.CopyInformation(scan)
            sitk.WriteImage(written, str(Path(output) / f"{name}.nii.gz"))

    package = types.ModuleType("totalsegmentator")
    api = types.ModuleType("totalsegmentator.python_api")
    api.totalsegmentator = totalsegmentator
    monkeypatch.setitem(sys.modules, "totalsegmentator", package)
    monkeypatch.setitem(sys.modules, "totalsegmentator.python_api", api)
    code = cli.main(["calcium", str(tmp_path / "ct.nrrd"), "-o", str(tmp_path / "b"), "--heart-mask",
                     "totalsegmentator", "--quiet"])
    result = json.loads((tmp_path / "b" / "calcium.json").read_text())
    assert code == 0 and calls == [["heart", "aorta"]]
    assert result["heart"]["method"].startswith("TotalSegmentator heart, grown 10 mm")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b" / "calcium_labels.nrrd")))
    calcium = in_the_aorta & (labels > 0) & (labels != HEART_REGION)  # its voxels over the threshold
    assert calcium.any() and set(np.unique(labels[calcium])) == {territories.AORTA_OR_VALVE}
    scored = (labels >= 1) & (labels <= 4)
    assert scored.any() and not (scored & in_the_aorta).any()


def _thorax_with_aorta():
    """A voxel-built thorax, 2 x 2 x 3 mm, LPS, fat in the mediastinum: a heart (40 HU ellipse, 80 x 90 mm) in
    slices 5-29; the ascending aorta (40 HU, 14 mm radius, centre 5 mm right of and 15 mm in front of the middle)
    rising out of it through slices 20-49, wrapped in fat above the heart; a spine behind. Returns (hu, image
    maker)."""
    shape = (50, 160, 160)
    hu = np.full(shape, -1000.0, np.float32)
    y, x = (np.mgrid[:160, :160] - 80.0) * 2.0
    hu[:, (x / 150) ** 2 + (y / 110) ** 2 <= 1] = 40.0
    for k in range(shape[0]):
        half = 50.0 if k < 30 else 30.0
        hu[k][(np.abs(x) <= half) & (np.abs(y + 5) < 60)] = -100.0                      # mediastinal fat
        hu[k][(np.abs(x) > half) & (np.abs(x) < half + 70) & (np.abs(y + 5) < 60)] = -850.0
    hu[5:30][:, ((x - 10) / 40) ** 2 + (y / 45) ** 2 <= 1] = 40.0                         # heart
    hu[20:][:, (x + 5) ** 2 + (y + 15) ** 2 <= 14 ** 2] = 40.0                           # ascending aorta
    hu[:, (np.abs(x) < 20) & (y > 60) & (y < 95)] = 300.0                                # vertebral bodies

    def image_of(values):
        image = sitk.GetImageFromArray(values)
        image.SetSpacing((2.0, 2.0, 3.0))
        image.SetOrigin((-160.0, -160.0, 0.0))
        return image
    return hu, image_of


def test_great_vessels_are_found_as_round_tubes_above_the_heart():
    from cardioquant.calcium import great_vessels

    hu, image_of = _thorax_with_aorta()
    heart = anatomy.find_heart(image_of(hu))
    assert len(heart.great_vessel_tubes) == 1
    aorta = heart.great_vessel_tubes[0]
    assert aorta["radius_mm"] == pytest.approx(14.0, abs=2.0)
    assert (aorta["from_s_mm"], aorta["to_s_mm"]) == (pytest.approx(90.0, abs=6.0), 147.0)  # slices 30-49, 3 mm
    disks = heart.great_vessels
    assert disks[40, 80 - 15 // 2, 80 - 5 // 2 - 1] and disks[35].sum() * 4.0 == pytest.approx(np.pi * 14 ** 2, rel=0.25)
    assert not disks[:25].any()  # where the aorta runs inside the heart it is no round tube in fat
    # A round disk of blood with no fat around it (a chamber cut through, bordered by tissue) is no vessel.
    solid = np.full((60, 60), 40.0, np.float32)
    assert great_vessels.cross_sections(solid, np.ones_like(solid, bool), (2.0, 2.0, 3.0)) == []


def test_a_great_vessel_found_on_alternate_slices_has_its_disk_on_every_slice_between():
    """A vessel runs on where its cross-section was not found round on a slice (a cusp's calcium in the root's
    wall, the pulmonary trunk touching it): wall calcium on that slice is the aorta's as on the slices either side.
    A 14 mm aorta in fat, seen on every other 3 mm slice, is one tube, and its disk covers the slices between."""
    from cardioquant.calcium import great_vessels

    spacing = (2.0, 2.0, 3.0)
    rows, cols = np.mgrid[:60, :60]
    inside = ((rows - 30) * 2.0) ** 2 + ((cols - 30) * 2.0) ** 2 <= 14.0 ** 2
    hu = np.where(inside, 40.0, -100.0).astype(np.float32)[None].repeat(10, axis=0)
    mediastinum = np.zeros(hu.shape, bool)
    mediastinum[::2] = True  # its centre is looked for on alternate slices only
    disks, tubes = great_vessels.find_great_vessels(hu, mediastinum, spacing, np.ones(10, bool))
    assert len(tubes) == 1 and [section[0] for section in tubes[0].sections] == [8, 6, 4, 2, 0]
    assert disks[:9].all(axis=0)[30, 30] and disks[1:9].sum() == pytest.approx(8 * inside.sum(), rel=0.1)


def test_two_round_sections_a_gap_apart_are_no_great_vessel_but_three_in_line_are():
    """Any two round disks within reach of each other link (the demo phantom's heart cap, round in its fat, and the
    soft tissue above it, 12 mm higher, made a "tube" whose disk took its left main and LAD plaques for aortic
    wall). A vessel is seen round on most of its slices: on a 3 mm grid, disks on slices 0 and 4 with nothing between
    are no tube; a third on slice 2, in line, makes one, and its disk spans slices 0-4."""
    from cardioquant.calcium import great_vessels

    spacing = (2.0, 2.0, 3.0)
    rows, cols = np.mgrid[:60, :60]
    inside = ((rows - 30) * 2.0) ** 2 + ((cols - 30) * 2.0) ** 2 <= 14.0 ** 2
    hu = np.where(inside, 40.0, -100.0).astype(np.float32)[None].repeat(5, axis=0)
    mediastinum = np.zeros(hu.shape, bool)
    mediastinum[[0, 4]] = True  # looked for on the ends only: 12 mm apart, the shortest tube
    disks, tubes = great_vessels.find_great_vessels(hu, mediastinum, spacing, np.ones(5, bool))
    assert tubes == [] and not disks.any()
    mediastinum[2] = True
    disks, tubes = great_vessels.find_great_vessels(hu, mediastinum, spacing, np.ones(5, bool))
    assert len(tubes) == 1 and disks[:, 30, 30].all()


def test_the_scan_range_warning_says_which_end_of_the_heart_may_be_cut():
    """A gated calcium scan is planned from just below the carina to below the heart: the region reaches its top
    slice with the ascending aorta above the heart, which is not a cut heart. The same thorax ending inside the
    heart (no great vessel above it) may have lost the ostia and left main; one starting inside the heart, its
    inferior wall."""
    hu, image_of = _thorax_with_aorta()
    abdomen = np.repeat(np.where(hu[:1] > -1000.0, 40.0, -1000.0).astype(np.float32), 4, axis=0)  # no lung
    whole = np.concatenate([abdomen, hu])
    cut = {name: anatomy.find_heart(image_of(np.ascontiguousarray(values))) for name, values in
           (("whole", whole), ("top", whole[:26]), ("bottom", whole[16:]))}  # heart in slices 9-33 of `whole`
    said = {name: [w for w in heart.warnings if "may be cut" in w] for name, heart in cut.items()}
    assert cut["whole"].great_vessel_tubes and not cut["top"].great_vessel_tubes
    assert said["whole"] == []
    assert said["top"] == ["the heart region reaches the scan's highest slice with no great vessel seen above the "
                           "heart: its base (the coronary ostia, the left main) may be cut by the scan range; calcium "
                           "above it is not scored"]
    assert said["bottom"] == ["the heart region reaches the scan's lowest slice: the heart's inferior wall may be cut "
                              "by the scan range; calcium below it is not scored"]


def test_a_field_of_view_that_cuts_the_spine_away_is_warned_of():
    """With no spine behind the heart the search region runs back to the image's edge, over the descending aorta:
    the same voxel-built thorax with its vertebral bodies and without them."""
    hu, image_of = _thorax_with_aorta()
    spineless = hu.copy()
    spineless[spineless == 300.0] = 40.0
    said = {name: [w for w in anatomy.find_heart(image_of(values)).warnings if "no spine found" in w]
            for name, values in (("with spine", hu), ("spine cut away", spineless))}
    assert said["with spine"] == []
    assert len(said["spine cut away"]) == 1 and "descending aorta" in said["spine cut away"][0]


def test_with_the_spine_cut_away_a_lesion_at_the_back_of_the_heart_is_flagged_for_review():
    """No spine behind the heart: the region's back is the image's edge, where the descending aorta runs. A
    calcification in fat at the back of the region is flagged (descending aorta's wall?); with the spine in view
    the region stops in front of it."""
    hu, image_of = _thorax_with_aorta()
    spineless = hu.copy()
    spineless[spineless == 300.0] = 40.0
    back = (12, 80 + 50 // 2, 80 - 20 // 2)  # x = -20, y = 50 mm: in the fat between the heart and the lungs' back
    spineless[back[0], back[1]:back[1] + 2, back[2]:back[2] + 2] = 600.0
    heart = anatomy.find_heart(image_of(spineless))
    assert heart.spine_cut_away and heart.heart_region[back]
    assert not anatomy.find_heart(image_of(hu)).heart_region[back]  # with the spine: 15 mm in front of it
    to_lps = lambda ijk: np.asarray(ijk, float) * (2.0, 2.0, 3.0) + (-160.0, -160.0, 0.0)  # noqa: E731
    for unbounded in (True, False):
        found = territories.assign(spineless >= 130, heart.heart_region, to_lps, (2.0, 2.0, 3.0), hu=spineless,
                                   back_unbounded=unbounded)
        entry = next(e for e in found.per_candidate if found.components[back] == e["candidate"])
        assert entry["label"] in (territories.RCA, territories.LCX)
        assert ("no spine bounds" in entry["reason"] and entry["review"]) == unbounded


@pytest.mark.parametrize("spacing", [(0.7, 0.7, 1.1), (0.39, 0.39, 3.0), (1.5, 1.5, 1.5), (0.8, 0.8, 5.0)])
def test_a_mask_grows_by_its_margin_as_a_dilation_with_the_ellipsoid_of_that_radius(spacing):
    """Growing a mask (a TotalSegmentator heart by 10 mm, an aorta by 2 mm) is the dilation with the ellipsoid of
    that radius in voxels (at least one voxel an axis), its surface included: worked out exactly here with integer
    arithmetic over the whole array, against `grown`, which works in the mask's box. The same for the distance
    maps it rests on (the voxels within a distance of a mask; the depth inside one), against SciPy's over the
    whole array."""
    rng = np.random.default_rng(7)
    mask = np.zeros((14, 40, 44), bool)
    mask[4:9, 12:20, 15:30] = True
    mask[tuple(rng.integers(0, n, size=5) for n in mask.shape)] = True  # scattered voxels, some at the edges
    for margin_mm in (2.0, 10.0):
        radius = [max(1, round(margin_mm / s)) for s in spacing[::-1]]
        product = int(np.prod(radius))
        offsets = np.mgrid[tuple(slice(-r, r + 1) for r in radius)]
        ellipsoid = sum((g * (product // r)) ** 2 for g, r in zip(offsets, radius, strict=True)) <= product ** 2
        assert np.array_equal(anatomy.grown(mask, spacing, margin_mm), ndimage.binary_dilation(mask, ellipsoid))
    sampling = spacing[::-1]
    assert np.array_equal(geometry.within(mask, 4.0, sampling),
                          ndimage.distance_transform_edt(~mask, sampling=sampling) <= 4.0)
    assert np.allclose(geometry.depth_inside(mask, sampling), ndimage.distance_transform_edt(mask, sampling=sampling))
    assert not geometry.within(np.zeros((3, 4, 5), bool), 4.0, (1, 1, 1)).any()


def test_a_heart_masks_margin_stops_at_the_chest_wall_but_keeps_the_heart_surface():
    """A heart mask (a TotalSegmentator heart, say) grown 10 mm for the coronaries reached the costal cartilage in
    front of the lungs where the heart lies against the chest. On the voxel-built thorax, a mask reaching 2 mm
    behind the lungs' front edge (y = -65 mm): its margin keeps the epicardial fat off the heart's front-left, where
    a plaque lies, and not the chest wall 5 mm in front of the lungs' edge (calcified cartilage there)."""
    hu, image_of = _thorax_with_aorta()
    y, x = (np.mgrid[:160, :160] - 80.0) * 2.0
    mask = np.zeros(hu.shape, bool)
    mask[5:30] = ((x - 10) / 42) ** 2 + ((y + 8) / 55) ** 2 <= 1  # front at y = -63 mm
    cartilage = (15, 80 - 70 // 2, 80 + 20 // 2)  # x = 20, y = -70 mm: 7 mm from the mask, in the chest wall
    plaque = (15, 80 - 42 // 2, 80 + 32 // 2)     # x = 32, y = -42 mm: in the fat off the heart's front-left
    region = anatomy.heart_from_mask(image_of(hu), mask).heart_region
    assert not region[cartilage] and region[plaque]
    assert region[mask].all()  # the heart itself is never cut


def test_calcium_in_the_aortic_wall_is_not_coronary_but_a_plaque_on_the_heart_is():
    """On a voxel-built thorax, wall calcium of the ascending aorta 25 mm above the heart (inside the searched
    region, in the middle of its cross-section) is 'aorta or valve'; a plaque in the fat on the heart's front-left
    surface is a left coronary."""
    hu, image_of = _thorax_with_aorta()
    wall = (38, 80 - 15 // 2, 80 + (-5 + 12) // 2)      # x = 7 mm: the aorta's left wall (radius 14 mm)
    hu[wall[0], wall[1]:wall[1] + 2, wall[2]:wall[2] + 2] = 600.0
    plaque = (15, 80 - 42 // 2, 80 + 32 // 2)           # x = 32, y = -42 mm: in the fat off the heart's front-left
    hu[plaque[0], plaque[1]:plaque[1] + 2, plaque[2]:plaque[2] + 2] = 600.0
    image = image_of(hu)
    image.SetMetaData("modality", "CT")
    heart = anatomy.find_heart(image)
    assert heart.heart_region[wall] and heart.heart_region[plaque]
    found = territories.assign(hu >= 130, heart.heart_region,
                               lambda ijk: np.asarray(ijk, float) * (2.0, 2.0, 3.0) + (-160.0, -160.0, 0.0),
                               (2.0, 2.0, 3.0), great_vessels=heart.great_vessels)
    assert found.labels[wall] == territories.AORTA_OR_VALVE
    assert found.labels[plaque] in (territories.LAD, territories.LCX)
    without = territories.assign(hu >= 130, heart.heart_region,
                                 lambda ijk: np.asarray(ijk, float) * (2.0, 2.0, 3.0) + (-160.0, -160.0, 0.0),
                                 (2.0, 2.0, 3.0))
    assert without.labels[wall] in (territories.LAD, territories.LCX, territories.RCA)  # what it was before


def test_calcium_in_front_of_the_hearts_section_is_the_chest_wall_not_a_coronary():
    """The coronaries lie on the heart's surface. Where a thin piece of the heart region runs forward along the chest
    wall, a speck in it a tenth or more of the section's depth in front of the section's front (here 0.3) is the
    sternum or costal cartilage, not coronary; one in front by less (0.06) is scored and flagged for review."""
    heart = np.zeros((70, 70, 70), bool)
    heart[20:60, 20:60, 20:60] = True        # a 40 mm cube
    heart[40, 6:20, 39:41] = True            # a thin strip of the region (under 2 % of the slice) along the chest wall
    candidates = np.zeros((70, 70, 70), bool)
    candidates[40, 7:9, 39:41] = True        # 12 mm in front of the section's front (depth 40 mm)
    candidates[40, 17:19, 39:41] = True      # 2 mm in front of it
    candidates[40, 22:24, 50:52] = True      # on the surface, left and front: a coronary (LAD)
    found = territories.assign(candidates, heart, lambda ijk: np.asarray(ijk, float), (1.0, 1.0, 1.0))
    by_voxel = {e["candidate"]: e for e in found.per_candidate}
    assert found.labels[40, 7, 39] == territories.NOT_CORONARY
    assert "in front of the heart" in by_voxel[found.components[40, 7, 39]]["reason"]
    assert found.labels[40, 17, 39] in (territories.LAD, territories.RCA) and by_voxel[found.components[40, 17, 39]]["review"]
    assert found.labels[40, 22, 50] == territories.LAD
    assert "in front of the heart" not in by_voxel[found.components[40, 22, 50]]["reason"]


def test_a_bone_fragment_on_the_sternum_is_not_coronary():
    """Partial volume cuts a fragment off a bone where the region reaches it: a speck 2 mm from a sternum-like
    bone that runs out of the region is 'not coronary'; a plaque 10 mm from it stays coronary."""
    candidates = np.zeros((60, 60, 60), bool)
    candidates[20:40, 2:11, 20:45] = True   # the sternum (4.5 mL): from outside the region into its front
    candidates[30, 13:15, 30:32] = True     # a fragment 2 mm behind it
    candidates[30, 21:23, 40:42] = True     # a plaque 10 mm behind it, on the left: a coronary
    found = _assign_in_a_heart(candidates)
    assert found.labels[28, 5, 30] == territories.NOT_CORONARY
    assert found.labels[30, 13, 30] == territories.NOT_CORONARY
    assert found.labels[30, 21, 40] in (territories.LAD, territories.LCX)


def test_the_spine_is_a_vertebra_sized_column_not_the_iodine_filled_heart():
    """A cardiac field of view can cut the spine away: in one slice an iodine-filled chamber (as bright as bone on
    CTA, vertebra-sized) is the only bone in the middle, in another the whole bright heart joins in, leaving no
    vertebra-like bone. The spine's front stays where the column of vertebrae puts it (row 80) in both: the cut in
    front of the spine never takes the heart, and the region does not run back over the spine."""
    slices, rows, cols = 9, 100, 120
    lungs = np.zeros((slices, rows, cols), bool)
    lungs[:, 10:90, 5:35] = lungs[:, 10:90, 85:115] = True
    bone = np.zeros_like(lungs)
    bone[:, 80:95, 50:70] = True                   # vertebral body: 30 x 40 mm
    bone[4] = False
    bone[4, 20:50, 45:75] = True                   # slice 4: spine cut away, a 36 cm2 chamber only
    bone[6, 20:70, 35:85] = True                   # slice 6: the whole bright heart, 100 cm2, 100 mm deep
    bone[6, 70:80, 55:65] = True                   # ... touching the spine
    spacing = (2.0, 2.0, 2.0)
    fronts, _ = anatomy._spine_fronts(lungs, anatomy._lung_spans(lungs, spacing), bone, spacing, np.full(slices, -1))
    assert list(fronts) == [80] * 9


def test_the_spine_is_bridged_over_its_discs_and_where_the_field_of_view_cuts_it_to_a_sliver():
    """On a gated CT (3 mm slices) the vertebral bodies run rows 60-75; a disc's slice (70-120 HU, not bone) holds only
    the posterior elements (rows 78 on), and where a tight field of view cuts the body to a sliver the slice holds too
    little bone to be a vertebra. The column bridges both: the spine's front is row 60 in every slice, so the heart
    region never runs back over a disc or the descending aorta. Beyond a vertebra's height with no bone, nothing is
    invented: the slices with no spine bone at all keep the image's end (row 100). The slices bridged over the
    sliver still count as showing no spine, for the warning of a field of view cut around the heart."""
    slices, rows, cols = 30, 100, 120
    lungs = np.zeros((slices, rows, cols), bool)
    lungs[:, 10:90, 5:35] = lungs[:, 10:90, 85:115] = True
    bone = np.zeros_like(lungs)
    bone[:18, 60:76, 50:70] = True                     # vertebral bodies: 32 x 40 mm
    bone[:18, 76:95, 56:64] = True                     # pedicles and posterior elements, joined to the body
    bone[5, 60:76] = False                             # a disc: the posterior elements alone
    bone[10:12] = False                                # two slices cut to a sliver ...
    bone[10:12, 60:63, 50:70] = True                   # ... 6 x 40 mm, under 3 cm2
    spacing = (2.0, 2.0, 3.0)
    fronts, seen = anatomy._spine_fronts(lungs, anatomy._lung_spans(lungs, spacing), bone, spacing, np.full(slices, -1))
    assert list(fronts[:18]) == [60] * 18
    assert list(np.nonzero(~seen)[0]) == [10, 11] + list(range(18, slices))  # what the field-of-view warning counts
    assert list(fronts[18 + int(anatomy.SPINE_BRIDGE_MM / 2 / 3) + 1:]) == [100] * (slices - 18 - 6)


def _vertebral_column(slices: int, body_hu: float, canal_hu: float = 20.0):
    """A chest slab on a 2 mm grid (rows front to back): two lungs, and behind them a vertebra: a body (rows
    60-77, 40 mm wide) of `body_hu` with a 2 mm cortex, the spinal canal (rows 80-87) of `canal_hu` in a bony ring
    of pedicles and laminae, and fat around."""
    hu = np.full((slices, 110, 120), -100.0)
    hu[:, 10:90, 5:35] = hu[:, 10:90, 85:115] = -850.0           # lungs
    hu[:, 60:78, 50:70] = body_hu                                  # vertebral body
    hu[:, 59, 50:70] = hu[:, 78, 50:70] = 300.0                    # its cortex, front and back
    hu[:, 78:96, 53:67] = 400.0                                    # pedicles, laminae, spinous process
    hu[:, 80:88, 56:64] = canal_hu                                 # the canal
    return hu


def test_an_osteoporotic_vertebral_body_is_found_in_front_of_the_spinal_canal():
    """Trabecular bone of 140 HU is under the CTA bone threshold, so the spine's front would be taken at its
    posterior elements (row 78) and the body left inside the heart region: in front of the canal, found as a column
    of soft tissue in a bony ring, the body's front is row 59 (its cortex)."""
    spacing = (2.0, 2.0, 2.0)
    hu = _vertebral_column(15, body_hu=140.0)
    lungs = anatomy.find_lungs(hu, spacing)
    spans = anatomy._lung_spans(lungs, spacing)
    assert list(anatomy._body_fronts(hu, lungs, spans, spacing)) == [59] * 15
    bone = ndimage.uniform_filter(hu, size=(1, 3, 3)) >= anatomy.CTA_BONE_HU
    fronts, _ = anatomy._spine_fronts(lungs, spans, bone, spacing, anatomy._body_fronts(hu, lungs, spans, spacing))
    assert list(fronts) == [59] * 15


def test_a_hole_of_enhanced_myocardium_is_not_the_canal():
    """On CTA a hole in bright structures may be myocardium between iodine-filled chambers: 120 HU is not the
    canal's content (cord, CSF, fat), so no body is looked for in front of it."""
    spacing = (2.0, 2.0, 2.0)
    hu = _vertebral_column(15, body_hu=140.0, canal_hu=120.0)
    lungs = anatomy.find_lungs(hu, spacing)
    assert anatomy._lung_spans(lungs, spacing)[7] is not None  # the lungs are there: only the content decides
    assert (anatomy._body_fronts(hu, lungs, anatomy._lung_spans(lungs, spacing), spacing) == -1).all()



def test_a_calcified_ring_beside_the_midline_is_not_the_canal():
    """A calcified descending aorta seen from above is a ring around soft tissue too, but 20-40 mm left of the
    midline: the same ring-and-body arrangement is the canal on the midline (row 59, its body's front) and nothing
    30 mm to the side."""
    spacing = (2.0, 2.0, 2.0)
    on_midline = _vertebral_column(15, body_hu=140.0)
    beside = np.full_like(on_midline, -100.0)
    beside[:, 10:90, 5:35] = beside[:, 10:90, 85:115] = -850.0   # the same lungs
    beside[:, :, 65:120] = on_midline[:, :, 50:105]                # the ring and block moved 30 mm to the left
    beside[:, 10:90, 85:115] = -850.0
    for hu, expected in ((on_midline, 59), (beside, -1)):
        lungs = anatomy.find_lungs(hu, spacing)
        assert set(anatomy._body_fronts(hu, lungs, anatomy._lung_spans(lungs, spacing), spacing)) == {expected}


def test_the_sternum_is_found_where_its_pale_marrow_leaves_only_fragments_of_cortex():
    """Nothing of the heart lies in front of the sternum's back, so the heart region ends there. An older patient's
    sternum shows on CTA (bone over 180 HU) only as fragments of cortex, 0.6 cm2 in each slice (one slice's front
    cortex, the next slice's back cortex), none of them a sternum alone: in the slices within 5 mm together they are the plate, whose back is row 14 in every
    slice. A bright vein joined to it (reaching row 20 in one slice) does not move the back; a contrast-filled
    internal thoracic artery (16 mm2) is not a sternum."""
    spacing = (2.0, 2.0, 2.0)
    lungs = np.zeros((15, 100, 120), bool)
    lungs[:, 10:90, 5:55] = lungs[:, 10:90, 65:115] = True      # the lungs' front is row 10
    spans = anatomy._lung_spans(lungs, spacing)
    sternum = np.zeros_like(lungs)
    sternum[::2, 9:12, 52:57] = sternum[1::2, 12:15, 62:67] = True  # cortex fragments, 15 pixels (60 mm2) each
    assert all(anatomy._sternum_back(plane, span, 10, spacing) is None for plane, span in zip(sternum, spans, strict=True))
    assert list(anatomy._sternum_backs(lungs, spans, sternum, spacing)) == [14] * 15
    sternum[7, 15:21, 62:66] = True                              # a vein joined to it, in one slice
    assert list(anatomy._sternum_backs(lungs, spans, sternum, spacing)) == [14] * 15
    artery = np.zeros_like(lungs)
    artery[:, 9:11, 58:60] = True
    assert list(anatomy._sternum_backs(lungs, spans, artery, spacing)) == [-1] * 15


def test_an_intervertebral_disc_does_not_move_the_spine_front_back():
    """A disc (80 HU, 4 mm) between two osteoporotic bodies is not bone, so the walk from the canal stops at the
    canal's wall there; the bodies above and below it are as deep, and the spine's front stays at row 59 through
    the disc, so the disc's front (with any calcium on it) is not left inside the heart region."""
    spacing = (2.0, 2.0, 2.0)
    hu = _vertebral_column(15, body_hu=140.0)
    hu[7:9, 59:79, 50:70] = 80.0                                    # the disc, without cortex
    lungs = anatomy.find_lungs(hu, spacing)
    assert list(anatomy._body_fronts(hu, lungs, anatomy._lung_spans(lungs, spacing), spacing)) == [59] * 15


def test_calcium_above_where_the_great_vessels_join_the_heart_is_not_coronary():
    """The coronaries leave the aortic sinuses and run down the heart: on the voxel-built thorax, whose aorta joins
    the heart at S 90 mm, a calcified node beside the ascending aorta at S 120 mm (30 mm higher, inside the
    searched region) is 'not coronary'; a plaque on the heart's front-left surface stays a left coronary, and
    without the great vessels' tubes no height limit applies."""
    hu, image_of = _thorax_with_aorta()
    node = (40, 80 - 15 // 2, 80 + (-5 - 21) // 2)      # x = -26 mm: in the fat right of the aorta (radius 14)
    hu[node[0], node[1]:node[1] + 2, node[2]:node[2] + 2] = 600.0
    plaque = (15, 80 - 42 // 2, 80 + 32 // 2)
    hu[plaque[0], plaque[1]:plaque[1] + 2, plaque[2]:plaque[2] + 2] = 600.0
    heart = anatomy.find_heart(image_of(hu))
    base = territories.heart_base_s_mm(heart.great_vessel_tubes)
    assert base == pytest.approx(90.0, abs=6.0) and heart.heart_region[node]

    def assign(base_s_mm):
        return territories.assign(hu >= 130, heart.heart_region,
                                  lambda ijk: np.asarray(ijk, float) * (2.0, 2.0, 3.0) + (-160.0, -160.0, 0.0),
                                  (2.0, 2.0, 3.0), heart_base_s_mm=base_s_mm)

    found = assign(base)
    assert found.labels[node] == territories.NOT_CORONARY
    assert any("above the coronary ostia" in e["reason"] for e in found.per_candidate)
    assert found.labels[plaque] in (territories.LAD, territories.LCX)
    assert assign(None).labels[node] in (territories.LAD, territories.LCX, territories.RCA)
    # Calcium in the ascending aorta's wall at the node's height is the aorta's, whatever its height: a finding
    # of its own ("aorta or valve"), not hilar or mediastinal calcium.
    wall = (40, 80 - 15 // 2, 80 + (-5 + 12) // 2)      # 12 mm left of the aorta's centre: inside its wall
    hu[wall[0], wall[1]:wall[1] + 2, wall[2]:wall[2] + 2] = 600.0
    found = territories.assign(hu >= 130, heart.heart_region,
                               lambda ijk: np.asarray(ijk, float) * (2.0, 2.0, 3.0) + (-160.0, -160.0, 0.0),
                               (2.0, 2.0, 3.0), great_vessels=heart.great_vessels, heart_base_s_mm=base)
    assert found.labels[wall] == territories.AORTA_OR_VALVE and found.labels[node] == territories.NOT_CORONARY


def test_the_descending_aorta_beside_the_spine_does_not_set_where_the_great_vessels_join_the_heart():
    """On the voxel-built thorax (ascending aorta joining the heart at S 90 mm) a round 12 mm tube of blood in fat
    runs down the top of the scan 8 mm in front of the spine and ends at S 120 mm, as a piece of the descending
    aorta can: it is a great vessel (its wall calcium is aortic) but it does not join the heart, so the coronary
    height limit stays at the ascending aorta's end and a calcified node at S 120 mm stays 'not coronary'."""
    hu, image_of = _thorax_with_aorta()
    y, x = (np.mgrid[:160, :160] - 80.0) * 2.0
    hu[40:][:, (x - 20) ** 2 + (y - 40) ** 2 <= 12 ** 2] = 40.0   # its back 8 mm in front of the spine (y 60)
    node = (40, 80 - 15 // 2, 80 + (-5 - 21) // 2)                  # in the fat right of the ascending aorta
    hu[node[0], node[1]:node[1] + 2, node[2]:node[2] + 2] = 600.0
    heart = anatomy.find_heart(image_of(hu))
    descending = [tube for tube in heart.great_vessel_tubes if tube["posterior_mediastinum"]]
    assert [tube["from_s_mm"] for tube in descending] == [pytest.approx(120.0, abs=6.0)]
    base = territories.heart_base_s_mm(heart.great_vessel_tubes)
    assert base == pytest.approx(90.0, abs=6.0)
    found = territories.assign(hu >= 130, heart.heart_region,
                               lambda ijk: np.asarray(ijk, float) * (2.0, 2.0, 3.0) + (-160.0, -160.0, 0.0),
                               (2.0, 2.0, 3.0), heart_base_s_mm=base)
    assert found.labels[node] == territories.NOT_CORONARY


def test_the_noise_floor_is_the_blood_plus_seven_sd_of_1_mm2_means():
    """White noise of SD 20 HU on a 0.5 mm grid: the mean over the area rule's 1 mm2 (2 x 2 pixels) has SD
    20 / 2 = 10 HU, so a speck must reach 40 + 7 x 10 = 110 HU over 1 mm2 to be more than noise."""
    from cardioquant.calcium import noise

    hu = 40.0 + np.random.default_rng(0).normal(0, 20, (6, 200, 200)).astype(np.float32)
    heart = np.zeros(hu.shape, bool)
    heart[:, 40:160, 40:160] = True
    floor = noise.noise_floor(hu, heart, (0.5, 0.5, 3.0))
    assert floor.blood_hu == pytest.approx(40.0, abs=1.0)
    assert floor.noise_sd_hu == pytest.approx(10.0, rel=0.05)
    assert floor.floor_hu == pytest.approx(110.0, abs=4.0)


def test_a_faint_speck_touching_the_lung_is_not_coronary_but_a_dense_plaque_there_is():
    """1 mm voxels, blood 40 HU with noise SD 10 HU over 1 mm2: the floor is 40 + 7 x 10 = 110 HU. Where the heart
    meets the lung (air at x >= 50) a speck must also leave Agatston's lowest density class (>= 200 HU): a 160 HU
    speck 1 mm from the lung's air is set aside as possible noise, for review; the same speck 12 mm from it, and a
    400 HU plaque touching it, are coronary."""
    from cardioquant.calcium import noise

    hu = np.full((60, 60, 60), 40.0, np.float32)
    hu[:, :, 43:50] = -100.0                                 # epicardial fat on the heart's left side
    hu[:, :, 50:] = -850.0                                   # lung, right up to the region's left edge
    specks = {"faint, at the lung": ((30, 20, 48), 160.0), "faint, inside": ((30, 20, 39), 160.0),
              "dense, at the lung": ((30, 40, 48), 400.0)}
    for (k, j, i), value in specks.values():
        hu[k, j:j + 2, i:i + 2] = value
    floor = noise.NoiseFloor(blood_hu=40.0, noise_sd_hu=10.0, floor_sd=7.0)
    found = territories.assign(hu >= 130, _heart_cube(), lambda ijk: np.asarray(ijk, float), (1.0, 1.0, 1.0),
                               hu=hu, floor=floor)
    at = {name: found.labels[where] for name, (where, _) in specks.items()}
    assert at["faint, at the lung"] == territories.NOT_CORONARY
    assert at["faint, inside"] in (territories.LAD, territories.LCX)
    assert at["dense, at the lung"] in (territories.LAD, territories.LCX)
    reasons = [e["reason"] for e in found.per_candidate if e["label"] == territories.NOT_CORONARY]
    assert len(reasons) == 1 and reasons[0].startswith(territories.FAINT_AT_LUNG)


def test_calcium_with_no_epicardial_fat_near_it_is_not_coronary():
    """1 mm voxels: a heart of blood and muscle (40 HU) with a 4 mm layer of epicardial fat (-100 HU) in front. The
    coronaries run in that fat: a plaque in it is coronary (LAD), one 3 mm behind it still is, and one 12 mm deep in
    the blood (a chamber's or the aortic root's) is not."""
    hu = np.full((60, 60, 60), 40.0, np.float32)
    hu[:, 10:14, :] = -100.0
    places = {"in the fat": (30, 12, 40), "3 mm behind it": (30, 16, 40), "12 mm deep": (30, 25, 40)}
    for k, j, i in places.values():
        hu[k, j:j + 2, i:i + 2] = 400.0
    found = territories.assign(hu >= 130, _heart_cube(), lambda ijk: np.asarray(ijk, float), (1.0, 1.0, 1.0), hu=hu)
    at = {name: found.labels[where] for name, where in places.items()}
    assert at["in the fat"] == territories.LAD and at["3 mm behind it"] == territories.LAD
    assert at["12 mm deep"] == territories.NOT_CORONARY


def test_calcium_thicker_than_a_coronary_artery_is_a_node_not_coronary_and_a_thick_one_is_flagged():
    """1 mm voxels: an 80 mm heart with a 20 mm layer of epicardial fat in front, and in the fat, on the heart's left,
    three calcifications of 600 HU: a 2 x 2 mm plaque (a coronary's, 20 mm lower), a ball 9 mm across (a small
    calcified lymph node, or a coronary's calcium with its blooming at the most) and one 13 mm across (a calcified
    lymph node: no coronary artery is that thick). The plaque is LAD, unflagged; the 9 mm ball is scored and flagged;
    the 13 mm ball is not coronary."""
    heart = np.zeros((100, 100, 100), bool)
    heart[10:90, 10:90, 10:90] = True
    hu = np.full(heart.shape, 40.0, np.float32)
    hu[:, 10:30, :] = -100.0
    hu[30, 19:21, 61:63] = 600.0  # x runs to the left: the heart's left front, the LAD's place
    kk, jj, ii = np.indices(heart.shape)
    for centre_i, radius in ((70, 4), (83, 6)):
        hu[(kk - 50) ** 2 + (jj - 20) ** 2 + (ii - centre_i) ** 2 <= radius ** 2] = 600.0
    found = territories.assign(hu >= 130, heart, lambda ijk: np.asarray(ijk, float), (1.0, 1.0, 1.0), hu=hu)
    plaque, ball, node = (next(e for e in found.per_candidate if e["candidate"] == found.components[at]) for at in
                          ((30, 20, 62), (50, 20, 70), (50, 20, 83)))
    assert plaque["label"] == territories.LAD and not plaque["review"]
    assert ball["label"] == territories.LAD and ball["review"] and "lymph node?" in ball["reason"]
    assert node["label"] == territories.NOT_CORONARY and "thicker than any coronary artery" in node["reason"]


def test_thickness_in_plane_is_exact_for_a_bar_and_errs_under_for_a_disk():
    bar = np.zeros((3, 20, 20), bool)
    bar[1, 5:8, 2:18] = True  # 3 pixels wide, 16 long
    assert territories.across_mm(bar, (0.5, 0.5, 3.0)) == pytest.approx(1.5)
    rows, cols = np.indices((20, 20)) - 10
    disk = (rows ** 2 + cols ** 2 <= 16)[None]  # 9 pixels across
    assert 7.0 <= territories.across_mm(disk, (1.0, 1.0, 1.0)) <= 9.0


def _low_dose(n_calcifications: int):
    """A gated phantom with the grainy noise of a low-dose scan: correlated over about a pixel, SD 30 HU."""
    case = phantom.make_cardiac_phantom(30510, spacing=(0.5, 0.5, 3.0), noise_hu=0.0, n_calcifications=n_calcifications)
    grain = ndimage.gaussian_filter(np.random.default_rng(1).standard_normal(case.hu.shape).astype(np.float32), (0, 1, 1))
    case.hu += grain * (30.0 / grain.std())
    return case


def test_noise_specks_on_a_low_dose_scan_are_not_coronary_calcium():
    """On a low-dose scan noise alone forms specks of 1 mm2 at 130 HU all over the heart: without the noise floor
    (--noise-floor-sd 0) this calcium-free heart scores over 50 (those in the epicardial fat; the ones deep in the
    blood are not coronary anyway). They are set aside as possible noise, with a
    warning: the calcium-free heart scores 0, and the same heart with calcifications keeps them (each artery
    within 5 % of the calcifications' own Agatston on the same noisy scan)."""
    from cardioquant.calcium import scoring
    from cardioquant.calcium.pipeline import run
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    for n_calcifications in (0, 8):
        case = _low_dose(n_calcifications)
        result = run(evaluation.phantom_loaded(case), settings_for("calcium", device="cpu"), Progress())
        truth = scoring.score(case.hu, np.where(case.calcium_labels <= 4, case.calcium_labels, 0), case.spacing)
        assert any("noisy scan" in warning for warning in result.warnings)
        assert result.summary["threshold"]["noise"]["set_aside"] >= 10
        if n_calcifications == 0:
            assert result.summary["total"]["agatston"] == 0 and result.summary["risk"]["classic"] == "0"
            without = run(evaluation.phantom_loaded(case), settings_for("calcium", device="cpu", noise_floor_sd=0.0),
                          Progress()).summary
            assert without["total"]["agatston"] > 50 and "noise" not in without["threshold"]
        else:
            total = truth.total["agatston"]
            assert total > 100
            for artery, values in result.summary["arteries"].items():
                assert abs(values["agatston"] - truth.arteries[artery]["agatston"]) <= 0.05 * total


def test_the_artery_segments_hold_only_lesions_that_pass_the_area_rule(gated_pair):
    """A speck of one 0.64 mm2 pixel at 400 HU beside a coronary artery is no lesion by the 1 mm2 rule: it is not
    shown in an artery's segment, and every piece of an artery segment (8-connected on its slice) is at least
    1 mm2, as scored."""
    case = gated_pair[0]
    artery = next(c.artery for c in case.calcifications if 1 <= c.artery <= 4)
    beside = (case.vessel_labels == artery) & ~ndimage.binary_dilation(case.calcium_labels > 0, iterations=4)
    k, j, i = np.argwhere(beside)[len(np.argwhere(beside)) // 2]
    specked = phantom.CardiacPhantom(**{**vars(case), "hu": case.hu.copy()})
    specked.hu[k, j, i] = 400.0
    labels = sitk.GetArrayFromImage(evaluation.run_pipeline(specked, mode="auto").label_image)
    assert not 1 <= labels[k, j, i] <= 4
    least_pixels = int(np.ceil(1.0 / (case.spacing[0] * case.spacing[1])))
    for plane in labels:
        for value in range(1, 5):
            pieces, count = ndimage.label(plane == value, np.ones((3, 3)))
            assert count == 0 or np.bincount(pieces.ravel())[1:].min() >= least_pixels


def test_blood_brighter_than_unenhanced_blood_on_a_non_contrast_reading_is_warned_of():
    """A late or weak contrast phase (blood 105 HU: under the 130 HU CTA call) is scored as non-contrast, and the
    reader is told that the blood is brighter than unenhanced blood can be; a scan forced to non-contrast while its
    blood carries iodine is told too. Unenhanced blood (40 HU) gets no such warning."""
    def blood_warnings(case, mode="auto"):
        result = evaluation.run_pipeline(case, mode=mode)
        return result.summary["mode"], [w for w in result.warnings if "brighter than unenhanced blood" in w]

    weak = phantom.make_cardiac_phantom(30520, spacing=(1.0, 1.0, 3.0), contrast=True, contrast_hu=105.0,
                                        n_calcifications=4)
    mode, said = blood_warnings(weak)
    assert mode == "noncontrast" and len(said) == 1 and "contrast may be present" in said[0]
    arterial = phantom.make_cardiac_phantom(30520, spacing=(1.0, 1.0, 3.0), contrast=True, n_calcifications=4)
    assert blood_warnings(arterial, mode="noncontrast")[1]
    unenhanced = phantom.make_cardiac_phantom(30520, spacing=(1.0, 1.0, 3.0), n_calcifications=4)
    assert blood_warnings(unenhanced) == ("noncontrast", [])


def test_a_weakly_enhanced_scan_called_cta_takes_its_threshold_from_the_blood_that_called_it(tmp_path, monkeypatch):
    """A venous or late phase (blood 160 HU: a CTA by the blood inside the heart, but under the 180 HU the aortic
    ROI looks for) was refused with 'this does not look like a contrast CTA'. Its adaptive threshold now comes from
    that blood: its median plus k robust SD (about the phantom's noise, 15 HU, not the spread down to the
    myocardium among it), and the JSON and the report say so; the report's LM row says it is scored with the LAD."""
    from cardioquant import report

    pages, save = [], report.save_page
    monkeypatch.setattr(report, "save_page", lambda figure, path, warnings=(): save(figure, path, warnings)
                        or pages.append(figure))
    case = phantom.make_cardiac_phantom(30520, spacing=(1.0, 1.0, 3.0), contrast=True, contrast_hu=160.0,
                                        noise_hu=15.0, n_calcifications=4)
    result = evaluation.run_pipeline(case, mode="auto")
    lumen = result.summary["threshold"]["lumen"]
    assert result.summary["mode"] == "cta" and lumen["source"].startswith("blood inside the heart")
    assert lumen["mean_hu"] == pytest.approx(160.0, abs=15.0) and 15.0 <= lumen["sd_hu"] <= 22.5
    assert result.summary["threshold"]["threshold_hu"] == pytest.approx(lumen["mean_hu"] + 3 * lumen["sd_hu"])
    result.report(tmp_path / "report.png", result.warnings)
    settings_line = next(t.get_text() for t in pages[0].texts if t.get_text().startswith("Settings:"))
    assert f"lumen {lumen['mean_hu']:.0f} +- {lumen['sd_hu']:.0f} HU from the blood inside the heart" in settings_line
    table = next(ax.tables[0] for ax in pages[0].axes if ax.tables).get_celld()
    assert [table[(1, column)].get_text().get_text() for column in range(5)] == ["LM"] + ["with LAD"] * 4


def test_the_blood_is_measured_in_the_heart_not_in_a_dense_liver_dome_under_it():
    """The heart search region can take in the liver dome under the heart. Without contrast the liver is brighter
    than the blood (55-65 HU; 90-140 with amiodarone, which many cardiac patients take): a heart of 40 HU blood, 80 mm
    across, resting on a dome of liver at 135 HU (120 mm wide, 24 mm high), both in the region. The blood must read
    40 HU, in the heart's slices: measured in the liver, the scan would be called a CTA (>= 130 HU)."""
    spacing = (2.0, 2.0, 2.0)
    k, j, i = np.mgrid[0:60, 0:70, 0:70] * 2.0
    heart = (k - 60.0) ** 2 + (j - 70.0) ** 2 + (i - 70.0) ** 2 <= 40.0 ** 2
    liver = (k < 24.0) & ((j - 70.0) ** 2 + (i - 70.0) ** 2 <= 60.0 ** 2)
    hu = np.where(heart, 40.0, np.where(liver, 135.0, -100.0)).astype(np.float32)
    pool = anatomy.blood_pool(hu, heart | liver, spacing)
    assert np.median(hu[pool]) == 40.0
    assert np.nonzero(pool.any(axis=(1, 2)))[0].min() * 2.0 >= 24.0


def test_a_speck_in_a_dense_liver_is_noise_but_the_same_speck_in_epicardial_fat_is_calcium():
    """1 mm voxels, blood 40 HU, noise SD 10 HU over 1 mm2: the scan's floor is 40 + 7 x 10 = 110 HU. The liver dome
    in the bottom of the heart region reads 110 HU (amiodarone), under a layer of fat: a 150 HU speck of it
    (noise in a tissue only 20 HU under the threshold) stands 4 SD out of it, under the 7 the floor asks: not
    coronary, kept for review as possible noise. The same 150 HU speck in the epicardial fat in front of the heart
    stands 11 SD over the blood and the fat around it: calcium, LAD."""
    from cardioquant.calcium import noise

    hu = np.full((60, 60, 60), 40.0, np.float32)
    hu[:, 10:14, :] = -100.0                                 # epicardial fat in front
    hu[10:20, 10:50, 10:50] = 110.0                          # the liver dome, dense
    hu[20:24, 10:50, 10:50] = -100.0                         # the fat between it and the heart
    specks = {"in the liver": (18, 30, 30), "in the fat": (30, 12, 40)}
    for k, j, i in specks.values():
        hu[k, j:j + 2, i:i + 2] = 150.0
    floor = noise.NoiseFloor(blood_hu=40.0, noise_sd_hu=10.0, floor_sd=7.0)
    found = territories.assign(hu >= 130, _heart_cube(), lambda ijk: np.asarray(ijk, float), (1.0, 1.0, 1.0),
                               hu=hu, floor=floor)
    assert found.labels[specks["in the fat"]] == territories.LAD
    assert found.labels[specks["in the liver"]] == territories.NOT_CORONARY
    reasons = [e["reason"] for e in found.per_candidate if e["label"] == territories.NOT_CORONARY]
    assert len(reasons) == 1 and reasons[0].startswith(territories.POSSIBLE_NOISE) and "110 HU tissue" in reasons[0]


def test_a_heart_mask_seg_of_many_structures_gives_its_heart_and_aorta_not_the_rest(tmp_path):
    """TotalSegmentator's DICOM output (--output_type dicom) is one SEG holding every structure it found. Given as
    --heart-mask, its "heart" segment is the heart and its "aorta" segment the aorta (grown by the wall); its lungs and
    vertebrae are neither. A SEG of several structures with no heart is refused in one line naming its segments."""
    from dicom_factory import write_ct_series, write_seg

    from cardioquant.calcium.pipeline import AORTA_WALL_MM, given_heart
    from cardioquant.imageio import read_image

    files = write_ct_series(tmp_path / "ct", np.zeros((10, 40, 40), np.int16), spacing=(1.0, 1.0, 3.0))
    labels = np.zeros((10, 40, 40), np.uint8)
    labels[2:8, 10:25, 10:25] = 2   # heart
    labels[2:8, 26:32, 14:20] = 4   # aorta
    labels[:, :, 30:] = 1           # lung_upper_lobe_left
    labels[4:7, 34:39, 2:8] = 3     # vertebrae_T8
    seg = write_seg(tmp_path / "total.dcm", files, labels,
                    {1: "lung_upper_lobe_left", 2: "heart", 3: "vertebrae_T8", 4: "aorta"})
    grid = read_image(tmp_path / "ct").image
    options = type("Options", (), {"heart_mask": str(seg), "device": "cpu"})()
    heart, aorta, _ = given_heart(options, grid, grid)
    assert np.array_equal(heart, labels == 2)
    assert aorta is not None and (aorta >= (labels == 4)).all() and not aorta[labels == 1].any()
    grown = int(round(AORTA_WALL_MM))
    assert aorta[5, 26 - grown, 16] and not aorta[5, 26 - grown - 2, 16]
    without_heart = np.select([labels == 1, labels == 3, labels == 4], [1, 2, 3], 0).astype(np.uint8)
    no_heart = write_seg(tmp_path / "no_heart.dcm", files, without_heart,
                         {1: "lung_upper_lobe_left", 2: "vertebrae_T8", 3: "aorta"})
    options.heart_mask = str(no_heart)
    with pytest.raises(InputError, match="none of this segmentation's 3 segments is the heart"):
        given_heart(options, grid, grid)


def test_a_heart_mask_label_map_of_many_structures_gives_totalsegmentators_heart_or_is_refused(tmp_path):
    """TotalSegmentator's `total` label map (its --ml file: every structure, the heart 51, the aorta 52) given as
    --heart-mask: its heart is the heart and its aorta the aorta, grown by the wall; its vertebrae and lungs are
    neither (the whole map had been taken as the heart: the contrast chest CT's bones scored Agatston 6357). A map
    of several labels without TotalSegmentator's heart is refused in one line; a mask of one value, whatever it
    is, is the heart."""
    from cardioquant.calcium.pipeline import AORTA_WALL_MM, given_heart

    grid = sitk.Image(40, 40, 10, sitk.sitkInt16)
    grid.SetSpacing((1.0, 1.0, 3.0))
    labels = np.zeros((10, 40, 40), np.uint8)
    labels[2:8, 10:25, 10:25] = 51  # heart
    labels[2:8, 26:32, 14:20] = 52  # aorta
    labels[:, :, 30:] = 10          # lung_upper_lobe_left
    labels[4:7, 34:39, 2:8] = 36    # vertebrae_T8
    options = type("Options", (), {"heart_mask": str(tmp_path / "total.nii.gz"), "device": "cpu"})()
    sitk.WriteImage(geometry.image_from_array(labels, grid), options.heart_mask)
    heart, aorta, source = given_heart(options, grid, grid)
    assert np.array_equal(heart, labels == 51) and "TotalSegmentator" in source
    assert aorta is not None and (aorta >= (labels == 52)).all() and not aorta[labels == 10].any()
    assert aorta[5, 26 - int(round(AORTA_WALL_MM)), 16]

    sitk.WriteImage(geometry.image_from_array(np.where(labels == 51, 3, labels).astype(np.uint8), grid),
                    options.heart_mask)
    with pytest.raises(InputError, match=r"holds 4 labels \(3, 10, 36, 52\) and none is TotalSegmentator's heart"):
        given_heart(options, grid, grid)
    sitk.WriteImage(geometry.image_from_array(np.where(labels == 51, 255, 0).astype(np.uint8), grid),
                    options.heart_mask)
    assert np.array_equal(given_heart(options, grid, grid)[0], labels == 51)


def test_a_circumflex_lesion_as_large_as_mitral_annular_calcification_is_flagged_for_review():
    """Mitral annular calcification lies a few millimetres from the circumflex, in the same place on the heart: a band
    along the back of the mitral ring, far larger than a coronary plaque. A calcification called LCX of 860 mm3 is
    scored and flagged (circumflex, or the mitral annulus?); a 48 mm3 plaque beside it is not flagged for that."""
    hu, image_of = _thorax_with_aorta()
    band = (slice(10, 22), slice(80 + 28 // 2, 80 + 28 // 2 + 3), slice(80 + 42 // 2, 80 + 42 // 2 + 2))  # x 42, y 28 mm
    plaque = (slice(25, 26), slice(80 + 14 // 2, 80 + 14 // 2 + 2), slice(80 + 48 // 2, 80 + 48 // 2 + 2))
    hu[band] = hu[plaque] = 600.0
    heart = anatomy.find_heart(image_of(hu))
    to_lps = lambda ijk: np.asarray(ijk, float) * (2.0, 2.0, 3.0) + (-160.0, -160.0, 0.0)  # noqa: E731
    found = territories.assign(hu >= 130, heart.heart_region, to_lps, (2.0, 2.0, 3.0), hu=hu)
    band_entry, plaque_entry = (next(e for e in found.per_candidate if e["candidate"] == found.components[where][0, 0, 0])
                                for where in (band, plaque))
    assert band_entry["label"] == plaque_entry["label"] == territories.LCX
    assert band_entry["volume_mm3"] == pytest.approx(864.0)
    assert band_entry["review"] and "mitral annular calcification" in band_entry["reason"]
    assert "mitral annular calcification" not in plaque_entry["reason"]
