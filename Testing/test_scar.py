"""ScarQuantification: thresholds on synthetic rings with exact answers, AHA geometry, arithmetic, bad input."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from cardioquant import cli
from cardioquant.errors import InputError
from cardioquant.metrics import dice
from cardioquant.progress import Progress
from cardioquant.scar import aha, quantify
from cardioquant.scar.phantom import make_lge_phantom


def ring(size=64, r_in=10, r_out=16):
    rows, cols = np.indices((size, size))
    radius = np.hypot(rows - (size - 1) / 2, cols - (size - 1) / 2)
    return (radius > r_in) & (radius <= r_out), radius <= r_in


def test_n_sd_counts_exactly_given_remote_statistics():
    myo, cavity = ring()
    signal = np.zeros((1,) + myo.shape)
    values = np.where(np.arange(myo.sum()) % 2 == 0, 90.0, 110.0)  # mean 100, SD 10 exactly
    signal[0][myo] = values
    remote = quantify.RemoteStats(100.0, 10.0, int(myo.sum()), "given")
    idx = np.argwhere(myo)
    for n_bright, level in ((7, 131.0), (5, 129.0)):
        s = signal.copy()
        for r, c in idx[:n_bright]:
            s[0, r, c] = level
        result = quantify.n_sd(s, myo[None], remote, 3.0)  # threshold 130: 131 is scar, 129 is not
        assert result.threshold == 130.0
        assert int(result.scar.sum()) == (n_bright if level > 130 else 0)


def test_automatic_remote_is_the_darkest_sector():
    myo, cavity = ring()
    signal = np.where(myo, 100.0, 0.0)[None].copy()
    angles = quantify.pixel_angles(signal.shape, quantify.lv_centre(cavity[None], myo[None]))
    signal[0][myo & (angles[0] >= 120) & (angles[0] < 180)] = 60.0
    remote = quantify.automatic_remote(signal, myo[None], cavity[None])
    assert remote.mean == pytest.approx(60.0) and remote.sd == pytest.approx(0.0) and "120-180" in remote.source


def test_fwhm_on_a_known_profile():
    myo, cavity = ring()
    signal = np.where(myo, 50.0, 0.0)[None].copy()
    rows, cols = np.indices(myo.shape)
    profile = 400.0 * np.exp(-((cols - 31.5) ** 2) / (2 * 3.0 ** 2))  # enhancement peaking at the top wall
    signal[0] += np.where(myo & (rows < 32), profile, 0)
    result = quantify.fwhm(signal, myo[None])
    maximum = np.percentile(signal[0][myo], 99.5)
    assert result.threshold == pytest.approx(maximum / 2)
    assert int(result.scar.sum()) == int((myo & (signal[0] >= maximum / 2)).sum()) > 0


def test_fwhm_is_half_way_from_remote_myocardium_to_the_maximum():
    """Nulled remote myocardium (0): the classic 0.5 x max. The same image with an intensity offset of 120 (as in
    8-bit exports) gives the same scar pixels, where 0.5 x max alone would take the whole myocardium."""
    myo, cavity = ring()
    rows, cols = np.indices(myo.shape)
    profile = 400.0 * np.exp(-((cols - 31.5) ** 2) / (2 * 3.0 ** 2))
    nulled = np.where(myo & (rows < 32), profile, 0.0)[None]
    expected = myo & (nulled[0] >= np.percentile(nulled[0][myo], 99.5) / 2)
    for offset in (0.0, 120.0):
        signal = nulled + offset
        remote = quantify.automatic_remote(signal, myo[None], cavity[None])
        assert remote.mean == pytest.approx(offset)
        result = quantify.fwhm(signal, myo[None], remote)
        assert np.array_equal(result.scar[0] | result.mvo[0], expected) and 0 < expected.sum() < myo.sum() / 4


def test_volumes_lge_percent_and_mass():
    case = make_lge_phantom(noise=0.0, spacing=(1.5, 1.5, 8.0))
    labels = case.labels
    result = quantify.from_model(labels, case.signal, None)
    figures = quantify.figures(result, labels >= 2, case.spacing)
    voxel_ml = 1.5 * 1.5 * 8.0 / 1000
    assert figures["myocardium_ml"] == pytest.approx((labels >= 2).sum() * voxel_ml)
    assert figures["scar_ml"] == pytest.approx((labels == 3).sum() * voxel_ml)
    assert figures["mvo_ml"] == pytest.approx((labels == 4).sum() * voxel_ml)
    assert figures["lge_percent"] == pytest.approx(100 * (labels >= 3).sum() / (labels >= 2).sum())
    assert figures["scar_mass_g"] == pytest.approx((figures["scar_ml"] + figures["mvo_ml"]) * 1.05)


def test_n_sd_finds_the_phantom_scar_and_its_mvo():
    case = make_lge_phantom(noise=3.0)
    myo, cavity = case.labels >= 2, case.labels == 1
    remote = quantify.automatic_remote(case.signal, myo, cavity)
    result = quantify.n_sd(case.signal, myo, remote, 5.0)
    assert np.array_equal(result.scar, case.labels == 3)
    assert np.array_equal(result.mvo, case.labels == 4)


@pytest.mark.parametrize(("angle", "ring_name", "segment"), [(10, "basal", 2), (70, "basal", 3), (130, "basal", 4),
                                                     (190, "basal", 5), (250, "basal", 6), (310, "basal", 1),
                                                     (10, "mid", 8), (310, "mid", 7), (20, "apical", 14),
                                                     (110, "apical", 15), (200, "apical", 16), (290, "apical", 13),
                                                     (10, "apical", 13), (0, "apex", 17)])
def test_aha_segment_of_known_angles(angle, ring_name, segment):
    assert int(aha.segment_of(np.array([float(angle)]), ring_name)[0]) == segment


def test_aha_rings_and_territories_on_phantom():
    case = make_lge_phantom(slices=9, scar_sector=(60, 120), mvo=False, noise=0.0)
    myo, cavity = case.labels >= 2, case.labels == 1
    segments = aha.segment_map(cavity, myo, insertion_deg=60.0, direction=+1)
    rings = aha.slice_rings(cavity, myo)
    assert [rings[k] for k in range(9)] == ["basal"] * 3 + ["mid"] * 3 + ["apical"] * 3
    # Scar spans 60-120 deg counter-clockwise from up, i.e. 0-60 deg past the insertion: segments 2 / 8 and 14.
    scarred = set(np.unique(segments[case.labels == 3]))
    assert scarred <= {2, 8, 14, 15, 13} and {2, 8} <= scarred
    figures = aha.per_segment(segments, myo, case.labels == 3, case.spacing)
    assert figures["2"]["lge_percent"] == pytest.approx(100.0, abs=2.0)
    assert figures["5"]["lge_percent"] == 0.0
    assert aha.territories(figures)["LAD"]["lge_percent"] > 0 and aha.territories(figures)["LCX"]["lge_percent"] == 0


def test_transmurality_of_a_half_thickness_scar():
    case = make_lge_phantom(slices=3, scar_sector=(60, 120), transmural=0.5, mvo=False, noise=0.0)
    myo, cavity = case.labels >= 2, case.labels == 1
    segments = aha.segment_map(cavity, myo)
    transmural = aha.transmurality(segments, myo, case.labels == 3, cavity)
    assert 35 <= transmural["2"]["mean"] <= 65 and transmural["5"]["max"] == 0


def write(tmp_path, array, name, meta=None, spacing=(1.5, 1.5, 8.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[: array.ndim])
    for key, value in (meta or {}).items():
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(tmp_path / name))
    return tmp_path / name


def test_cli_with_myocardium_mask_end_to_end(tmp_path):
    case = make_lge_phantom(noise=3.0)
    scan = write(tmp_path, case.signal, "lge.nrrd", {"modality": "MR"})
    lv = case.labels.copy()
    lv[lv >= 2] = 2  # the reader's myocardium, no scar drawn
    mask = write(tmp_path, lv, "lv.nrrd")
    code = cli.main(["scar", str(scan), "--myocardium-mask", str(mask), "-o", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    result = json.loads((tmp_path / "out" / "scar.json").read_text())
    truth = 100 * (case.labels >= 3).sum() / (case.labels >= 2).sum()
    assert result["lge_percent"] == pytest.approx(truth, abs=0.5)
    assert set(result["aha_segments"]) == {str(n) for n in range(1, 18)}
    assert result["hcm_high_risk"] == (truth >= 15)
    assert result["settings"]["method"] == "nsd"  # no scar drawn in the mask: thresholds by default
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "scar_labels.nrrd")))
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}


def test_scar_drawn_in_the_mask_is_used_as_drawn_by_default(tmp_path):
    """A mask with scar and MVO drawn (EMIDEC values): without --method its scar is taken exactly as drawn."""
    case = make_lge_phantom(noise=3.0)
    drawn = case.labels.copy()
    drawn[(drawn == 2) & (np.indices(drawn.shape)[2] < 20)] = 3  # scar the thresholds would not find
    scan = write(tmp_path, case.signal, "lge.nrrd", {"modality": "MR"})
    mask = write(tmp_path, drawn, "drawn.nrrd")
    assert cli.main(["scar", str(scan), "--myocardium-mask", str(mask), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    result = json.loads((tmp_path / "out" / "scar.json").read_text())
    assert result["settings"]["method"] == "model"
    assert result["lge_percent"] == pytest.approx(100 * (drawn >= 3).sum() / (drawn >= 2).sum(), abs=1e-6)


def test_a_myops_label_file_as_the_myocardium_is_read_with_myops_values(capsys, tmp_path):
    """MyoPS's label file given as the myocardium (200 normal myocardium, 1220 edema, 2221 scar, 500 LV blood pool,
    600 RV): %LGE = scar / (myocardium + edema + scar), said in a warning. It was read as one myocardium of every
    labelled voxel, blood pool and RV included, with no scar (LGE 0 %). Values of no known convention are refused."""
    case = make_lge_phantom(noise=3.0)
    myops = np.select([case.labels == 1, case.labels == 2, case.labels >= 3], [500, 200, 2221], 0).astype(np.uint16)
    myops[(case.labels == 2) & (np.indices(myops.shape)[2] < 24)] = 1220  # edema: myocardium on LGE
    myops[(case.labels == 0) & (np.indices(myops.shape)[2] < 12)] = 600  # an RV beside it
    scan = write(tmp_path, case.signal, "lge.nrrd", {"modality": "MR"})
    mask = write(tmp_path, myops, "Case0001_gd.nrrd")
    assert cli.main(["scar", str(scan), "--myocardium-mask", str(mask), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    result = json.loads((tmp_path / "out" / "scar.json").read_text())
    truth = 100 * (myops == 2221).sum() / np.isin(myops, (200, 1220, 2221)).sum()
    assert result["lge_percent"] == pytest.approx(truth, abs=1e-6) and truth > 5
    assert any("MyoPS's label values" in warning for warning in result["warnings"])

    binary = write(tmp_path, np.where(case.labels >= 2, 255, 0).astype(np.uint8), "myocardium_255.nrrd")
    assert cli.main(["scar", str(scan), "--myocardium-mask", str(binary), "-o", str(tmp_path / "b"), "--quiet"]) == 0
    assert json.loads((tmp_path / "b" / "scar.json").read_text())["myocardium_ml"] == pytest.approx(
        (case.labels >= 2).sum() * 1.5 * 1.5 * 8.0 / 1000.0)
    other = write(tmp_path, np.where(case.labels >= 2, 7, 0).astype(np.uint8) + (case.labels == 1), "organs.nrrd")
    assert cli.main(["scar", str(scan), "--myocardium-mask", str(other), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "holds the values 1, 7" in lines[0] and not (tmp_path / "o").exists()


def test_ct_is_refused(capsys, tmp_path):
    scan = write(tmp_path, np.full((4, 64, 64), -1000.0, np.float32), "ct.nrrd", {"modality": "CT"})
    assert cli.main(["scar", str(scan), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    assert "needs LGE MRI" in capsys.readouterr().err


def test_a_label_map_given_as_the_lge_image_is_refused_in_one_line(capsys, tmp_path):
    """A segmentation loaded in place of the scan (the reader picked the label volume): before, the network read
    TotalSegmentator's chest label map as an LV and reported "LGE 8.1 %". A label map is refused whatever its labels'
    values; the LGE stack itself, noise and all, is not taken for one, nor is an 8-bit export of it, enlarged by
    repeating pixels or not."""
    from cardioquant.imageio import looks_like_label_map

    case = make_lge_phantom(noise=3.0)
    for name, labels in (("labels.nrrd", case.labels), ("totalsegmentator.nrrd", case.labels.astype(np.int16) * 29)):
        path = write(tmp_path, labels, name, {"modality": "MR"})
        assert cli.main(["scar", str(path), "-o", str(tmp_path / "out"), "--quiet"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "is a label map" in lines[0] and "--myocardium-mask" in lines[0]
    eight_bit = np.clip(case.signal / case.signal.max() * 255, 0, 255).round()
    enlarged = eight_bit.repeat(3, axis=1).repeat(3, axis=2)  # an export enlarged by repeating pixels
    for signal in (case.signal, eight_bit, enlarged):
        assert not looks_like_label_map(sitk.GetImageFromArray(signal.astype(np.float32)))


def test_an_mr_series_with_signed_values_is_not_taken_for_ct(tmp_path):
    """Phase-sensitive LGE is stored signed (here shifted by -4096): an MR series is read as MR whatever its
    values, and its scar is measured as on the unshifted stack; without a modality such values are refused as CT."""
    case = make_lge_phantom(noise=3.0)
    lv = write(tmp_path, case.labels, "lv.nrrd")
    results = []
    for name, offset, meta in (("lge.nrrd", 0.0, {"modality": "MR"}), ("psir.nrrd", -4096.0, {"modality": "MR"})):
        scan = write(tmp_path, case.signal.astype(np.float32) + offset, name, meta)
        out = tmp_path / name.replace(".nrrd", "")
        assert cli.main(["scar", str(scan), "--myocardium-mask", str(lv), "--method", "nsd", "-o", str(out),
                         "--quiet"]) == 0
        results.append(json.loads((out / "scar.json").read_text())["lge_percent"])
    assert results[1] == pytest.approx(results[0])
    unlabelled = write(tmp_path, case.signal.astype(np.float32) - 4096.0, "unlabelled.nrrd")
    assert cli.main(["scar", str(unlabelled), "-o", str(tmp_path / "u"), "--quiet"]) == 2


def test_a_field_of_view_too_small_for_an_lv_is_refused_in_one_line(capsys, tmp_path):
    """A 16 x 16 mm slice (a localizer's crop) cannot hold an LV, and the network cannot read it: exit 2, one line."""
    scan = write(tmp_path, np.full((1, 32, 32), 100.0, np.float32), "small.nrrd", {"modality": "MR"},
                 spacing=(0.5, 0.5, 8.0))
    assert cli.main(["scar", str(scan), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "field of view is 16 x 16 mm, too small to hold the LV" in lines[0]
    assert not (tmp_path / "out").exists()


def test_empty_myocardium_is_clear(capsys, tmp_path):
    case = make_lge_phantom(slices=2)
    scan = write(tmp_path, case.signal, "lge.nrrd", {"modality": "MR"})
    mask = write(tmp_path, np.zeros(case.labels.shape, np.uint8), "empty.nrrd")
    assert cli.main(["scar", str(scan), "--myocardium-mask", str(mask), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    assert "no LV myocardium" in capsys.readouterr().err


def _prolate_lv(view: str) -> np.ndarray:
    """A generated LV (1 mm voxels): a prolate ellipsoid 90 mm long and 50 mm wide with a 10 mm wall, its long axis
    along x, sliced across the long axis (short axis: 8 slices, 10 mm apart) or along it (long axis: 3 slices)."""
    z, y, x = np.mgrid[-30:31, -30:31, -50:51].astype(float)
    outer = (x / 45.0) ** 2 + (y / 25.0) ** 2 + (z / 25.0) ** 2 <= 1
    inner = ((x + 5) / 40.0) ** 2 + (y / 15.0) ** 2 + (z / 15.0) ** 2 <= 1
    lv = np.where(inner, 1, np.where(outer, 2, 0)).astype(np.uint8)
    lv[..., :5] = np.where(lv[..., :5] == 1, 0, lv[..., :5])  # the open base (mitral plane) beyond x = -45 mm
    if view == "short":
        return np.moveaxis(lv, 2, 0)[15:95:10]   # slices across x
    return lv[25:36:5]                            # slices containing x: a 4-chamber-like cut


def test_long_axis_view_is_told_from_short_axis_on_a_generated_pair():
    """On the same generated LV: the short-axis stack passes; the long-axis cut, drawn by the reader, is refused;
    the same elongated cavity from the network is a warning (on real MyoPS stacks an elongated cavity was the
    network failing, never a long-axis view)."""
    from cardioquant.scar.pipeline import cavity_aspect_ratio, check_short_axis

    short, long = _prolate_lv("short"), _prolate_lv("long")
    assert cavity_aspect_ratio(short) < 1.3 and cavity_aspect_ratio(long) > 2.5
    assert check_short_axis(short, drawn_by_reader=True) == []
    with pytest.raises(InputError, match="long-axis"):
        check_short_axis(long, drawn_by_reader=True)
    warned = check_short_axis(long, drawn_by_reader=False)
    assert len(warned) == 1 and "elongated" in warned[0]


def test_n_out_of_range_is_clear():
    myo, _ = ring()
    with pytest.raises(InputError, match="between 2 and 6"):
        quantify.n_sd(np.zeros((1,) + myo.shape), myo[None], quantify.RemoteStats(0, 1, 1, "x"), 8)


def test_edits_in_the_scene_are_requantified_exactly_as_drawn():
    """What the panel does after each Segment Editor edit, on real MRML nodes: the figures follow the edited
    segments voxel for voxel (truth: voxel counts of the edited label map)."""
    from cardioquant import scene
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.scar.pipeline import LABEL_TABLE, requantify

    case = make_lge_phantom(noise=3.0, seed=4)
    image = sitk.GetImageFromArray(case.signal)
    image.SetSpacing(case.spacing)
    image.SetMetaData("modality", "MR")
    mrml = scene.new_scene()
    volume = scene.volume_node_from_image(mrml, image, "lge")
    labels_image = sitk.GetImageFromArray(case.labels)
    labels_image.CopyInformation(image)
    segmentation = scene.segmentation_node_from_labelmap(mrml, labels_image, volume, LABEL_TABLE, "scar")
    edited = scene.labelmap_from_segmentation_node(segmentation, volume, LABEL_TABLE)
    edited[2][edited[2] >= 3] = 2  # the reader removes the scar (and MVO) of slice 2: myocardium without scar
    edited_image = sitk.GetImageFromArray(edited)
    edited_image.CopyInformation(image)
    edited_node = scene.segmentation_node_from_labelmap(mrml, edited_image, volume, LABEL_TABLE, "edited")
    loaded = LoadedImage(image=scene.image_from_volume_node(volume), path="scene", format="mrml", dicom={"modality": "MR"})
    options = settings_for("scar", method="nsd")
    before = requantify(loaded, scene.labelmap_from_segmentation_node(segmentation, volume, LABEL_TABLE), options)
    after = requantify(loaded, scene.labelmap_from_segmentation_node(edited_node, volume, LABEL_TABLE), options)
    voxel_ml = float(np.prod(case.spacing)) / 1000
    assert before.summary["lge_percent"] == pytest.approx(100 * (case.labels >= 3).sum() / (case.labels >= 2).sum())
    assert after.summary["lge_percent"] == pytest.approx(100 * (edited >= 3).sum() / (edited >= 2).sum())
    assert after.summary["scar_ml"] + after.summary["mvo_ml"] == pytest.approx((edited >= 3).sum() * voxel_ml)
    assert after.summary["myocardium_ml"] == pytest.approx(before.summary["myocardium_ml"])
    assert after.settings["method"] == "model"  # as drawn, not re-thresholded


class _IntensityNetwork(torch.nn.Module):
    """Stand-in for the LGE network whose answer is known exactly: the class whose level is nearest the centre
    slice's intensity (levels 0, 0.5, 1.0 for background, cavity, myocardium)."""

    def __init__(self):
        super().__init__()
        self.centre = torch.nn.Conv2d(3, 1, 1, bias=False)
        self.centre.weight.data[:] = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
        self.levels = torch.tensor([0.0, 0.5, 1.0, 9.0, 9.0]).view(1, 5, 1, 1)

    def forward(self, x):
        return -100.0 * (self.centre(x) - self.levels) ** 2


def test_slices_are_segmented_at_the_training_pixel_size():
    """A 100 mm wide LV on 0.6 mm pixels does not fit the 128-pixel crop at its own pixel size but does at the
    1.5 mm the network was trained on: predict resamples, and the labels come back on the input grid."""
    from cardioquant.scar import network

    pixel = 0.6
    rows, cols = np.indices((300, 300)) * pixel
    radius = np.hypot(rows - 90.0, cols - 95.0)
    truth = np.where(radius <= 35.0, 1, np.where(radius <= 50.0, 2, 0)).astype(np.uint8)
    stack = np.repeat((truth * 0.5).astype(np.float32)[None], 2, axis=0)
    model = _IntensityNetwork().eval()
    labels = network.predict(model, stack, torch.device("cpu"), flips=((),), pixel_mm=(pixel, pixel))
    assert labels.shape == stack.shape
    for label in (1, 2):
        a, b = labels == label, np.broadcast_to(truth == label, labels.shape)
        assert dice(a, b) > 0.95  # boundaries: one pixel either way
    unresampled = network.predict(model, stack, torch.device("cpu"), flips=((),))
    assert (unresampled == 2).sum() < 0.8 * (labels == 2).sum()  # the crop cuts the ring at 0.6 mm


@pytest.mark.parametrize("lv_slices", [[0, 1, 2, 3, 4], [1], [3, 4]])
def test_the_lv_is_found_and_cropped_whichever_slices_show_it(lv_slices):
    """The LV is placed from every second slice (the first pass reads whole slices); a stack whose LV shows only on
    slices that pass skips is read on every slice instead. The crop lands on the LV, far off the image's centre,
    and every slice showing it is segmented; the others stay background."""
    from cardioquant.scar import network

    rows, cols = np.indices((256, 256))
    radius = np.hypot(rows - 60.0, cols - 190.0)
    ring = np.where(radius <= 12.0, 1, np.where(radius <= 20.0, 2, 0)).astype(np.uint8)
    truth = np.zeros((5, 256, 256), np.uint8)
    truth[lv_slices] = ring
    labels = network.predict(_IntensityNetwork().eval(), (truth * 0.5).astype(np.float32), torch.device("cpu"),
                             flips=((),))
    assert np.array_equal(labels, truth)


@pytest.mark.parametrize("arc", [(60, 180), (300, 60), (200, 330)])
def test_rv_insertion_is_where_the_rv_arc_starts(arc):
    """An RV cavity against the epicardium over a known arc: the anterior insertion is the arc's start when the
    septum runs counter-clockwise from it, its end when clockwise."""
    case = make_lge_phantom(size=160, rv_arc=arc, seed=3)
    cavity, myocardium = case.labels == 1, case.labels >= 2
    ccw = aha.estimate_rv_insertion(case.signal, cavity, myocardium, (1.5, 1.5), direction=+1)
    cw = aha.estimate_rv_insertion(case.signal, cavity, myocardium, (1.5, 1.5), direction=-1)
    assert abs((ccw - arc[0] + 180) % 360 - 180) <= 5 and abs((cw - arc[1] + 180) % 360 - 180) <= 5


def test_no_rv_in_view_gives_no_estimate():
    case = make_lge_phantom(size=160)
    assert aha.estimate_rv_insertion(case.signal, case.labels == 1, case.labels >= 2, (1.5, 1.5)) is None


def test_rv_insertion_automatic_point_and_fallback_in_the_cli(tmp_path):
    """Automatic: the phantom's RV arc starting at 100 deg; the reader's point (the marker written for the panel,
    moved to 150 deg) overrides it; without an RV, 60 deg with a warning."""
    def run(case, name, *extra):
        scan = write(tmp_path, case.signal, f"{name}.nrrd", {"modality": "MR"})
        lv = np.where(case.labels >= 2, 2, case.labels).astype(np.uint8)
        mask = write(tmp_path, lv, f"{name}_lv.nrrd")
        out = tmp_path / name
        assert cli.main(["scar", str(scan), "--myocardium-mask", str(mask), "-o", str(out), "--quiet", *extra]) == 0
        return json.loads((out / "scar.json").read_text())

    with_rv = make_lge_phantom(size=160, rv_arc=(100, 220), seed=4)
    automatic = run(with_rv, "auto")
    assert abs(automatic["rv_insertion"]["angle_deg"] - 100) <= 5
    assert automatic["rv_insertion"]["source"].startswith("automatic")
    # The marker lies on the epicardium at the insertion angle: read back as a point it gives the same angle.
    marker = automatic["rv_insertion"]["marker_ras"]
    again = run(with_rv, "again", "--rv-insertion-point=" + ",".join(map(str, marker)))
    assert again["rv_insertion"]["angle_deg"] == pytest.approx(automatic["rv_insertion"]["angle_deg"], abs=2)
    assert again["aha_segments"] == automatic["aha_segments"]
    # A point 40 mm from the LV centre at 150 deg (phantom centre at pixel 79.5; 1.5 mm pixels, origin 0).
    theta = np.radians(150.0)
    row, col = 79.5 - 40 / 1.5 * np.cos(theta), 79.5 - 40 / 1.5 * np.sin(theta)
    moved = run(with_rv, "moved", f"--rv-insertion-point={-col * 1.5},{-row * 1.5},32")  # RAS of LPS (x=col*1.5, y=row*1.5)
    assert moved["rv_insertion"]["angle_deg"] == pytest.approx(150.0, abs=1.0)
    assert moved["settings"]["rv_insertion_source"] == "reader's point"
    # The same point as a Slicer markups file (stored in LPS): the same angle.
    markup = {"markups": [{"type": "Fiducial", "coordinateSystem": "LPS",
                           "controlPoints": [{"position": [col * 1.5, row * 1.5, 32.0]}]}]}
    (tmp_path / "rv.mrk.json").write_text(json.dumps(markup))
    from_file = run(with_rv, "file", "--rv-insertion-point", str(tmp_path / "rv.mrk.json"))
    assert from_file["rv_insertion"]["angle_deg"] == pytest.approx(150.0, abs=1.0)
    fallback = run(make_lge_phantom(size=160, seed=4), "none")
    assert fallback["rv_insertion"]["angle_deg"] == 60.0
    assert any("RV insertion" in w for w in fallback["warnings"])


def _short_axis_directions(rv_angle_deg: float, mirrored: bool) -> np.ndarray:
    """Direction cosines (LPS columns: image column, row, slice axes) of an oblique short-axis stack whose long axis
    points to the apex (patient left, anterior, inferior), turned in its plane so that the patient's right-anterior
    direction is drawn at `rv_angle_deg` (counter-clockwise from image up); `mirrored` flips the image's columns, as
    a display seen from the other side would."""
    apex = np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)
    right_anterior = np.array([-1.0, -1.0, 0.0]) / np.sqrt(2.0)  # perpendicular to the long axis
    other = np.cross(apex, right_anterior) * (-1.0 if mirrored else 1.0)
    theta = np.radians(rv_angle_deg)  # a point at theta lies at (row, col) = -(cos, sin) from the centre
    row_axis = -np.cos(theta) * right_anterior + np.sin(theta) * other
    column_axis = -np.sin(theta) * right_anterior - np.cos(theta) * other
    return np.stack([column_axis, row_axis, apex], axis=1)


@pytest.mark.parametrize("mirrored", [False, True])
def test_the_scans_orientation_says_where_the_rv_is_and_which_end_of_it_is_anterior(tmp_path, mirrored):
    """A phantom whose RV meets the LV from 60 to 180 degrees, placed in the patient by oblique short-axis
    direction cosines with the right-anterior direction at 120 degrees, displayed one way or mirrored: the
    automatic insertion is the end of the RV arc that lies towards anterior-superior in the patient (worked out
    here from the two ends' positions), and the septum runs from it over the RV arc."""
    from cardioquant.scar.phantom import make_lge_phantom as phantom

    case = phantom(size=160, rv_arc=(60.0, 180.0), seed=5)
    directions = _short_axis_directions(120.0, mirrored)
    extra = {"modality": "MR"}
    scan = sitk.GetImageFromArray(case.signal)
    scan.SetSpacing((1.5, 1.5, 8.0))
    scan.SetDirection(directions.ravel().tolist())
    for key, value in extra.items():
        scan.SetMetaData(key, value)
    mask = sitk.GetImageFromArray(np.where(case.labels >= 2, 2, case.labels).astype(np.uint8))
    mask.CopyInformation(scan)
    sitk.WriteImage(scan, str(tmp_path / "lge.nrrd"))
    sitk.WriteImage(mask, str(tmp_path / "lv.nrrd"))
    assert cli.main(["scar", str(tmp_path / "lge.nrrd"), "--myocardium-mask", str(tmp_path / "lv.nrrd"), "-o",
                     str(tmp_path / "out"), "--quiet"]) == 0
    result = json.loads((tmp_path / "out" / "scar.json").read_text())

    def towards_anterior_superior(angle_deg):  # the arc end's direction from the LV centre, in the patient
        theta = np.radians(angle_deg)
        in_patient = directions[:, 1] * -np.cos(theta) + directions[:, 0] * -np.sin(theta)
        return in_patient @ (np.array([0.0, -1.0, 1.0]) / np.sqrt(2.0))

    anterior_end = max((60.0, 180.0), key=towards_anterior_superior)
    found = result["rv_insertion"]["angle_deg"]
    assert abs((found - anterior_end + 180) % 360 - 180) <= 10
    septum = result["settings"]["septum_direction"]
    assert septum == (+1 if anterior_end == 60.0 else -1)  # from the anterior end over the RV arc
    assert "orientation" in result["rv_insertion"]["source"] and result["rv_insertion"]["basis"] == "image"
    assert not any("RV insertion" in w for w in result["warnings"])
    # No RV blood against the septum (on MyoPS: 13 of 30 volumes, with the largest errors): the insertion is where
    # the orientation puts it, half the usual RV contact arc (50 degrees) from the RV's side, and the run says so.
    no_rv = sitk.GetImageFromArray(phantom(size=160, seed=5).signal)
    no_rv.CopyInformation(scan)
    no_rv.SetMetaData("modality", "MR")
    sitk.WriteImage(no_rv, str(tmp_path / "no_rv.nrrd"))
    assert cli.main(["scar", str(tmp_path / "no_rv.nrrd"), "--myocardium-mask", str(tmp_path / "lv.nrrd"), "-o",
                     str(tmp_path / "no_rv"), "--quiet"]) == 0
    alone = json.loads((tmp_path / "no_rv" / "scar.json").read_text())
    assert alone["rv_insertion"]["basis"] == "orientation alone"
    assert alone["rv_insertion"]["angle_deg"] == pytest.approx((120.0 - septum * 50.0) % 360.0, abs=1e-6)
    assert any("where the scan's orientation puts it" in w for w in alone["warnings"])


def test_the_rv_a_readers_myops_labels_hold_places_the_insertion(tmp_path):
    """MyoPS's labels hold the right ventricle (600): its edge against the septum is the insertion, as the labels
    say, even where the image shows no RV blood (the run's estimate would fall back on a convention). A phantom
    whose RV, labelled only, meets the LV from 60 to 180 degrees: the anterior insertion read at 60 degrees (the
    septum counter-clockwise, the default without an orientation)."""
    from cardioquant.scar.phantom import make_lge_phantom as phantom

    with_rv, without = phantom(size=160, rv_arc=(60.0, 180.0), seed=5), phantom(size=160, seed=5)
    rv = np.abs(with_rv.signal - without.signal) > 1e-3
    labels = np.select([rv, without.labels == 1, without.labels == 2, without.labels >= 3], [600, 500, 200, 2221], 0)
    scan = write(tmp_path, without.signal, "lge.nrrd", {"modality": "MR"})
    mask = write(tmp_path, labels.astype(np.uint16), "gd.nrrd")
    assert cli.main(["scar", str(scan), "--myocardium-mask", str(mask), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    insertion = json.loads((tmp_path / "out" / "scar.json").read_text())["rv_insertion"]
    assert insertion["basis"] == "reader" and "RV label" in insertion["source"]
    assert abs((insertion["angle_deg"] - 60.0 + 180) % 360 - 180) <= 10


def test_a_stack_whose_orientation_is_not_short_axis_is_refused_before_the_networks_run(tmp_path, capsys):
    """A whole-heart 3D LGE is often acquired axial, sagittal or coronal: such slices lie 54.7 degrees from the LV's
    long axis whatever the patient (short-axis stacks: MyoPS's 30 lie 2-29 degrees from it), long-axis views 90. An
    axial DICOM series (its orientation stated, the identity) and an oblique long-axis stack are refused in one line;
    with the reader's own myocardium the %LGE is measured and a warning says the AHA segments do not hold. A
    short-axis stack passes."""
    from dicom_factory import write_ct_series

    from cardioquant.scar.aha import degrees_from_long_axis

    assert degrees_from_long_axis(_short_axis_directions(120.0, False)) == pytest.approx(0.0, abs=1e-6)
    assert degrees_from_long_axis(np.eye(3)) == pytest.approx(54.7356, abs=1e-3)
    case = make_lge_phantom(noise=3.0, spacing=(1.5, 1.5, 8.0))
    write_ct_series(tmp_path / "axial", case.signal, spacing=(1.5, 1.5, 8.0), kvp=None, modality="MR",
                    rescale_intercept=0.0)
    long_axis = sitk.GetImageFromArray(case.signal)  # slices stacked across the LV's long axis, which runs in-plane
    long_axis.SetSpacing((1.5, 1.5, 8.0))
    across, along = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0), np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)
    long_axis.SetDirection(np.stack([np.cross(along, across), along, across], axis=1).ravel().tolist())
    sitk.WriteImage(long_axis, str(tmp_path / "long_axis.nrrd"))
    for scan, tilt in ((tmp_path / "axial", 55), (tmp_path / "long_axis.nrrd", 90)):
        assert cli.main(["scar", str(scan), "-o", str(tmp_path / "out"), "--quiet"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and f"not a short-axis stack: its slices lie {tilt} degrees" in lines[0]
    assert not (tmp_path / "out").exists()
    mask = sitk.GetImageFromArray(np.where(case.labels >= 2, 2, case.labels).astype(np.uint8))
    mask.SetSpacing((1.5, 1.5, 8.0))
    sitk.WriteImage(mask, str(tmp_path / "lv.nrrd"))
    assert cli.main(["scar", str(tmp_path / "axial"), "--myocardium-mask", str(tmp_path / "lv.nrrd"), "-o",
                     str(tmp_path / "drawn"), "--quiet"]) == 0
    drawn = json.loads((tmp_path / "drawn" / "scar.json").read_text())
    assert any("AHA segments and transmurality assume short-axis slices" in w for w in drawn["warnings"])
    assert drawn["myocardium_ml"] == pytest.approx((case.labels >= 2).sum() * 1.5 * 1.5 * 8.0 / 1000)


def test_axis_aligned_directions_in_a_nifti_say_nothing_about_the_heart(tmp_path):
    """Research short-axis NIfTIs often carry their pixel sizes only: their directions, axis-aligned, are a
    converter's default, not the heart's orientation. Such a stack is read (not refused as axial), which end is the
    apex is told by the image, and the RV insertion comes from the image alone; an oblique or a DICOM orientation
    is stated."""
    from cardioquant.imageio import LoadedImage
    from cardioquant.scar.pipeline import apex_end, stated_orientation

    case = make_lge_phantom(noise=3.0, spacing=(1.5, 1.5, 8.0))
    default = sitk.GetImageFromArray(case.signal)
    default.SetSpacing((1.5, 1.5, 8.0))
    default.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # a NIfTI's identity in RAS
    loaded = LoadedImage(image=default, path="lge.nii.gz", format="nifti", dicom={})
    assert stated_orientation(loaded) is None and apex_end(loaded) is None
    as_dicom = LoadedImage(image=default, path="lge", format="dicom", dicom={"image_orientation": "-1\\0\\0\\0\\-1\\0"})
    assert stated_orientation(as_dicom) is not None
    oblique = sitk.Image(default)
    oblique.SetDirection(_short_axis_directions(120.0, False).ravel().tolist())
    assert stated_orientation(LoadedImage(image=oblique, path="lge.nii.gz", format="nifti", dicom={})) is not None
    sitk.WriteImage(default, str(tmp_path / "lge.nii.gz"))
    assert cli.main(["scar", str(tmp_path / "lge.nii.gz"), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    result = json.loads((tmp_path / "out" / "scar.json").read_text())
    assert result["rv_insertion"]["source"] == "automatic (RV blood against the septum)" or \
        result["rv_insertion"]["basis"] == "conventional display assumed"


def test_a_stack_without_orientation_keeps_the_conventional_display():
    from cardioquant.scar.aha import orientation_prior

    assert orientation_prior(np.eye(3)) is None


def test_labels_from_probabilities_uses_the_stated_cut_offs():
    """Myocardium where P(myocardium + scar + MVO) > 0.45, scar/MVO inside it where P(scar + MVO) > 0.3 of that."""
    from cardioquant.scar.network import labels_from_probabilities

    columns = [[0.6, 0.0, 0.4, 0.0, 0.0],     # wall 0.40: not myocardium -> background
               [0.5, 0.0, 0.36, 0.14, 0.0],   # wall 0.50, scar 0.14 = 0.28 of it: myocardium without scar
               [0.5, 0.0, 0.34, 0.08, 0.08],  # scar + MVO 0.16 = 0.32 of the wall: scar (MVO not likelier)
               [0.3, 0.7, 0.0, 0.0, 0.0],     # cavity
               [0.56, 0.0, 0.04, 0.1, 0.3]]   # wall 0.44: background
    probability = np.array(columns, np.float32).T[None, :, None, :]
    assert labels_from_probabilities(probability)[0, 0].tolist() == [0, 2, 3, 1, 0]
    probability[0, :, 0, 4] = [0.5, 0.0, 0.05, 0.1, 0.35]
    assert labels_from_probabilities(probability)[0, 0, 4] == 4  # MVO likelier than scar


def test_refiner_splits_the_first_stage_wall_and_keeps_it():
    """The cascade: the wall (myocardium + scar + MVO) stays the first stage's; the refiner's (other, scar, MVO)
    split it. Wall 0.8 split 0.5 / 0.4 / 0.1 -> myocardium 0.4, scar 0.32, MVO 0.08: scar. Wall 0.5 split
    0.75 / 0.2 / 0.05 -> scar + MVO 0.25 of the wall (< 0.3): myocardium without scar."""
    from cardioquant.scar.network import labels_from_probabilities, refine

    first = np.array([[0.2, 0.0, 0.6, 0.2, 0.0], [0.5, 0.0, 0.5, 0.0, 0.0]], np.float32).T[None, :, None, :]
    refined = np.array([[0.5, 0.4, 0.1], [0.75, 0.2, 0.05]], np.float32).T[None, :, None, :]
    out = refine(first, refined)
    assert out[0, :, 0, 0] == pytest.approx([0.2, 0.0, 0.4, 0.32, 0.08])
    assert out[0, :, 0, 1] == pytest.approx([0.5, 0.0, 0.375, 0.1, 0.025])
    assert out.sum(1) == pytest.approx(first.sum(1))
    assert labels_from_probabilities(out)[0, 0].tolist() == [3, 2]


def test_small_scar_blobs_of_the_network_become_myocardium():
    """Blobs counted in 3D with face neighbours: at 0.1 mL per voxel, 3 voxels (0.3 mL) and two 12-voxel blobs that
    touch only at a corner (1.2 mL each) are under 2 mL; 25 voxels (2.5 mL, MVO inside) and the same two 12-voxel
    blobs joined by a face (2.4 mL) stay. The wall never changes."""
    from cardioquant.scar.network import drop_small_scar, small_scar_blobs_ml

    labels = np.full((2, 20, 20), 2, np.uint8)
    labels[0, 0:1, 0:3] = 3                          # 3 voxels
    labels[0, 10:15, 10:15] = 3                      # 25 voxels ...
    labels[0, 12, 12] = 4                            # ... one of them MVO
    labels[1, 0:3, 0:4], labels[1, 3:6, 4:8] = 3, 3  # 12 + 12, corner to corner
    out = drop_small_scar(labels, voxel_ml=0.1, min_ml=2.0)
    assert (out >= 2).all() and out is not labels
    assert (out == 3).sum() == 24 and out[0, 12, 12] == 4
    assert (out[0, 0, 0:3] == 2).all() and (out[1] == 2).all()
    assert small_scar_blobs_ml(labels, 0.1, 2.0) == pytest.approx([1.5, 1.2])  # the 3 voxels lie on a 12: what the reader is told
    labels[1, 3, 3] = 3                              # now the two blobs share a face: 25 voxels
    assert (drop_small_scar(labels, 0.1, 2.0)[1] == 3).sum() == 25
    assert small_scar_blobs_ml(labels, 0.1, 2.0) == []  # one blob of 28 voxels now
    labels[1, 3, 3] = 2
    assert small_scar_blobs_ml(labels, 0.1, 0.0) == []  # 0 keeps every blob: none is left out
    assert np.array_equal(drop_small_scar(labels, 0.1, 0.0), labels)


def test_negative_smallest_scar_blob_is_refused(capsys, tmp_path):
    case = make_lge_phantom(slices=3, size=64)
    path = write(tmp_path, case.signal.astype(np.float32), "lge.nrrd", {"modality": "MR"})
    assert cli.main(["scar", str(path), "-o", str(tmp_path / "out"), "--min-scar-ml", "-1", "--quiet"]) == 2
    assert "--min-scar-ml -1 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("pixel_spacing", [True, False])
def test_volumes_use_the_dicom_pixel_spacing_even_at_1_mm(tmp_path, pixel_spacing):
    """A real 1.0 x 1.0 mm DICOM keeps its spacing (myocardium volume = voxels x 1 x 1 x 8 mm3); only a DICOM
    without Pixel Spacing is given the assumed 1.5 mm, and the run says so."""
    from dicom_factory import write_ct_series

    from cardioquant.imageio import read_image
    from cardioquant.pipelines import settings_for
    from cardioquant.scar.pipeline import run

    case = make_lge_phantom(noise=3.0, spacing=(1.0, 1.0, 8.0))
    write_ct_series(tmp_path / "lge", case.signal, spacing=(1.0, 1.0, 8.0), kvp=None, modality="MR",
                    rescale_intercept=0.0, pixel_spacing=pixel_spacing)
    lv = case.labels.copy()
    lv[lv >= 2] = 2
    loaded = read_image(tmp_path / "lge")
    mask = sitk.GetImageFromArray(lv)
    mask.CopyInformation(loaded.image)
    sitk.WriteImage(mask, str(tmp_path / "lv.nrrd"))
    result = run(loaded, settings_for("scar", myocardium_mask=str(tmp_path / "lv.nrrd")), Progress())
    pixel_mm = 1.0 if pixel_spacing else 1.5
    assert result.summary["myocardium_ml"] == pytest.approx((lv == 2).sum() * pixel_mm * pixel_mm * 8.0 / 1000)
    assert result.summary["spacing_assumed"] is (not pixel_spacing)
    assert any("Pixel Spacing" in w for w in result.warnings) is (not pixel_spacing)


def test_a_png_slice_is_measured_at_the_assumed_spacing_and_says_so(tmp_path):
    """A PNG carries no pixel size (SimpleITK says 1 mm): volumes use the assumed 1.5 x 1.5 x 10 mm, never 1 mm,
    and the run says the spacing is assumed. The slice's outputs are written like a volume's (a segmentation one
    slice deep on the picture's grid)."""
    from cardioquant.scar.network import ASSUMED_SPACING

    case = make_lge_phantom(slices=1, noise=3.0)
    picture = np.clip(case.signal[0] / case.signal.max() * 255, 0, 255).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(picture), str(tmp_path / "slice.png"))
    lv = np.minimum(case.labels[0], 2).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(lv), str(tmp_path / "lv.png"))
    assert cli.main(["scar", str(tmp_path / "slice.png"), "--myocardium-mask", str(tmp_path / "lv.png"),
                     "-o", str(tmp_path / "out"), "--quiet"]) == 0
    result = json.loads((tmp_path / "out" / "scar.json").read_text())
    assert result["myocardium_ml"] == pytest.approx((lv == 2).sum() * np.prod(ASSUMED_SPACING) / 1000)
    assert result["spacing_assumed"] is True
    assert any("a PNG picture carries neither" in w and "1.5 x 1.5 x 10 mm assumed" in w for w in result["warnings"])
    segmentation = sitk.ReadImage(str(tmp_path / "out" / "scar.seg.nrrd"))
    assert segmentation.GetSize()[:3] == picture.shape[::-1] + (1,)


@pytest.mark.parametrize(("slices", "imaged"), [(1, 1), (3, 3), (3, 1)])
def test_a_slice_given_alone_to_the_network_is_flagged(slices, imaged):
    """The network reads each slice between its neighbours: one slice alone is read less well and the run says so,
    also when it is the only imaged slice of a stack whose other positions no slice filled (blank); a stack is not
    flagged."""
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.scar.pipeline import ONE_SLICE_WARNING, run

    case = make_lge_phantom(slices=slices, noise=3.0)
    signal = case.signal.copy()
    signal[imaged:] = signal.min()  # positions no slice was acquired at hold the series' lowest value
    image = sitk.GetImageFromArray(signal[0] if slices == 1 else signal)
    loaded = LoadedImage(image=image, path="lge.nrrd", format="nrrd", dicom={"modality": "MR"})
    result = run(loaded, settings_for("scar", device="cpu"), Progress())
    assert (ONE_SLICE_WARNING in result.warnings) is (imaged == 1)


def test_a_stack_stored_one_series_per_slice_is_measured_whole(tmp_path, capsys):
    """Short-axis LGE stored one series per breath-hold: the scar command reads the folder as the stack (its myocardium
    volume is every slice's), says so in the JSON, and refuses --dicom-seg (a SEG references one series) first."""
    from dicom_factory import write_ct_series
    from pydicom.uid import generate_uid

    from cardioquant.imageio import read_image

    case = make_lge_phantom(noise=3.0, spacing=(1.5, 1.5, 8.0))
    frame, study = generate_uid(), generate_uid()
    for k in range(len(case.signal)):
        write_ct_series(tmp_path / "lge" / f"breath_hold_{k}", case.signal[k:k + 1], spacing=(1.5, 1.5, 8.0), kvp=None,
                        modality="MR", rescale_intercept=0.0, z_positions=[8.0 * k], frame_uid=frame, study_uid=study)
    stack = read_image(tmp_path / "lge", allow_2d=True, stack_single_slices=True).image
    mask = sitk.GetImageFromArray(case.labels)
    mask.CopyInformation(stack)
    sitk.WriteImage(mask, str(tmp_path / "lv.nrrd"))
    command = ["scar", str(tmp_path / "lge"), "--myocardium-mask", str(tmp_path / "lv.nrrd"), "--quiet"]
    assert cli.main([*command, "-o", str(tmp_path / "seg"), "--dicom-seg"]) == 2
    assert "single-slice series" in capsys.readouterr().err and not (tmp_path / "seg").exists()
    assert cli.main([*command, "-o", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "scar.json").read_text())
    assert result["myocardium_ml"] == pytest.approx((case.labels >= 2).sum() * 1.5 * 1.5 * 8.0 / 1000)
    assert any(f"{len(case.signal)} single-slice series stacked" in w for w in result["warnings"])
    assert result["input"]["stacked_series"] == len(case.signal)


def test_a_stack_with_a_missing_slice_is_measured_on_its_own_slices(tmp_path, capsys):
    """A short-axis DICOM stack with one breath-hold skipped (8 mm slices, none at 24 mm): read on the 8 mm grid,
    the reader's myocardium volume is that of the slices there (8 mm each, not the 10 mm of an even spread), the
    JSON says a slice is missing, and --dicom-seg is refused (the SEG would reference a slice that does not exist)."""
    from dicom_factory import write_ct_series

    case = make_lge_phantom(noise=3.0, spacing=(1.5, 1.5, 8.0))
    z_positions = [8.0 * k + (8.0 if k >= 3 else 0.0) for k in range(len(case.signal))]
    write_ct_series(tmp_path / "lge", case.signal, spacing=(1.5, 1.5, 8.0), kvp=None, modality="MR",
                    rescale_intercept=0.0, z_positions=z_positions)
    on_grid = np.insert(case.labels, 3, 0, axis=0)  # the reader draws on the volume as loaded
    mask = sitk.GetImageFromArray(on_grid)
    mask.SetSpacing((1.5, 1.5, 8.0))
    sitk.WriteImage(mask, str(tmp_path / "lv.nrrd"))
    command = ["scar", str(tmp_path / "lge"), "--myocardium-mask", str(tmp_path / "lv.nrrd"), "--quiet"]
    assert cli.main([*command, "-o", str(tmp_path / "seg"), "--dicom-seg"]) == 2
    assert "missing slice" in capsys.readouterr().err and not (tmp_path / "seg").exists()
    assert cli.main([*command, "-o", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "scar.json").read_text())
    assert result["myocardium_ml"] == pytest.approx((case.labels >= 2).sum() * 1.5 * 1.5 * 8.0 / 1000)
    assert any("1 missing slice(s)" in w for w in result["warnings"]) and result["input"]["missing_slices"] == [3]


def test_the_network_reads_only_the_slices_that_were_imaged(monkeypatch):
    """A blank slice (a position no slice was acquired at) is not given to the network, which reads the others in
    order, each between its imaged neighbours; the blank slice stays background."""
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.scar import network
    from cardioquant.scar.pipeline import segment

    case = make_lge_phantom(noise=3.0)
    stack = np.insert(case.signal, 2, case.signal.min(), axis=0)
    given = []

    def network_reading(_model, normalised, *_args, **_options):
        given.append(normalised)
        return np.where(normalised > 0.5, 2, 0).astype(np.uint8)

    monkeypatch.setattr(network, "predict", network_reading)
    loaded = LoadedImage(image=sitk.GetImageFromArray(stack), path="lge.nrrd", format="nrrd", dicom={"modality": "MR"})
    labels, _, _, _ = segment(loaded, stack, (1.5, 1.5, 10.0), settings_for("scar", device="cpu"), Progress())
    assert np.array_equal(given[0], network.normalise_stack(case.signal))
    assert not labels[2].any() and labels[[0, 1, 3]].any()


def test_the_reader_is_told_of_the_scar_blobs_the_clean_up_left_out(monkeypatch):
    """The network's scar blobs under the smallest-blob setting become myocardium, and the run says so: a 3 x 3-pixel
    blob on one 1.5 x 1.5 x 10 mm slice is 0.2 mL, under 2 mL; a 10 x 10 blob (2.25 mL) stays and is not mentioned.
    With the setting at 0 both stay and nothing is said."""
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.scar import network
    from cardioquant.scar.pipeline import segment

    case = make_lge_phantom(noise=3.0)

    def network_reading(_model, normalised, *_args, **_options):
        labels = np.where(normalised > 0.5, 2, 0).astype(np.uint8)
        labels[0, 5:8, 5:8] = 3
        labels[1, 20:30, 20:30] = 3
        return labels

    monkeypatch.setattr(network, "predict", network_reading)
    loaded = LoadedImage(image=sitk.GetImageFromArray(case.signal), path="lge.nrrd", format="nrrd",
                         dicom={"modality": "MR"})
    labels, _, told, _ = segment(loaded, case.signal, (1.5, 1.5, 10.0), settings_for("scar", device="cpu"), Progress())
    assert labels[0, 6, 6] == 2 and (labels[1, 20:30, 20:30] == 3).all()
    assert len(told) == 1 and told[0].startswith("1 scar blob(s) the network found under 2 mL (0.2 mL in all")
    labels, _, told, _ = segment(loaded, case.signal, (1.5, 1.5, 10.0),
                              settings_for("scar", device="cpu", min_scar_ml=0.0), Progress())
    assert labels[0, 6, 6] == 3 and told == []


def test_export_after_an_edit_writes_the_edited_scar_and_the_runs_insertion(tmp_path):
    """What the panel's Export writes after the reader erases the scar of one slice: scar volume and %LGE of the
    edited labels (counted voxel by voxel), with the run's RV insertion."""
    from cardioquant.imageio import read_image
    from cardioquant.results import write_outputs
    from cardioquant.scar.pipeline import edited_result

    case = make_lge_phantom(noise=3.0, seed=7)
    scan = write(tmp_path, case.signal, "lge.nrrd", {"modality": "MR"})
    drawn = write(tmp_path, case.labels, "drawn.nrrd")
    assert cli.main(["scar", str(scan), "--myocardium-mask", str(drawn), "-o", str(tmp_path / "run"), "--quiet"]) == 0
    run_document = json.loads((tmp_path / "run" / "scar.json").read_text())
    edited = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "run" / "scar_labels.nrrd")))
    edited[1][edited[1] >= 3] = 2  # the reader removes the scar (and MVO) of slice 1
    loaded = read_image(scan)
    write_outputs(edited_result(loaded, edited, run_document), loaded, tmp_path / "export")
    exported = json.loads((tmp_path / "export" / "scar.json").read_text())
    voxel_ml = float(np.prod(case.spacing)) / 1000
    assert exported["scar_ml"] + exported["mvo_ml"] == pytest.approx((edited >= 3).sum() * voxel_ml)
    assert exported["lge_percent"] == pytest.approx(100 * (edited >= 3).sum() / (edited >= 2).sum())
    assert exported["lge_percent"] < run_document["lge_percent"]
    assert exported["rv_insertion"]["angle_deg"] == pytest.approx(run_document["rv_insertion"]["angle_deg"])
    assert any("edited by the reader" in w for w in exported["warnings"])


class _ApexWardNetwork(_IntensityNetwork):
    """Answers, for each slice, the class of the slice read just before it (its first neighbour channel): what a
    network reading a slice between its neighbours in the wrong order would get wrong."""

    def __init__(self):
        super().__init__()
        self.centre.weight.data[:] = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)


@pytest.mark.parametrize("stored", ["base first", "apex first"])
def test_the_networks_read_a_stack_apex_first_as_they_learnt_whichever_way_the_file_runs(stored):
    """Both LGE networks learnt stacks running from the apex to the base. A file may store its slices either way:
    with no orientation to say which, the LV's cavity does (the base has the larger one), and a stack stored base
    first is read reversed. Read by a network that answers from the slice before it, every slice then gets its
    apex-ward neighbour's labels (the apex slice its own), whichever way the file runs, back in the file's order."""
    from cardioquant.scar import network

    assert network.FIRST_SLICE == "apex"
    truth = make_lge_phantom(slices=7, noise=0.0).labels  # base at slice 0: the LV narrows towards the apex
    apex_ward = truth[np.minimum(np.arange(7) + 1, 6)]
    if stored == "apex first":
        truth, apex_ward = truth[::-1], apex_ward[::-1]
    stack = np.where(truth == 1, 0.5, np.where(truth >= 2, 1.0, 0.0)).astype(np.float32)
    labels = network.predict(_ApexWardNetwork().eval(), stack, torch.device("cpu"), flips=((),))
    expected = np.where(apex_ward >= 2, 2, apex_ward)  # the stand-in network knows no scar
    assert np.array_equal(labels, expected)


def test_the_scans_orientation_says_which_end_of_the_stack_is_the_apex():
    """The LV's long axis runs from the base towards the patient's left, front and feet. A stack whose slices step
    away from that (as every MyoPS stack's do) runs from the apex to the base; stored the other way it runs from the
    base; a stack without an orientation of its own, or with slices along the long axis, does not say."""
    from cardioquant.scar import aha

    towards_apex = np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)
    column = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)
    row = np.cross(-towards_apex, column)
    short_axis = np.column_stack([column, row, -towards_apex])  # slices stepping from the apex to the base
    assert aha.stack_runs_apex_first(short_axis) is True
    assert aha.stack_runs_apex_first(short_axis * [1, 1, -1]) is False
    assert aha.stack_runs_apex_first(np.eye(3)) is None
    long_axis = np.column_stack([towards_apex, row, column])  # slices cut along the long axis
    assert aha.stack_runs_apex_first(long_axis) is None


