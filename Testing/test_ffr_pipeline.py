"""CT-FFR end to end: centerline files, lumen masks through vmtk, the output contract, and bad input."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from cardioquant import cli
from cardioquant.errors import InputError
from cardioquant.ffr import centerlines as cl
from cardioquant.ffr import model, phantom, tree
from cardioquant.ffr.physics import BoundaryConditions


def run(capsys, *args):
    code = cli.main([str(a) for a in args] + ["--quiet"])
    return code, capsys.readouterr()


def test_vtp_input_skips_imaging_and_follows_the_contract(capsys, tmp_path):
    cl.write_vtp(phantom.left_tree(0.3), tmp_path / "tree.vtp")
    code, _ = run(capsys, "ffr", tmp_path / "tree.vtp", "-o", tmp_path / "out", "--aortic-pressure", "90")
    assert code == 0
    result = json.loads((tmp_path / "out" / "ffr.json").read_text())
    assert set(result["vessels"]) == {"LAD", "D1", "D2", "LCX", "OM1"}  # names kept from the file's PathNames
    lad = result["vessels"]["LAD"]
    assert lad["distal_ffr"] < 0.9 and lad["min_ffr"] == pytest.approx(lad["distal_ffr"])
    assert lad["length_mm"] == pytest.approx(85.0, abs=0.6) and lad["points"][0] == [0.0, 1.0]
    assert result["vessels"]["LCX"]["distal_ffr"] > 0.95
    assert result["boundary_conditions"]["aortic_pressure_mmhg"] == 90
    lesion = result["lesions"][0]
    assert lesion["area_stenosis_percent"] == pytest.approx(70.0, abs=2.0) and lesion["delta_ffr"] > 0.05
    assert (tmp_path / "out" / "ffr_centerlines.vtp").is_file() and (tmp_path / "out" / "ffr_report.png").is_file()
    written = cl.read_vtp(tmp_path / "out" / "ffr_centerlines.vtp")
    assert [p.name for p in written] == ["LAD", "D1", "D2", "LCX", "OM1"]


@pytest.fixture(scope="module")
def cta_case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cta")
    paths = phantom.left_tree(0.3)
    image, lumen = phantom.voxelise(paths, spacing=0.3)  # CCTA reconstructions are ~0.3-0.4 mm
    sitk.WriteImage(image, str(folder / "cta.nrrd"), True)
    sitk.WriteImage(lumen, str(folder / "lumen.nrrd"), True)
    return folder, paths, image, lumen


def test_centerline_radius_of_known_tubes_within_half_a_voxel(cta_case):
    _, truth, _, lumen = cta_case
    extracted = cl.from_lumen_mask(lumen)
    for path in extracted:
        reference = min(truth, key=lambda p: np.linalg.norm(p.points[-1] - path.points[-1]))
        # compare away from the junction and the ends: true radius at the nearest true centerline point
        s = path.arc_length()
        middle = (s > 15) & (s < s[-1] - 5)
        nearest = [np.argmin(np.linalg.norm(reference.points - q, axis=1)) for q in path.points[middle]]
        error = np.abs(path.radii[middle] - reference.radii[nearest])
        assert np.median(error) <= 0.15 and np.percentile(error, 90) <= 0.3  # within half a 0.3 mm voxel, mostly


def test_ffr_from_lumen_mask_matches_true_geometry(capfd, cta_case):
    folder, truth_paths, _, _ = cta_case
    truth = model.solve_tree(truth_paths, BoundaryConditions())
    code, captured = run(capfd, "ffr", folder / "cta.nrrd", "--lumen-mask", folder / "lumen.nrrd", "-o", folder / "out")
    assert code == 0
    # --quiet, read at the file descriptors (VTK and vmtk write there, past Python's streams): nothing on stdout
    # (vmtk's "Cleaning surface..." included), nothing on stderr (no VTK or Matplotlib warnings).
    assert captured.out == "" and captured.err == ""
    result = json.loads((folder / "out" / "ffr.json").read_text())
    distal = sorted(v["distal_ffr"] for v in result["vessels"].values())
    assert distal == pytest.approx(sorted(f[-1] for f in truth.ffr), abs=0.03)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "out" / "ffr_labels.nrrd")))
    assert labels.sum() == sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "lumen.nrrd"))).sum()
    # the vessel wall carries the FFR of its nearest centerline point: distal LAD wall low, LCX wall high
    import vtk
    from vtk.util import numpy_support

    reader = vtk.vtkXMLPolyDataReader()
    reader.SetFileName(str(folder / "out" / "ffr_surface.vtp"))
    reader.Update()
    surface = reader.GetOutput()
    ffr = numpy_support.vtk_to_numpy(surface.GetPointData().GetArray("FFR"))
    points = numpy_support.vtk_to_numpy(surface.GetPoints().GetData())
    lad_end, lcx_end = truth_paths[0].points[-1], truth_paths[3].points[-1]
    assert ffr[np.linalg.norm(points - lad_end, axis=1) < 3].mean() == pytest.approx(truth.ffr[0][-1], abs=0.04)
    assert ffr[np.linalg.norm(points - lcx_end, axis=1) < 3].mean() > 0.95


def test_ffr_profiles_become_a_plot_chart():
    from cardioquant import scene

    mrml = scene.new_scene()
    chart = scene.plot_profiles(mrml, {"LAD": ([0, 10, 20], [1.0, 0.9, 0.8]), "LCX": ([0, 5], [1.0, 0.99])},
                                "FFR along vessels", "distance_mm", "FFR")
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    series = chart.GetNthPlotSeriesNode(0)
    table = series.GetTableNode()
    assert series.GetName() == "LAD" and table.GetNumberOfRows() == 3
    assert scene.records_from_table_node(table)[2] == {"distance_mm": 20.0, "FFR": 0.8}


def test_vessels_without_stenosis_read_at_least_095():
    result = model.solve_tree(phantom.left_tree(None), BoundaryConditions())
    assert min(f[-1] for f in result.ffr) >= 0.95 and not result.lesions


def test_empty_lumen_mask_is_clear(capsys, cta_case, tmp_path):
    folder, _, image, lumen = cta_case
    empty = sitk.Image(lumen.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(lumen)
    sitk.WriteImage(empty, str(tmp_path / "empty.nrrd"))
    code, captured = run(capsys, "ffr", folder / "cta.nrrd", "--lumen-mask", tmp_path / "empty.nrrd", "-o", tmp_path / "o")
    assert code == 2 and "no coronary lumen" in captured.err


def test_disconnected_lumen_is_clear(capsys, cta_case, tmp_path):
    folder, _, _, lumen = cta_case
    array = sitk.GetArrayFromImage(lumen)
    k = np.nonzero(array.any(axis=(1, 2)))[0]
    array[(k.min() + k.max()) // 2 - 8:(k.min() + k.max()) // 2 + 8] = 0  # cut the tree in two
    cut = sitk.GetImageFromArray(array)
    cut.CopyInformation(lumen)
    sitk.WriteImage(cut, str(tmp_path / "cut.nrrd"))
    code, captured = run(capsys, "ffr", folder / "cta.nrrd", "--lumen-mask", tmp_path / "cut.nrrd", "-o", tmp_path / "o")
    assert code == 2 and "disconnected" in captured.err


def test_non_contrast_ct_is_refused(capsys, cta_case, tmp_path):
    folder, _, image, _ = cta_case
    plain = sitk.GetArrayFromImage(image)
    plain[plain > 200] = 40.0  # no iodine in the lumen
    scan = sitk.GetImageFromArray(plain)
    scan.CopyInformation(image)
    scan.SetMetaData("modality", "CT")
    sitk.WriteImage(scan, str(tmp_path / "plain.nrrd"))
    code, captured = run(capsys, "ffr", tmp_path / "plain.nrrd", "--lumen-mask", folder / "lumen.nrrd", "-o", tmp_path / "o")
    assert code == 2 and "not a contrast CTA" in captured.err


def test_vtp_without_radius_is_refused(capsys, tmp_path):
    import vtk

    source = vtk.vtkLineSource()
    source.SetResolution(10)
    source.Update()
    writer = vtk.vtkXMLPolyDataWriter()
    writer.SetFileName(str(tmp_path / "bare.vtp"))
    writer.SetInputData(source.GetOutput())
    writer.Write()
    code, captured = run(capsys, "ffr", tmp_path / "bare.vtp", "-o", tmp_path / "o")
    assert code == 2 and "MaximumInscribedSphereRadius" in captured.err


def _soft_tissue_slab(tmp_path, side: int, slices: int) -> sitk.Image:
    """A round soft-tissue body in air on 3 mm pixels and 1 mm slices, `side` pixels across and `slices` * 3 mm
    high: no lungs, so no heart to crop to."""
    _, jj, ii = np.indices((3 * slices, side, side))
    centre = side / 2
    body = np.where((jj - centre) ** 2 + (ii - centre) ** 2 < (0.45 * side) ** 2, 40, -1000).astype(np.int16)
    image = sitk.GetImageFromArray(body)
    image.SetSpacing((3.0, 3.0, 1.0))
    sitk.WriteImage(image, str(tmp_path / "slab.nrrd"))
    return image


def test_a_scan_too_large_for_the_memory_budget_is_refused_before_the_network_runs(capsys, tmp_path):
    """A 249 x 249 x 120 mm soft-tissue slab with no lungs (read whole, as a heart-only reconstruction is): the
    0.5 mm network grid would need about 5 GB, over the 4 GB default; one line names the size, the budget and what
    to do, and nothing is written. With the budget raised the same check passes."""
    image = _soft_tissue_slab(tmp_path, 83, 40)
    assert cli.main(["ffr", str(tmp_path / "slab.nrrd"), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "needing about 5 GB (--memory-limit-gb 4)" in error[0] and "crop the CTA" in error[0]
    assert not list((tmp_path / "out").glob("ffr*"))
    from cardioquant.ffr.pipeline import network_region

    region, box = network_region(image, memory_limit_gb=16.0)
    assert region.GetSize() == image.GetSize() and box == (slice(0, 120), slice(0, 83), slice(0, 83))


def test_no_heart_in_a_field_of_view_wider_than_a_heart_only_reconstruction_is_refused(capsys, tmp_path):
    """A 300 mm wide scan with no heart found in it (an abdominal CT, say) is not a heart-only reconstruction: one
    line says there is no heart and what to give, before any network runs, and nothing is written."""
    _soft_tissue_slab(tmp_path, 100, 20)
    assert cli.main(["ffr", str(tmp_path / "slab.nrrd"), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("cardioquant: error: no heart in the field of view (300 x 300 x 60")
    assert "--lumen-mask, --seeds or --centerlines" in error[0]
    assert not list((tmp_path / "out").glob("ffr*"))


def test_the_network_reads_the_heart_region_of_a_chest_scan_not_the_whole_scan():
    """On a contrast chest phantom with lungs, the region the lumen network reads is the heart's (smaller than
    the scan) and holds every coronary artery voxel the phantom placed (they run on the heart's surface)."""
    from cardioquant.calcium import evaluation
    from cardioquant.calcium import phantom as chest
    from cardioquant.ffr.pipeline import network_region

    case = chest.make_cardiac_phantom(30500, spacing=(0.8, 0.8, 3.0), contrast=True, n_calcifications=8)
    image = evaluation.phantom_loaded(case).image
    region, box = network_region(image, memory_limit_gb=64.0)
    assert np.prod(region.GetSize()) < 0.6 * np.prod(image.GetSize())
    coronary = np.argwhere((case.calcium_labels >= 1) & (case.calcium_labels <= 4))
    assert len(coronary) and all(b.start <= c.min() and c.max() < b.stop for b, c in zip(box, coronary.T, strict=True))
    corner = image.TransformIndexToPhysicalPoint([b.start for b in box][::-1])
    assert np.allclose(region.GetOrigin(), corner)  # the crop keeps its place in the patient


def test_the_automatic_path_reads_a_cta_the_same_whatever_order_its_file_stores_its_voxels_in():
    """A generated CTA stored as a DICOM series stores it (LPS) and with its rows and columns swapped and its slices
    running downwards (ALI). Every voxel sits at the same place in the patient, so the network must find the same
    lumen and aorta voxel for voxel, the same coronary paths and the same FFR; each label map lies on its own file's
    grid. Read in the file's own order, the network saw the ALI copy turned and found another left tree."""
    from cardioquant.ffr import cta_phantom, pipeline
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    case = cta_phantom.make_case(69100)  # a held-out seed (training used 60000-60149)
    assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(case.image.GetDirection()) == "LPS"
    results = {}
    for order in ("LPS", "ALI"):
        stored = sitk.DICOMOrient(case.image, order)
        result = pipeline.run(LoadedImage(image=stored, path=order, format="nrrd", dicom={"modality": "CT"}),
                              settings_for("ffr"), Progress())
        assert result.label_image.GetSize() == stored.GetSize()
        assert np.allclose(result.label_image.GetDirection(), stored.GetDirection())
        assert np.allclose(result.label_image.GetOrigin(), stored.GetOrigin())
        labels = sitk.GetArrayFromImage(sitk.DICOMOrient(result.label_image, "LPS"))  # compared in one order
        results[order] = labels, {name: v["distal_ffr"] for name, v in result.summary["vessels"].items()}
    (dicom_labels, dicom_ffr), (other_labels, other_ffr) = results["LPS"], results["ALI"]
    assert (dicom_labels == 1).sum() > 1000 and (dicom_labels == 2).sum() > 1000
    assert np.array_equal(dicom_labels, other_labels)
    assert list(dicom_ffr) == list(other_ffr) and len(dicom_ffr) >= 4
    assert [other_ffr[name] for name in dicom_ffr] == pytest.approx(list(dicom_ffr.values()), abs=1e-6)


def test_a_ct_with_slices_thicker_than_a_coronary_cta_is_refused_before_any_work(capsys, cta_case, tmp_path):
    """A coronary CTA is reconstructed with slices of 1 mm or less. A chest CT's 2.5 mm slices blur the lumen, 1.5-4
    mm across, over a slice (on the real contrast chest CT here the automatic path put a distal FFR of 0.32 on a
    'right coronary' whose ostium lay 100 mm right of the midline): one line says so, and nothing is written. A
    DICOM Slice Thickness larger than the spacing (overlapping thick slices) counts too; 1.25 mm is read with a
    warning."""
    from cardioquant.ffr.pipeline import check_input
    from cardioquant.imageio import LoadedImage

    _, _, image, _ = cta_case
    thick = sitk.Image(image)
    thick.SetSpacing((0.3, 0.3, 2.5))
    sitk.WriteImage(thick, str(tmp_path / "chest.nrrd"))
    code, captured = run(capsys, "ffr", tmp_path / "chest.nrrd", "-o", tmp_path / "o")
    error = captured.err.strip().splitlines()
    assert code == 2 and len(error) == 1 and "slices 2.5 mm thick" in error[0] and "thin-slice series" in error[0]
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("ffr*"))
    overlapping = LoadedImage(image=image, path="cta", format="dicom", dicom={"modality": "CT", "slice_thickness": "3"})
    with pytest.raises(InputError, match="slices 3 mm thick"):
        check_input(overlapping)
    older = sitk.Image(image)
    older.SetSpacing((0.3, 0.3, 1.25))
    warnings = check_input(LoadedImage(image=older, path="cta", format="nrrd", dicom={"modality": "CT"}))
    assert len(warnings) == 1 and "1.25 mm thick" in warnings[0]
    assert check_input(LoadedImage(image=image, path="cta", format="nrrd", dicom={"modality": "CT"})) == []
    mr_like = sitk.GetImageFromArray(np.clip(sitk.GetArrayFromImage(image) + 1024.0, 0, None))
    mr_like.CopyInformation(thick)  # an LGE volume (0 to a few thousand, 2.5-12 mm slices) is not a CT first
    with pytest.raises(InputError, match="do not look like CT in Hounsfield units"):
        check_input(LoadedImage(image=mr_like, path="lge", format="nifti", dicom={}))


