"""cardioquant.models.unet is MONAI's UNet rebuilt from torch.nn (so that a run does not import MONAI): the same
state-dict keys and shapes, and MONAI's outputs with MONAI's weights, for every architecture in the manifest and
for the other residual-unit counts the class accepts."""

import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from cardioquant.errors import InputError
from cardioquant.models import runtime
from cardioquant.models.manifest import get_model, load_manifest
from cardioquant.models.unet import UNet

OTHER_LAYOUTS = [
    {"spatial_dims": 2, "in_channels": 2, "out_channels": 3, "channels": [8, 16, 32], "strides": [2, 2],
     "num_res_units": 0},
    {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8, 16], "strides": [2, 1],
     "num_res_units": 2, "kernel_size": 5},
]


@pytest.mark.parametrize("kwargs", [entry.architecture["kwargs"] for entry in load_manifest().values()] + OTHER_LAYOUTS,
                         ids=list(load_manifest()) + ["no residual units", "two, kernel 5"])
def test_gives_monais_outputs_with_monais_weights(kwargs):
    from monai.networks.nets import UNet as MonaiUNet

    torch.manual_seed(0)
    reference, ours = MonaiUNet(**kwargs).eval(), UNet(**kwargs).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, kwargs["in_channels"], *[32] * kwargs["spatial_dims"])
    with torch.no_grad():
        expected, found = reference(x), ours(x)
    assert found.shape == expected.shape == (2, kwargs["out_channels"], *[32] * kwargs["spatial_dims"])
    assert torch.allclose(found, expected, atol=1e-5)


def test_loading_a_shipped_network_does_not_import_monai():
    """MONAI's import (all of its submodules) is what the rebuilt class saves a scar run: checked in a fresh
    process, as a command runs."""
    code = ("import sys, torch; from cardioquant.models.runtime import load_named_model; "
            "load_named_model('lge_segmenter', None, torch.device('cpu')); print('monai' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"


def test_an_architecture_it_cannot_build_is_refused_in_words():
    entry = get_model("lge_segmenter")
    with pytest.raises(InputError, match="unknown network 'SegResNet'"):
        runtime.build_network(replace(entry, architecture={"name": "SegResNet", "kwargs": {}}))
    with pytest.raises(InputError, match="cannot be built"):
        runtime.build_network(replace(entry, architecture={"name": "UNet", "kwargs": {"act": "relu"}}))
