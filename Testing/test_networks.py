"""Shipped networks: checksums, provenance, and properties that hold whatever the data."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from cardioquant.models.manifest import get_model, load_manifest
from cardioquant.models.runtime import load_model, resolve_weights


@pytest.mark.parametrize("name", ["vertebra_segmenter", "lge_segmenter", "lge_scar_refiner"])
def test_bundled_weights_verify_and_load(name):
    entry = get_model(name)
    path, origin = resolve_weights(entry, allow_download=False)
    assert origin == "bundled" and path.stat().st_size == entry.size_bytes < 5_000_000
    assert entry.training_data and entry.training_script.startswith("scripts/") and entry.accuracy
    load_model(entry, path)


@pytest.mark.parametrize("name", ["coronary_lumen", "vertebra_segmenter", "lge_segmenter", "lge_scar_refiner"])
def test_each_weights_file_agrees_with_its_manifest_entry(name):
    """The entry is the one source of a model's preprocessing: the weights file holds exactly the entry's
    architecture (every tensor's shape), one output per listed class, one input per slice read (plus the first
    stage's two probabilities for the refiner), and a patch the UNet's strides divide."""
    entry = get_model(name)
    path, _ = resolve_weights(entry, allow_download=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    built = load_model(entry, path).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in built.items()}
    kwargs = entry.architecture["kwargs"]
    assert kwargs["out_channels"] == len(entry.labels)
    expected_inputs = entry.input.get("input_slices", 1) + (2 if name == "lge_scar_refiner" else 0)
    assert kwargs["in_channels"] == expected_inputs
    assert kwargs["spatial_dims"] == entry.input["spatial_dims"] == len(entry.input["patch_size"])
    assert len(entry.input["spacing_mm"]) == entry.input["spatial_dims"]
    stride = int(np.prod(kwargs["strides"]))
    assert all(size % stride == 0 for size in entry.input["patch_size"])


def test_the_code_runs_each_network_with_its_entrys_preprocessing():
    """The network modules take grid, orientation, intensity window, patch, mirrors and cut-offs from the manifest entry."""
    from cardioquant.bmd import network as vertebra
    from cardioquant.ffr import lumen_network as lumen
    from cardioquant.scar import network as lge

    for module, entry in ((vertebra, get_model("vertebra_segmenter")), (lumen, get_model("coronary_lumen"))):
        window = entry.input["normalisation"]
        assert entry.input["spacing_mm"][0] == module.GRID_MM and tuple(window["clip_hu"]) == module.HU_WINDOW
        assert entry.input["orientation"]["axes"] == module.ORIENTATION
        hu = np.array([-2000.0, 0.0, 400.0, 5000.0])
        expected = (np.clip(hu, *window["clip_hu"]) - window["offset_hu"]) / window["scale_hu"]
        assert module.normalise(hu) == pytest.approx(expected)
    segmenter, refiner = get_model("lge_segmenter").input, get_model("lge_scar_refiner").input
    assert segmenter["slice_order"]["first"] == refiner["slice_order"]["first"] == lge.FIRST_SLICE
    assert segmenter["spacing_mm"][0] == lge.TRAINED_PIXEL_MM and segmenter["patch_size"][0] == lge.CROP
    assert len(lge.FLIPS) == segmenter["test_time_mirrors"] and refiner["test_time_mirrors"] == lge.REFINER_FLIPS
    assert segmenter["cut_offs"]["myocardium_probability"] == lge.MYOCARDIUM_PROBABILITY
    assert refiner["cut_offs"]["scar_share_of_wall"] == lge.SCAR_PROBABILITY
    assert refiner["cut_offs"]["min_scar_component_ml"] == lge.MIN_SCAR_COMPONENT_ML
    plane = np.arange(1000, dtype=np.float32).reshape(10, 100)
    low, high = np.percentile(plane, segmenter["normalisation"]["percentiles"])
    assert lge.normalise_slice(plane) == pytest.approx(np.clip((plane - low) / (high - low),
                                                               *segmenter["normalisation"]["clip"]))


def test_manifest_lists_each_model_once():
    names = [m for m in load_manifest()]
    assert sorted(names) == ["coronary_lumen", "lge_scar_refiner", "lge_segmenter", "vertebra_segmenter"]


def test_lge_segmentation_does_not_depend_on_the_intensity_range():
    """Per-slice normalisation: an 8-bit stack and the same stack as 12-bit-like values segment identically."""
    from cardioquant.scar import network
    from cardioquant.scar.phantom import make_lge_phantom

    entry = get_model(network.MODEL_NAME)
    model = load_model(entry, resolve_weights(entry)[0])
    case = make_lge_phantom(slices=3, size=160, noise=4.0)
    eight_bit = np.clip(case.signal, 0, 255)
    twelve_bit = eight_bit * 13.0 + 250.0
    a = network.predict(model, network.normalise_stack(eight_bit), torch.device("cpu"))
    b = network.predict(model, network.normalise_stack(twelve_bit), torch.device("cpu"))
    assert a.shape == case.signal.shape and np.array_equal(a, b)


def test_lge_network_reads_each_slice_between_its_neighbours():
    """2.5D input: slice k comes with k-1 and k+1; the end slices repeat themselves; a single slice is alone."""
    from cardioquant.scar import network

    stack = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    channels = network.with_neighbours(stack, 3)[:, :, 0, 0]
    assert channels.tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    assert network.with_neighbours(stack[:1], 3)[:, :, 0, 0].tolist() == [[0, 0, 0]]
    entry = get_model(network.MODEL_NAME)
    model = load_model(entry, resolve_weights(entry)[0])
    assert network.input_channels(model) == entry.architecture["kwargs"]["in_channels"]


def test_scar_refiner_reads_the_slices_and_the_first_stage_wall(tmp_path):
    """The refiner's five inputs: the slice between its neighbours, P(cavity), P(myocardium + scar + MVO); the
    shipped refiner takes exactly that many. The CLI records both networks of the cascade in scar.json."""
    import json

    from cardioquant import cli
    from cardioquant.scar import network
    from cardioquant.scar.phantom import make_lge_phantom

    stack = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    probability = np.zeros((3, 5, 2, 2), np.float32)
    probability[:, 1], probability[:, 2], probability[:, 3], probability[:, 4] = 0.1, 0.2, 0.3, 0.15
    inputs = network.refiner_inputs(stack, probability)[:, :, 0, 0]
    assert inputs == pytest.approx(np.array([[0, 0, 1, 0.1, 0.65], [0, 1, 2, 0.1, 0.65], [1, 2, 2, 0.1, 0.65]]))
    entry = get_model(network.REFINER_NAME)
    assert network.input_channels(load_model(entry, resolve_weights(entry)[0])) == inputs.shape[1]

    case = make_lge_phantom(slices=3, size=128)
    image = sitk.GetImageFromArray(case.signal.astype(np.float32))
    image.SetSpacing((1.5, 1.5, 8.0))
    image.SetMetaData("modality", "MR")
    sitk.WriteImage(image, str(tmp_path / "lge.nrrd"))
    assert cli.main(["scar", str(tmp_path / "lge.nrrd"), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    written = json.loads((tmp_path / "out" / "scar.json").read_text())
    models = written["versions"]["models"]
    assert [m["name"] for m in models] == [network.MODEL_NAME, network.REFINER_NAME]
    assert all(m["weights_origin"] == "bundled" for m in models)
    assert written["settings"]["min_scar_component_ml"] == network.MIN_SCAR_COMPONENT_ML


def _vertebra_network_on_phantom(levels):
    from cardioquant.bmd import phantom
    from cardioquant.bmd.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    case = phantom.make_spine_phantom(seed=41500, spacing=(1.0, 1.0, 2.0), levels=levels, fov_mm=300.0)
    image = sitk.GetImageFromArray(case.hu)
    image.SetSpacing(case.spacing)
    image.SetOrigin(case.origin)
    loaded = LoadedImage(image=image, path="phantom", format="phantom", dicom={"modality": "CT", "kvp": "120"})
    return case, run(loaded, settings_for("bmd", device="cpu"), Progress())


def test_vertebra_network_on_a_held_out_phantom_named_from_its_ribs():
    """End to end with the network source on a phantom it never saw (T10-L3, no sacrum): every body found, levels
    named from the lowest rib-bearing vertebra, BMD within 3 mg/cm^3 of the phantom's truth."""
    case, result = _vertebra_network_on_phantom(("T10", "T11", "T12", "L1", "L2", "L3"))
    assert result.summary["level_naming"]["determined"]
    assert list(result.summary["vertebrae"]) == ["L3", "L2", "L1", "T12", "T11", "T10"]
    for level in ("L1", "L2", "L3", "T12"):
        assert abs(result.summary["vertebrae"][level]["bmd_mg_cm3"] - case.bmd_mg_cm3[level]) < 3.0


@pytest.mark.xfail(strict=True, reason="vertebra_segmenter 2.2.1 and later read every scan turned to LAS, the orientation its "
                   "real CTs were learnt in; the phantoms were learnt the other way up, and on this one S1 is read as "
                   "a body (the levels are left undetermined, the anchors disagreeing). README, BMD limits.")
def test_vertebra_network_on_a_held_out_phantom_with_its_sacrum():
    """The same on T12-S1: the body resting on the sacrum is L5, BMD within 3 mg/cm^3."""
    case, result = _vertebra_network_on_phantom(("T12", "L1", "L2", "L3", "L4", "L5", "S1"))
    assert result.summary["level_naming"]["determined"]
    for level in ("L1", "L2", "L5"):
        assert abs(result.summary["vertebrae"][level]["bmd_mg_cm3"] - case.bmd_mg_cm3[level]) < 3.0


def test_the_vertebra_training_grain_is_a_low_dose_scans_noise_in_hu():
    """--grain-augmentation adds zero-mean noise whose SD, read back in HU, is drawn from 0 to the most asked for:
    ordinary and low-dose crops both."""
    from train_vertebra_segmenter import grain_augmented

    from cardioquant.bmd import network

    crop = network.normalise(np.full((1, 32, 32, 32), 40.0))
    added = [(grain_augmented(crop, np.random.default_rng(seed), 25.0) - crop) * network.HU_SCALE for seed in range(20)]
    sds = [float(grain.std()) for grain in added]
    assert min(sds) < 10.0 and 15.0 < max(sds) <= 25.0 * 1.02
    assert all(abs(float(grain.mean())) < 1.0 for grain in added)


def test_keeping_part_of_the_start_averages_each_weight_with_the_one_training_began_from(tmp_path):
    """--keep-init 0.3 (WiSE-FT): every weight written is 0.3 x where training started + 0.7 x where it ended."""
    from train_vertebra_segmenter import keep_part_of_the_start

    network = torch.nn.Linear(3, 2)
    start = {key: torch.full_like(value, 1.0) for key, value in network.state_dict().items()}
    torch.save(start, tmp_path / "start.pt")
    network.load_state_dict({key: torch.full_like(value, 2.0) for key, value in start.items()})
    keep_part_of_the_start(network, tmp_path / "start.pt", 0.3)
    for value in network.state_dict().values():
        assert torch.allclose(value, torch.full_like(value, 0.3 * 1.0 + 0.7 * 2.0))


def test_training_only_the_first_encoder_levels_leaves_every_other_weight_where_it_started():
    """--train-only model.0.: one optimiser step moves the first level's weights and no other."""
    from train_vertebra_segmenter import train_only

    network = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    before = {key: value.clone() for key, value in network.state_dict().items()}
    train_only(network, ["0."])
    optimiser = torch.optim.AdamW(network.parameters(), lr=0.1, weight_decay=1e-4)
    network(torch.ones(4, 3)).square().sum().backward()
    optimiser.step()
    after = network.state_dict()
    assert not torch.equal(after["0.weight"], before["0.weight"])
    assert torch.equal(after["1.weight"], before["1.weight"]) and torch.equal(after["1.bias"], before["1.bias"])


def test_training_only_layers_that_the_network_does_not_have_is_refused():
    """A --train-only prefix matching no parameter (a typo) stops the run rather than training nothing."""
    from train_vertebra_segmenter import train_only

    with pytest.raises(SystemExit, match="no parameter name starts with"):
        train_only(torch.nn.Sequential(torch.nn.Linear(3, 2)), ["model.0."])
