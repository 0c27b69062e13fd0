"""Model runtime: manifest schema, checksums, download on first use (local server only), device, inference."""

import functools
import http.server
import json
import threading

import numpy as np
import pytest
import torch

from cardioquant.errors import InputError
from cardioquant.models import manifest as manifest_module
from cardioquant.models import runtime
from cardioquant.models.manifest import ModelEntry, load_manifest
from cardioquant.progress import Progress

ARCHITECTURE = {"name": "UNet", "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                                           "channels": [4, 8], "strides": [2], "num_res_units": 0}}


def _entry(sha256: str, url: str | None = None, file: str = "tiny.pt") -> ModelEntry:
    return ModelEntry(name="tiny", version="1.0", file=file, sha256=sha256, url=url, architecture=ARCHITECTURE,
                      input={"spatial_dims": 3, "normalisation": {"method": "none"}}, labels={"1": "foreground"},
                      training_data="none (test model)", accuracy={})


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    network = runtime.build_network(_entry("0" * 64))
    path = tmp_path / "served" / "tiny.pt"
    path.parent.mkdir()
    torch.save(network.state_dict(), path)
    return path, runtime.sha256_file(path)


@pytest.fixture
def server(weights):
    """HTTP server on 127.0.0.1 serving the weights folder (tests never touch the internet)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(weights[0].parent))
    handler.log_message = lambda *_args, **_kwargs: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_shipped_manifest_is_valid():
    models = load_manifest()
    for entry in models.values():
        assert entry.training_data and entry.accuracy is not None


def test_invalid_manifest_names_the_field(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"schema_version": 1, "models": [{"name": "x", "version": "1", "file": "x.pt",
                                                                "sha256": "abc"}]}))
    with pytest.raises(InputError, match="invalid at 'models/0'"):
        load_manifest(path)


def test_download_on_first_use_verifies_and_caches(weights, server):
    path, digest = weights
    entry = _entry(digest, url=f"{server}/tiny.pt")
    first, origin = runtime.resolve_weights(entry, allow_download=True)
    assert origin == "download" and runtime.sha256_file(first) == digest
    second, origin = runtime.resolve_weights(entry, allow_download=False)  # now served from the cache
    assert origin == "cache" and second == first


def test_download_with_wrong_checksum_keeps_nothing(server):
    entry = _entry("f" * 64, url=f"{server}/tiny.pt")
    with pytest.raises(InputError, match="fail the sha256 check"):
        runtime.resolve_weights(entry, allow_download=True)
    cached = runtime.cache_dir() / "tiny" / "1.0"
    assert not cached.exists() or not any(cached.iterdir())


def test_unreachable_url_is_clear(weights):
    entry = _entry(weights[1], url="http://127.0.0.1:9/tiny.pt")  # port 9 (discard): connection refused
    with pytest.raises(InputError, match="cannot download"):
        runtime.resolve_weights(entry, allow_download=True)


def test_offline_without_cache_is_clear(weights, monkeypatch):
    monkeypatch.setenv("CARDIOQUANT_OFFLINE", "1")
    with pytest.raises(InputError, match="downloads are off"):
        runtime.resolve_weights(_entry(weights[1], url="http://127.0.0.1:9/tiny.pt"))


def test_corrupted_cached_weights_fail_checksum(weights):
    path, digest = weights
    cached = runtime.cache_dir() / "tiny" / "1.0" / "tiny.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(InputError, match="cached weights .* fail the sha256 check"):
        runtime.resolve_weights(_entry(digest))


def test_bundled_weights_are_checked(weights, monkeypatch):
    path, digest = weights
    monkeypatch.setattr(runtime, "BUNDLED_WEIGHTS_DIR", path.parent)
    assert runtime.resolve_weights(_entry(digest)) == (path, "bundled")
    with pytest.raises(InputError, match="bundled weights"):
        runtime.resolve_weights(_entry("a" * 64))


def test_user_weights_take_precedence_and_must_exist(weights, monkeypatch, tmp_path):
    path, digest = weights
    assert runtime.resolve_weights(_entry("a" * 64), user_path=path) == (path, "user")
    monkeypatch.setenv("CARDIOQUANT_WEIGHTS_TINY", str(path))
    assert runtime.resolve_weights(_entry("a" * 64)) == (path, "env")
    with pytest.raises(InputError, match="weights file not found"):
        runtime.resolve_weights(_entry(digest), user_path=tmp_path / "missing.pt")


def test_corrupt_or_mismatched_weights_give_clear_error(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a torch file")
    with pytest.raises(InputError, match="corrupt or not a PyTorch state dict"):
        runtime.load_model(_entry("0" * 64), garbage)
    other = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    with pytest.raises(InputError, match="do not fit model tiny"):
        runtime.load_model(_entry("0" * 64), other)


def test_device_selection_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.select_device("cuda").type == "cpu"
    assert runtime.select_device("auto").type == "cpu"
    with pytest.raises(InputError, match="unknown device"):
        runtime.select_device("tpu")


def test_sliding_window_matches_whole_volume_and_reports_progress():
    """A per-voxel network (1x1x1 conv) gives the same output windowed or whole: windowing must be exact."""
    network = torch.nn.Conv3d(1, 2, kernel_size=1)
    image = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 1, 20, 24, 28)).astype(np.float32))
    seen = []
    logits = runtime.sliding_window_predict(network, image, (16, 16, 16), torch.device("cpu"), sw_batch_size=2,
                                            progress=Progress(lambda f, _message: seen.append(f)))
    with torch.no_grad():
        assert torch.allclose(logits, network(image), atol=1e-5)
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_cancel_stops_inference():
    network = torch.nn.Conv3d(1, 2, kernel_size=1)
    progress = Progress()
    progress.cancel()
    from cardioquant.errors import CancelledError

    with pytest.raises(CancelledError):
        runtime.sliding_window_predict(network, torch.zeros(1, 1, 20, 20, 20), (8, 8, 8), torch.device("cpu"),
                                       progress=progress)


def test_manifest_paths_exist():
    assert manifest_module.SCHEMA_PATH.is_file() and manifest_module.MANIFEST_PATH.is_file()


def test_user_weights_are_recorded_by_their_own_checksum_and_carry_no_accuracy(tmp_path):
    """The shipped weights given as --weights are the manifest's model (same sha256: its accuracy stands);
    retrained ones are 'user weights, accuracy not measured by CardioQuant', with their own sha256."""
    import hashlib

    import torch

    from cardioquant.models.manifest import BUNDLED_WEIGHTS_DIR, get_model
    from cardioquant.models.runtime import USER_WEIGHTS_NOTE, load_named_model

    entry = get_model("vertebra_segmenter")
    same = tmp_path / "same.pt"
    same.write_bytes((BUNDLED_WEIGHTS_DIR / entry.file).read_bytes())
    _, _, provenance = load_named_model(entry.name, same, torch.device("cpu"))
    assert provenance["sha256"] == entry.sha256 and provenance["accuracy"] == entry.accuracy
    assert provenance["weights_origin"] == "user" and "note" not in provenance
    state = torch.load(same, weights_only=True)
    first = next(iter(state))
    state[first] = state[first] + 0.01  # retrained by the user
    torch.save(state, tmp_path / "mine.pt")
    _, _, provenance = load_named_model(entry.name, tmp_path / "mine.pt", torch.device("cpu"))
    assert provenance["sha256"] == hashlib.sha256((tmp_path / "mine.pt").read_bytes()).hexdigest() != entry.sha256
    assert provenance["accuracy"] is None and provenance["note"] == USER_WEIGHTS_NOTE


def test_a_training_run_killed_midway_resumes_from_its_checkpoint_to_the_same_weights(tmp_path):
    """Training runs checkpoint as they go: a run stopped after iteration 3 and started again with the same
    checkpoint ends with the weights of a run that never stopped (same batches, same optimiser state)."""
    from cardioquant.models.training import train

    def run(stop_at=None):
        torch.manual_seed(0)
        network = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1))
        generator = torch.Generator().manual_seed(1)
        calls = {"n": 0}

        def next_batch():
            calls["n"] += 1
            if calls["n"] == stop_at:
                raise KeyboardInterrupt
            x = torch.rand(2, 1, 8, 8, generator=generator)
            return x, (x > 0.5).long()

        return network, generator, next_batch

    reference, generator, batches = run()
    train(reference, batches, 6, 1e-2, "cpu", log_every=1, generator=generator)
    checkpoint = tmp_path / "state.ckpt"
    stopped, generator, batches = run(stop_at=4)
    with pytest.raises(KeyboardInterrupt):
        train(stopped, batches, 6, 1e-2, "cpu", log_every=1, checkpoint=checkpoint, generator=generator)
    assert checkpoint.exists()
    resumed, generator, batches = run()
    train(resumed, batches, 6, 1e-2, "cpu", log_every=1, checkpoint=checkpoint, generator=generator)
    assert not checkpoint.exists()
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_zoomed_training_crop_draws_the_anatomy_larger_or_smaller_in_plane():
    """Zoom augmentation: a disk of radius 20 voxels in every slice comes out with its area scaled by the factor
    squared (radius x 1.25 and x 0.8), its slices unchanged in number, image and labels on the same grid."""
    from cardioquant.models.training import augmented_crop

    rows, cols = np.mgrid[:96, :96]
    disk = ((rows - 48) ** 2 + (cols - 48) ** 2 <= 20 ** 2).astype(np.uint8)
    labels = np.repeat(disk[None], 16, axis=0)
    image = labels[None].astype(np.float32)
    for factor in (1.25, 0.8):
        x, y = augmented_crop(image, labels, (16, 96, 96), np.random.default_rng(3), zoom_range=(factor, factor))
        assert x.shape == (1, 16, 96, 96) and y.shape == (16, 96, 96)
        assert y[8].sum() / disk.sum() == pytest.approx(factor ** 2, rel=0.04)
        assert np.mean((x[0, 8] > 0.5) != (y[8] == 1)) < 0.005  # the image zoomed with its labels


def test_a_training_crop_turns_the_patient_in_plane_and_stretches_the_spine_along_it():
    """Roll augmentation: a bar through the middle of every slice comes out turned by the angle drawn (the axis of
    its second moments); axial zoom: a slab 10 slices thick comes out 10 x the factor thick, its in-plane area
    unchanged. Image and labels stay on one grid."""
    from cardioquant.models.training import augmented_crop

    rows, cols = np.mgrid[:96, :96]
    bar = ((np.abs(rows - 48) <= 3) & (np.abs(cols - 48) <= 30)).astype(np.uint8)  # along the columns
    labels = np.repeat(bar[None], 16, axis=0)
    for degrees in (-20.0, 15.0):
        x, y = augmented_crop(labels[None].astype(np.float32), labels, (16, 96, 96), np.random.default_rng(4),
                              roll_range_deg=(degrees, degrees))
        j, i = np.nonzero(y[8])
        covariance = np.cov(np.stack([j - j.mean(), i - i.mean()]))
        major = np.linalg.eigh(covariance)[1][:, -1]  # (rows, columns) of the bar's long axis
        turned = np.degrees(np.arctan2(major[0], major[1]))
        assert (turned - degrees + 90) % 180 - 90 == pytest.approx(0, abs=1.5)
        assert int(y[8].sum()) == pytest.approx(int(bar.sum()), rel=0.05)
        assert np.mean((x[0, 8] > 0.5) != (y[8] == 1)) < 0.01
    slab = np.zeros((40, 48, 48), np.uint8)  # wider than the patch: no padding in view
    slab[15:25] = 1
    for factor in (0.8, 1.25):
        _, y = augmented_crop(slab[None].astype(np.float32), slab, (40, 32, 32), np.random.default_rng(5),
                              axial_zoom_range=(factor, factor))
        held = np.flatnonzero(y.any(axis=(1, 2)))
        assert held.size == pytest.approx(10 * factor, abs=1)
        assert int(y[held[held.size // 2]].sum()) == 32 * 32
    # Neither scaled nor turned, the patch is a window of the case itself, voxel for voxel.
    case = np.random.default_rng(6).normal(size=(1, 20, 40, 40)).astype(np.float32)
    x, _ = augmented_crop(case, np.zeros(case.shape[1:], np.uint8), (16, 32, 32), np.random.default_rng(7))
    assert any(np.array_equal(x[0], case[0, k:k + 16, j:j + 32, i:i + 32])
               for k in range(5) for j in range(9) for i in range(9))


def test_a_training_run_given_a_time_budget_stops_when_it_is_spent_whatever_its_iteration_cap():
    """On a lent GPU of unknown speed a run is sized in time: with a budget of 0.3 s and batches that take 0.05 s,
    it stops after a handful of iterations of its cap of a million, and says how many it did."""
    import time

    from cardioquant.models.training import train

    network = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1))

    def next_batch():
        time.sleep(0.05)
        x = torch.rand(2, 1, 8, 8)
        return x, (x > 0.5).long()

    done = train(network, next_batch, 1_000_000, 1e-2, "cpu", log_every=1000, seconds=0.3)
    assert 1 <= done <= 10


def test_the_time_budget_schedule_is_one_cycle_over_the_share_of_time_spent():
    """As torch's OneCycleLR over iterations: 1/25 of the peak at the start, the peak at 30 % of the budget, 1/25 of
    1/10^4 of it at the end, and half-way down at 65 %."""
    import time

    from cardioquant.models.training import _TrainingClock

    clock = _TrainingClock(100.0)
    factors = {}
    for share in (0.0, 0.3, 0.65, 1.0):
        clock.started, clock.spent_before = time.time(), share * 100.0
        factors[share] = clock.one_cycle_factor(0)
    assert factors[0.0] == pytest.approx(1 / 25, rel=1e-3)
    assert factors[0.3] == pytest.approx(1.0, rel=1e-3)
    assert factors[0.65] == pytest.approx((1 + 1 / 25 / 1e4) / 2, rel=1e-3)
    assert factors[1.0] == pytest.approx(1 / 25 / 1e4, rel=1e-2)


def test_a_training_pack_round_trips_its_cases_by_group_in_half_precision(tmp_path):
    """A lent GPU machine has neither the data sets nor SimpleITK: the training cases travel as one pack. Every case
    comes back in its group and order, its labels exact and its image to half precision (the networks' inputs are
    normalised to a few units: 1e-3 of that is well under the scanner noise)."""
    from cardioquant.models.training import load_pack, save_pack

    rng = np.random.default_rng(0)
    groups = {"phantom": [(rng.normal(size=(1, 4, 5, 6)).astype(np.float32), rng.integers(0, 6, (4, 5, 6)))
                          for _ in range(3)],
              "real": [(rng.normal(size=(1, 7, 5, 6)).astype(np.float32), np.full((7, 5, 6), 255))]}
    save_pack(tmp_path / "pack.npz", groups)
    back = load_pack(tmp_path / "pack.npz")
    assert sorted(back) == ["phantom", "real"] and [len(back[g]) for g in ("phantom", "real")] == [3, 1]
    for group, cases in groups.items():
        for (x, y), (x_back, y_back) in zip(cases, back[group], strict=True):
            assert x_back.dtype == np.float32 and np.allclose(x_back, x, atol=2e-3)
            assert y_back.dtype == np.uint8 and np.array_equal(y_back, y)