def test_a_short_axis_stack_stored_base_first_reads_as_its_apex_first_copy(tmp_path):
    """The same short-axis stack (a generated LGE heart, an oblique MyoPS-like orientation) written apex first, as
    both training centres store their stacks, and base first, every slice at the same place in the patient: the
    whole `cardioquant scar` command gives the same labels voxel for voxel, the same %LGE and the same segments."""
    towards_apex = np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)
    column = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)
    row = np.cross(-towards_apex, column)
    case = make_lge_phantom(slices=7, noise=3.0, seed=5, rv_arc=(60.0, 180.0))  # base at slice 0
    base_first = sitk.GetImageFromArray(case.signal)
    base_first.SetSpacing(case.spacing)
    base_first.SetDirection(tuple(np.column_stack([column, row, towards_apex]).ravel()))
    apex_first = sitk.GetImageFromArray(np.ascontiguousarray(case.signal[::-1]))
    apex_first.SetSpacing(case.spacing)
    apex_first.SetOrigin(base_first.TransformIndexToPhysicalPoint((0, 0, 6)))
    apex_first.SetDirection(tuple(np.column_stack([column, row, -towards_apex]).ravel()))
    readings = {}
    for name, image in (("apex_first", apex_first), ("base_first", base_first)):
        image.SetMetaData("modality", "MR")
        sitk.WriteImage(image, str(tmp_path / f"{name}.nrrd"), True)
        assert cli.main(["scar", str(tmp_path / f"{name}.nrrd"), "-o", str(tmp_path / name), "--quiet"]) == 0
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / name / "scar_labels.nrrd")))
        readings[name] = (labels, json.loads((tmp_path / name / "scar.json").read_text()))
    (apex_labels, apex_json), (base_labels, base_json) = readings["apex_first"], readings["base_first"]
    assert (apex_labels == 2).sum() > 1000
    assert np.array_equal(apex_labels[::-1], base_labels)
    assert base_json["lge_percent"] == pytest.approx(apex_json["lge_percent"], abs=1e-9)
    assert base_json["aha_segments"] == apex_json["aha_segments"]