@pytest.mark.parametrize(("aorta_radius_mm", "is_root"), [(16.8, True), (7.8, False)])
def test_a_tree_must_join_an_aortic_root_not_a_fragment_taken_for_aorta(aorta_radius_mm, is_root):
    """The coronaries leave the aortic root, 25-40 mm across: a lumen tube joining a 20 mL ball labelled aorta is a
    tree; the same tube joining a 2 mL fragment (as on the real non-gated chest CT resampled to 1 mm slices, where
    both 'trees' joined 2 mL of 'aorta') is not, and no tree joining the aorta is said in one line."""
    from cardioquant.ffr import lumen_network

    spacing = 0.5
    kk, jj, ii = np.indices((100, 100, 140)) * spacing
    centre = np.array([25.0, 25.0, 25.0])
    aorta = (kk - centre[0]) ** 2 + (jj - centre[1]) ** 2 + (ii - centre[2]) ** 2 <= aorta_radius_mm ** 2
    tube = ((kk - centre[0]) ** 2 + (jj - centre[1]) ** 2 <= 1.5 ** 2) & (ii > centre[2] + aorta_radius_mm + 0.5)
    tube &= ii < centre[2] + aorta_radius_mm + 20.0
    reference = sitk.GetImageFromArray(np.zeros(aorta.shape, np.int16))
    reference.SetSpacing((spacing,) * 3)
    volume_ml = aorta.sum() * spacing ** 3 / 1000.0
    assert (volume_ml > 19.0) if is_root else (volume_ml < 2.1)
    if is_root:
        trees, _, root = lumen_network.split_trees(tube, aorta, reference)
        assert len(trees) == 1 and np.array_equal(root, aorta)
    else:
        with pytest.raises(InputError, match="no coronary artery found joining the aorta"):
            lumen_network.split_trees(tube, aorta, reference)


