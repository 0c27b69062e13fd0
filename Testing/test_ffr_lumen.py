"""CT-FFR lumen sources: seed points (minimal paths + half-maximum lumen), the network's tree splitting, the CCTA
phantom, and the network end to end. Truth: the phantoms' known centerlines, radii and labels."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from cardioquant import cli
from cardioquant.errors import InputError
from cardioquant.ffr import cta_phantom, lumen_network, model, phantom, seeds
from cardioquant.ffr.physics import BoundaryConditions
from cardioquant.metrics import dice


def run(capsys, *args):
    code = cli.main([str(a) for a in args] + ["--quiet"])
    return code, capsys.readouterr()


@pytest.fixture(scope="module")
def tree_cta(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeds")
    paths = phantom.left_tree(0.3)
    image, lumen = phantom.voxelise(paths, spacing=0.3)
    sitk.WriteImage(image, str(folder / "cta.nrrd"), True)
    return folder, paths, image, lumen


def seed_text(points) -> str:
    return ";".join(",".join(f"{v:.2f}" for v in p) for p in points)


def test_seeds_give_the_lumen_and_ffr_of_the_true_geometry(capsys, tree_cta):
    folder, paths, image, lumen = tree_cta
    points = np.vstack([paths[0].points[0]] + [p.points[-2] for p in paths])  # ostium, then every distal end
    mask, details = seeds.lumen_from_seeds(image, points)
    found, truth = sitk.GetArrayFromImage(mask) > 0, sitk.GetArrayFromImage(lumen) > 0
    assert dice(found, truth) > 0.97
    assert 150 < details["threshold_hu"] < 420  # between tissue (40 HU) and lumen (420 HU)
    code, _ = run(capsys, "ffr", folder / "cta.nrrd", "--seeds", seed_text(points), "-o", folder / "out")
    assert code == 0
    result = json.loads((folder / "out" / "ffr.json").read_text())
    expected = sorted(f[-1] for f in model.solve_tree(paths, BoundaryConditions()).ffr)
    assert sorted(v["distal_ffr"] for v in result["vessels"].values()) == pytest.approx(expected, abs=0.03)
    assert set(result["vessels"]) == {f"left_{n}" for n in range(1, 6)}
    assert result["lesions"] and result["lesions"][0]["area_stenosis_percent"] == pytest.approx(70, abs=8)


def test_seeds_follow_only_the_vessels_asked_for(tree_cta):
    _, paths, image, _ = tree_cta
    lad_only = np.vstack([paths[0].points[0], paths[0].points[-2]])
    mask = sitk.GetArrayFromImage(seeds.lumen_from_seeds(image, lad_only)[0]) > 0
    d1_end = image.TransformPhysicalPointToIndex(tuple(paths[1].points[-5] * [-1, -1, 1]))
    lad_end = image.TransformPhysicalPointToIndex(tuple(paths[0].points[-5] * [-1, -1, 1]))
    assert mask[lad_end[::-1]] and not mask[d1_end[::-1]]


def test_seed_outside_the_vessel_is_clear(tree_cta):
    _, paths, image, _ = tree_cta
    outside = paths[0].points[100] + [-4.0, -4.0, 0.0]  # 4.2 mm from the nearest lumen: tissue
    with pytest.raises(InputError, match="seed 2 .*reads .* HU: place it inside"):
        seeds.lumen_from_seeds(image, np.vstack([paths[0].points[0], outside]))


def test_end_point_cut_off_from_the_ostium_is_clear(tree_cta):
    _, paths, image, lumen = tree_cta
    array = sitk.GetArrayFromImage(image)
    mid = image.TransformPhysicalPointToIndex(tuple(paths[3].points[-40] * [-1, -1, 1]))  # mid LCX
    array[mid[2] - 12:mid[2] + 12, mid[1] - 12:mid[1] + 12, mid[0] - 12:mid[0] + 12] = 40.0  # an occlusion
    occluded = sitk.GetImageFromArray(array)
    occluded.CopyInformation(image)
    with pytest.raises(InputError, match="end point 1 .* not connected to the ostium"):
        seeds.lumen_from_seeds(occluded, np.vstack([paths[3].points[0], paths[3].points[-2]]))


def test_seed_parsing_markups_lps_and_text(tmp_path):
    markups = {"markups": [{"type": "Fiducial", "coordinateSystem": "LPS",
                            "controlPoints": [{"position": [1.0, 2.0, 3.0]}, {"position": [-4.0, 5.0, 6.0]}]}]}
    (tmp_path / "s.mrk.json").write_text(json.dumps(markups))
    assert seeds.parse_seeds(str(tmp_path / "s.mrk.json")).tolist() == [[-1, -2, 3], [4, -5, 6]]
    assert seeds.parse_seeds("1,2,3; 4,5,6").tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(InputError, match="at least two points"):
        seeds.parse_seeds("1,2,3")
    with pytest.raises(InputError, match="markups file not found"):
        seeds.parse_seeds(str(tmp_path / "missing.mrk.json"))


def _tube_scene():
    """An aorta (vertical cylinder) with a tube leaving it towards the patient's left and one towards the right,
    plus a loose fragment: on a 0.5 mm LPS grid whose x axis runs right-to-left."""
    shape = (60, 80, 120)  # k, j, i
    k, j, i = np.indices(shape)
    reference = sitk.Image(shape[::-1], sitk.sitkInt16)
    reference.SetSpacing((0.5, 0.5, 0.5))
    x_lps = i * 0.5  # LPS x grows towards the patient's left
    aorta = (x_lps - 30) ** 2 + (j * 0.5 - 20) ** 2 <= 8 ** 2
    left = (np.abs(j * 0.5 - 20) <= 1.5) & (np.abs(k * 0.5 - 15) <= 1.5) & (x_lps > 37) & (x_lps < 55)
    right = (np.abs(j * 0.5 - 20) <= 1.2) & (np.abs(k * 0.5 - 10) <= 1.2) & (x_lps < 23) & (x_lps > 5)
    fragment = (np.abs(j * 0.5 - 35) <= 1) & (np.abs(k * 0.5 - 25) <= 1) & (x_lps > 45) & (x_lps < 50)
    return reference, aorta, left, right, fragment


def test_trees_are_split_by_side_at_the_aorta():
    reference, aorta, left, right, fragment = _tube_scene()
    trees, left_out, root = lumen_network.split_trees(left | right | fragment, aorta, reference)
    assert (root == aorta).all()
    assert [t.side for t in trees] == ["left", "right"]
    assert (sitk.GetArrayFromImage(trees[0].mask) > 0).sum() == left.sum()
    assert (sitk.GetArrayFromImage(trees[1].mask) > 0).sum() == right.sum()
    assert trees[0].ostium_ras[0] < trees[1].ostium_ras[0]  # RAS x: patient left is negative
    assert left_out["pieces"] == 1 and left_out["volume_ml"] == pytest.approx(fragment.sum() * 0.125 / 1000, abs=5e-4)


def test_no_aorta_or_no_joining_lumen_is_clear():
    reference, aorta, left, right, fragment = _tube_scene()
    with pytest.raises(InputError, match="no contrast-filled aorta found"):
        lumen_network.split_trees(left, np.zeros_like(aorta), reference)
    with pytest.raises(InputError, match="no coronary artery found joining the aorta"):
        lumen_network.split_trees(fragment, aorta, reference)


def test_cta_phantom_labels_follow_its_true_geometry():
    case = cta_phantom.make_case(12345, spacing=0.5)
    labels = sitk.GetArrayFromImage(case.labels)
    hu = sitk.GetArrayFromImage(case.image)
    for side, paths in case.trees.items():
        assert paths, side
        for path in paths:
            s = path.arc_length()
            inner = path.points[(s > 12) & (path.radii > 0.9)]  # clear of the aortic root and the thinnest ends
            index = np.array([case.image.TransformPhysicalPointToIndex(tuple(p * [-1, -1, 1])) for p in inner])
            assert (labels[tuple(index[:, ::-1].T)] == cta_phantom.LUMEN).mean() > 0.97, path.name
    assert labels[case.image.TransformPhysicalPointToIndex((0.0, 0.0, 10.0))[::-1]] == cta_phantom.AORTA
    assert np.median(hu[labels == cta_phantom.AORTA]) > 200 and np.median(hu[labels == 0]) < 100


@pytest.fixture(scope="module")
def network_case(tmp_path_factory):
    """A held-out CCTA phantom (the network was trained on seeds 60000+, validated on 69000+)."""
    folder = tmp_path_factory.mktemp("network")
    case = cta_phantom.make_case(69321)
    sitk.WriteImage(case.image, str(folder / "cta.nrrd"), True)
    return folder, case


def test_network_finds_both_trees_and_the_ffr_of_the_true_geometry(capsys, network_case):
    from cardioquant.ffr import centerlines as cl
    from cardioquant.ffr import evaluation

    folder, case = network_case
    code, captured = run(capsys, "ffr", folder / "cta.nrrd", "-o", folder / "out", "--device", "cpu")
    assert code == 0, captured.err
    result = json.loads((folder / "out" / "ffr.json").read_text())
    assert set(result["imaging"]["trees"]) == {"left", "right"}
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "out" / "ffr_labels.nrrd")))
    truth_labels = sitk.GetArrayFromImage(case.labels)
    lumen_dice = dice(labels == 1, truth_labels == 1)
    assert lumen_dice > 0.75
    # the written centerlines, solved per tree, against the true geometry under the same boundary conditions
    bc = BoundaryConditions()
    written = cl.read_vtp(folder / "out" / "ffr_centerlines.vtp")
    extracted = {side: model.solve_tree([p for p in written if p.name.startswith(side)], bc, side)
                 for side in ("left", "right")}
    truth = {side: model.solve_tree(paths, bc, side) for side, paths in case.trees.items()}
    comparison = evaluation.compare(extracted, truth)
    assert comparison["outlets_found"] >= 0.5 * comparison["true_outlets"]
    assert comparison["matched"] >= 0.6 * comparison["paths"]
    # On these 0.5 mm phantoms even the true lumen mask gives 0.02-0.08 median error through the same centerline
    # pipeline (sub-voxel throats of severe lesions): make bench prints the spread; 0.03 is met at 0.3 mm.
    assert comparison["median_abs_error"] <= 0.07


def test_network_on_a_non_contrast_scan_is_clear(capsys, network_case, tmp_path):
    folder, case = network_case
    hu = sitk.GetArrayFromImage(case.image)
    hu[hu > 120] = 45  # blood without iodine
    plain = sitk.GetImageFromArray(hu)
    plain.CopyInformation(case.image)
    plain.SetMetaData("modality", "CT")
    sitk.WriteImage(plain, str(tmp_path / "plain.nrrd"), True)
    code, captured = run(capsys, "ffr", tmp_path / "plain.nrrd", "-o", tmp_path / "o", "--device", "cpu")
    assert code == 2 and "contrast" in captured.err


def test_a_chest_ct_without_contrast_is_refused_from_its_hearts_blood_before_the_network_runs(capsys, tmp_path):
    """A thin-slice chest CT with no iodine (a generated thorax: lungs, spine, a heart whose blood reads 40 HU):
    the heart is found between the lungs and its blood read before the coronary network's minutes of work, and one
    line says what was read and what CT-FFR needs; nothing is written."""
    from cardioquant.calcium import evaluation
    from cardioquant.calcium import phantom as chest_phantom

    case = chest_phantom.make_cardiac_phantom(30500, spacing=(0.8, 0.8, 1.0), z_extent_mm=100.0, contrast=False)
    sitk.WriteImage(evaluation.phantom_loaded(case).image, str(tmp_path / "chest.nrrd"), True)
    code, captured = run(capsys, "ffr", tmp_path / "chest.nrrd", "-o", tmp_path / "o", "--device", "cpu")
    assert code == 2 and len(captured.err.strip().splitlines()) == 1
    blood_hu = float(captured.err.split("the blood in the heart reads ")[1].split(" HU")[0])
    assert 20.0 <= blood_hu <= 60.0 and "not a contrast CTA" in captured.err  # unenhanced blood: 20-60 HU
    assert not (tmp_path / "o").exists()