def test_the_scans_orientation_puts_the_basal_ring_at_the_base_when_the_end_cavities_are_alike():
    """MyoPS Case3003: three slices whose LV cavities read 2993, 3233 and 2993 pixels. Told by the cavity alone the
    first slice is taken for the base; the scan's orientation says the stack runs from the apex, so the basal ring
    (segments 1-6) is the last slice and the apical ring (13-16) the first."""
    cavity, myocardium = np.zeros((3, 40, 40), bool), np.zeros((3, 40, 40), bool)
    rows, cols = np.indices((40, 40))
    radius = np.hypot(rows - 19.5, cols - 19.5)
    for k, r in enumerate((8.0, 8.5, 8.0)):
        cavity[k], myocardium[k] = radius <= r, (radius > r) & (radius <= r + 5)
    assert aha.slice_rings(cavity, myocardium) == {0: "basal", 1: "mid", 2: "apical"}
    assert aha.slice_rings(cavity, myocardium, apex_first=True) == {2: "basal", 1: "mid", 0: "apical"}
    segments = aha.segment_map(cavity, myocardium, apex_first=True)
    assert set(np.unique(segments[2][myocardium[2]])) == {1, 2, 3, 4, 5, 6}
    assert set(np.unique(segments[0][myocardium[0]])) == {13, 14, 15, 16}