def test_much_more_lumen_joining_no_root_than_the_trees_hold_is_said():
    """On the real non-gated chest CT the network found 24.7 mL of 'lumen' joined to no aortic root against 0.76 mL
    in the tree it modelled: a warning says the scan may not be a gated coronary CTA. The held-out phantoms leave
    0.01-0.14 mL out of 2-3 mL: no warning."""
    from cardioquant.ffr.pipeline import _left_out_warning

    warning = _left_out_warning({"pieces": 835, "volume_ml": 24.7}, 0.76)
    assert len(warning) == 1 and "24.7 mL" in warning[0] and "835 pieces" in warning[0] and "32 times" in warning[0]
    assert _left_out_warning({"pieces": 10, "volume_ml": 0.14}, 2.0) == []


def test_a_lumen_vmtk_can_trace_only_a_stub_along_is_refused_not_modelled():
    """A lumen just past the 8 mm a branch needs: after its rounded end caps what vmtk traces is shorter than any
    modelled vessel. On a real pulmonary CTA's 'right tree' vmtk stopped at a 0.5 mm stub, which was reported as a
    vessel with an FFR of 0.99."""
    stub = [tree.Path("stub", np.column_stack([np.zeros(19), np.zeros(19), np.linspace(0, 9, 19)]), np.full(19, 1.6))]
    _, lumen = phantom.voxelise(stub, spacing=0.3)
    with pytest.raises(InputError, match="no path of 8 mm or more"):
        cl.from_lumen_mask(lumen)


