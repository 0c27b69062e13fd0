"""cardioquant.models.sliding_window is MONAI's Gaussian-blended sliding-window inference without MONAI's import: the
same windows, weights and padding, so the same outputs, for 3D and 2D images larger and smaller than the window, one
or several windows per call and several images; and a command that tiles a volume does not import MONAI."""

import subprocess
import sys

import pytest
import torch

from cardioquant.models.sliding_window import gaussian_weights, sliding_window, window_count, window_starts

CASES = [  # (image shape, window, windows per call, overlap)
    ((1, 1, 40, 37, 29), (16, 16, 16), 1, 0.25),      # larger than the window: the last window moved back
    ((2, 1, 12, 50, 20), (16, 24, 24), 3, 0.25),      # shorter than the window along two axes: padded
    ((1, 1, 16, 24, 24), (16, 24, 24), 4, 0.5),       # exactly one window
    ((1, 3, 70, 45), (32, 32), 2, 0.6),               # 2D, three channels
]


@pytest.mark.parametrize(("shape", "window", "batch", "overlap"), CASES, ids=["3D larger", "3D shorter", "one window", "2D"])
def test_gives_monais_outputs(shape, window, batch, overlap):
    from monai.inferers import sliding_window_inference

    torch.manual_seed(0)
    convolution = torch.nn.Conv3d if len(window) == 3 else torch.nn.Conv2d
    network = torch.nn.Sequential(convolution(shape[1], 4, 3, padding=1), torch.nn.Tanh(),
                                  convolution(4, 2, 5, padding=2)).eval()  # outputs that depend on the tile's edge
    image = torch.randn(shape)
    with torch.no_grad():
        expected = sliding_window_inference(image, window, batch, network, overlap=overlap, mode="gaussian")
        found = sliding_window(image, window, network, batch, overlap)
    assert found.shape == expected.shape == (shape[0], 2, *shape[2:])
    assert torch.allclose(found, expected, atol=1e-6)


def test_windows_cover_the_axis_and_the_last_one_ends_at_its_edge():
    assert window_starts(40, 16, 0.25) == [0, 12, 24]        # steps of 12; 24 + 16 = 40 reaches the end
    assert window_starts(41, 16, 0.25) == [0, 12, 24, 25]    # the fourth moved back from 36 to end at 41
    assert window_starts(16, 16, 0.25) == [0]
    assert window_count((40, 41, 10), (16, 16, 16), 0.25) == 3 * 4 * 1


def test_the_gaussian_weighs_the_centre_one_and_no_voxel_nothing():
    """sigma = 0.125 x the window: 1.125 voxels across 9, 1 across 8, whose centre falls between two voxels."""
    weights = gaussian_weights((9, 8))
    half_voxel = torch.exp(torch.tensor(-0.5 ** 2 / (2 * 1.0 ** 2))).item()
    assert weights[4, 3].item() == weights[4, 4].item() == pytest.approx(half_voxel, rel=1e-6)
    assert weights.max().item() == pytest.approx(half_voxel, rel=1e-6) and weights.min().item() > 0
    assert gaussian_weights((9,))[4].item() == 1.0
    assert torch.equal(weights, weights.flip(0)) and torch.equal(weights, weights.flip(1))


def test_a_per_voxel_network_reads_the_same_windowed_or_whole():
    network = torch.nn.Conv3d(1, 2, kernel_size=1)
    image = torch.randn(1, 1, 21, 30, 9)
    with torch.no_grad():
        assert torch.allclose(sliding_window(image, (8, 16, 16), network, 2, 0.25), network(image), atol=1e-5)


def test_tiling_a_volume_with_a_shipped_network_does_not_import_monai():
    """MONAI's import is 3-4.5 s of a fresh process: checked as a command runs."""
    code = ("import sys, torch; from cardioquant.models.runtime import load_named_model, sliding_window_predict; "
            "model, _, _ = load_named_model('vertebra_segmenter', None, torch.device('cpu')); "
            "sliding_window_predict(model, torch.zeros(1, 1, 40, 40, 40), (64, 96, 96), torch.device('cpu'), 1); "
            "print('monai' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