def test_the_report_bullseye_writes_each_figure_legibly_and_the_slice_shows_the_heart():
    """A 0 % segment is drawn at the colour map's dark end: its figure in white (black text had vanished on it); a
    100 % one and a not-imaged grey one in black. The slice panel shows the LV, not a whole field of view in which
    it is a tenth of the width."""
    import matplotlib as mpl

    from cardioquant.scar import report

    inferno = mpl.colormaps["inferno"]
    assert report.legible_on(inferno(0.0)) == "white"
    assert report.legible_on(inferno(1.0)) == "black"
    assert report.legible_on(report.NOT_IMAGED) == "black"
    labels = np.zeros((480, 480), np.uint8)
    labels[200:240, 300:340] = 2  # a 40-pixel LV in a 480-pixel field of view
    rows, cols = report.around_the_heart(labels)
    assert rows.start <= 200 and rows.stop >= 240 and cols.start <= 300 and cols.stop >= 340
    assert rows.stop - rows.start <= 100 and cols.stop - cols.start <= 100
    near_edge = np.zeros((480, 480), np.uint8)
    near_edge[0:30, 450:480] = 2
    rows, cols = report.around_the_heart(near_edge)
    assert (rows.start, cols.stop) == (0, 480) and rows.stop > 30 and cols.start < 450
    assert report.around_the_heart(np.zeros((64, 80), np.uint8)) == (slice(0, 64), slice(0, 80))