def test_a_tree_vmtk_cannot_trace_leaves_the_other_modelled_and_is_said(monkeypatch):
    """Of two trees the network found, one vmtk cannot trace: the other is modelled and the warning names the one
    left out (side, lumen volume, ostium); with neither traced, one error names both."""
    from types import SimpleNamespace

    from cardioquant.ffr import pipeline
    from cardioquant.progress import Progress

    left = SimpleNamespace(side="left", mask="left lumen", ostium_ras=(-20.0, 10.0, 100.0), volume_ml=1.9)
    right = SimpleNamespace(side="right", mask="right lumen", ostium_ras=(25.0, 12.0, 95.0), volume_ml=0.8)
    traced = tree.Path("rca", np.column_stack([np.zeros(5), np.zeros(5), np.arange(5.0) * 5]), np.full(5, 1.5))

    def trace(mask, _ostium):
        if mask == "right lumen":
            raise InputError("vmtk could not trace any centerline from the ostium through this lumen")
        return [traced]
    monkeypatch.setattr(pipeline.cl, "from_lumen_mask", trace)
    paths, untraced = pipeline.traced_trees([left, right], Progress())
    assert list(paths) == ["left"] and [p.name for p in paths["left"]] == ["left_1"]
    assert untraced == ["the right tree (0.8 mL of lumen from an ostium at RAS 25, 12, 95 mm): vmtk could not trace "
                        "any centerline from the ostium through this lumen"]
    right_only = SimpleNamespace(**{**vars(left), "mask": "right lumen"})
    with pytest.raises(InputError, match=r"the left tree \(1.9 mL.*; the right tree \(0.8 mL.*give --lumen-mask"):
        pipeline.traced_trees([right_only, right], Progress())
