"""Install missing Python packages on first use, after asking the user; never replace Slicer's own packages."""

import importlib.util
import os

import slicer

REQUIREMENTS_FILE = os.path.join(os.path.dirname(__file__), "requirements.txt")


def read_requirements(path=REQUIREMENTS_FILE):
    """{import name: pip requirement} from the one list the extension installs (requirements.txt beside this
    file, checked against pyproject.toml by the tests)."""
    requirements = {}
    with open(path) as handle:
        for line in handle:
            requirement, _, comment = line.partition("#")
            if requirement.strip():
                module = comment.split("import:", 1)[1].strip() if "import:" in comment else requirement.split("==")[0]
                requirements[module] = requirement.strip()
    return requirements


# Packages CardioQuant needs that Slicer does not ship (numpy, SimpleITK, vtk come with Slicer: never reinstalled).
REQUIREMENTS = read_requirements()


def missing_packages(needs_torch=True):
    missing = [req for module, req in REQUIREMENTS.items() if importlib.util.find_spec(module) is None]
    torch_missing = needs_torch and importlib.util.find_spec("torch") is None
    return missing, torch_missing


def ensure_dependencies(needs_torch=True):
    """True when everything is importable, after installing what is missing if the user agrees."""
    missing, torch_missing = missing_packages(needs_torch)
    if not missing and not torch_missing:
        return True
    listing = ", ".join(missing + (["torch (through the PyTorch extension)"] if torch_missing else []))
    if not slicer.util.confirmOkCancelDisplay(
            f"CardioQuant needs these Python packages: {listing}.\nInstall them now? This takes a few minutes "
            "and needs the internet once.", "CardioQuant: install dependencies"):
        return False
    with slicer.util.WaitCursor():
        if torch_missing:
            import PyTorchUtils  # from the PyTorch extension (an EXTENSION_DEPENDS): picks the right CUDA build

            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False) is None:
                slicer.util.errorDisplay("PyTorch could not be installed; see the PyTorch Utils module.")
                return False
        if missing:
            if hasattr(slicer, "packaging") and hasattr(slicer.packaging, "pip_ensure"):
                slicer.packaging.pip_ensure(missing)  # Slicer >= 5.12: respects Slicer's pinned packages
            else:
                slicer.util.pip_install(missing)
    return True
