import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helpers (dicom_factory)
# CardioQuantCoreLib (the modules' logic on MRML, their self-test bodies), as Slicer puts it on the path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CardioQuantCore"))
# The training scripts, for the tests of their augmentations (last: a script never shadows a package)
sys.path.append(str(Path(__file__).resolve().parents[1] / "scripts"))


@pytest.fixture(autouse=True)
def _isolated_model_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's real model cache, and none may reach the internet."""
    monkeypatch.setenv("CARDIOQUANT_CACHE", str(tmp_path / "model-cache"))


@pytest.fixture
def slicer_scene(monkeypatch):
    """A fresh slicer-core scene installed as `slicer.mrmlScene`, where the modules' logic and self-tests put their
    nodes, as they find Slicer's own scene inside the application."""
    import slicer

    from cardioquant import scene

    monkeypatch.setattr(slicer, "mrmlScene", None, raising=False)
    return scene.new_scene()


def oblique_image(array: np.ndarray, spacing=(0.7, 0.45, 2.5), origin=(-12.5, 30.25, 101.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    rotation = sitk.VersorTransform((0.3, -0.2, 0.93), 0.41).GetMatrix()  # a rotation about an oblique axis
    image.SetDirection(rotation)
    return image