def test_a_readers_myocardium_given_as_a_dicom_seg_is_read_by_its_segments_names(tmp_path, capsys):
    """A DICOM SEG numbers its segments in the order its writer chose: here 1 'myocardium', 2 'LV cavity' (EMIDEC's
    values are the other way round). Read by name, the myocardium is the myocardium; one segment named otherwise
    (drawn in another tool) is the myocardium, its cavity what it encloses; several with none of this module's
    names are refused in one line that lists them."""
    from dicom_factory import write_ct_series, write_seg

    case = make_lge_phantom(noise=3.0, spacing=(1.5, 1.5, 8.0))
    files = write_ct_series(tmp_path / "lge", case.signal, spacing=(1.5, 1.5, 8.0), kvp=None, modality="MR",
                            rescale_intercept=0.0)
    wall, cavity = case.labels >= 2, case.labels == 1
    voxel_ml = 1.5 * 1.5 * 8.0 / 1000
    swapped = write_seg(tmp_path / "swapped.dcm", files, np.where(wall, 1, np.where(cavity, 2, 0)),
                        {1: "myocardium", 2: "LV cavity"})
    alone = write_seg(tmp_path / "alone.dcm", files, wall.astype(np.uint8), {1: "Segment_1"})
    for seg, name in ((swapped, "swapped"), (alone, "alone")):
        assert cli.main(["scar", str(tmp_path / "lge"), "--myocardium-mask", str(seg), "-o", str(tmp_path / name),
                         "--quiet"]) == 0
        result = json.loads((tmp_path / name / "scar.json").read_text())
        assert result["myocardium_ml"] == pytest.approx(wall.sum() * voxel_ml)
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / name / "scar_labels.nrrd")))
        assert np.array_equal(labels == 1, cavity)
    organs = write_seg(tmp_path / "organs.dcm", files, np.where(wall, 1, np.where(cavity, 2, 0)),
                       {1: "spleen", 2: "kidney_right"})
    assert cli.main(["scar", str(tmp_path / "lge"), "--myocardium-mask", str(organs), "-o", str(tmp_path / "o"),
                     "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "2 segments (kidney_right, spleen)" in lines[0] and "none is called" in lines[0]


def test_a_readers_myocardium_drawn_without_its_cavity_gets_the_cavity_it_encloses(tmp_path):
    """The panel writes a myocardium drawn in another tool as the myocardium alone (value 2, no cavity): the cavity
    the RV insertion, the AHA segments and the remote myocardium are found from is what the wall encloses."""
    case = make_lge_phantom(noise=3.0)
    scan = write(tmp_path, case.signal, "lge.nrrd", {"modality": "MR"})
    mask = write(tmp_path, np.where(case.labels >= 2, 2, 0).astype(np.uint8), "wall.nrrd")
    assert cli.main(["scar", str(scan), "--myocardium-mask", str(mask), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "scar_labels.nrrd")))
    assert np.array_equal(labels == 1, case.labels == 1)


def test_an_option_of_one_point_refuses_several_before_the_scan_is_read(capsys, tmp_path):
    """--rv-insertion-point (and CT-FFR's --ostium) take one point: a list or markups file of two (a reader who
    placed both RV insertions) is refused in one line before the scan is read, where its first point was taken as
    the anterior insertion."""
    never_read = tmp_path / "not_read.nrrd"
    for module, option in (("scar", "--rv-insertion-point"), ("ffr", "--ostium")):
        assert cli.main([module, str(never_read), f"{option}=10,20,30;-10,25,30", "-o", str(tmp_path / module),
                         "--quiet"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and f"{option} takes one point" in lines[0] and "holds 2" in lines[0]
