"""The packages the Slicer modules install on first use come from one list (CardioQuantCoreLib/requirements.txt),
with pyproject.toml's pins, and together with what Slicer ships they cover every third-party import of the
package."""

import ast
import importlib.util
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "CardioQuantCore" / "cardioquant"
# Shipped with Slicer, or installed another way (torch by the PyTorch extension), or command-line only (batch).
NOT_INSTALLED_BY_THE_PANELS = {"slicer-core": "slicer", "vtk": "vtk", "numpy": "numpy", "SimpleITK": "SimpleITK",
                               "torch": "torch", "dask[distributed]": "dask", "distributed": "distributed",
                               "pandas": "pandas", "pyarrow": "pyarrow"}


# Imported but deliberately not a dependency: an optional provider the user installs, or a package that comes with
# a declared one (pillow with matplotlib; used only by the EMIDEC training-data loader).
OPTIONAL_OR_INDIRECT = {"totalsegmentator", "PIL"}
# Packages a declared distribution installs under another name: the vtk wheel's own modules (`import vtk` loads
# every one of them).
INSTALLED_WITH_A_DECLARED_ONE = {"vtkmodules"}


def _pyproject_pins() -> dict[str, str]:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {d.split("==")[0]: d.split("#")[0].strip() for d in dependencies}


def _slicer_requirements() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("deps", ROOT / "CardioQuantCore" / "CardioQuantCoreLib" / "dependencies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.REQUIREMENTS


def test_slicer_requirements_have_the_pyproject_pins():
    pins = _pyproject_pins()
    listed = _slicer_requirements()
    for requirement in listed.values():
        name = requirement.split("==")[0]
        assert pins.get(name) == requirement, f"{requirement} does not match pyproject.toml ({pins.get(name)})"
    covered = {r.split("==")[0] for r in listed.values()} | set(NOT_INSTALLED_BY_THE_PANELS)
    assert set(pins) <= covered, f"in pyproject.toml but not installed by the panels: {set(pins) - covered}"
    assert {"vmtk", "svzerod"} <= {r.split("==")[0] for r in listed.values()}  # CT-FFR runs in Slicer too


def test_every_third_party_import_is_a_declared_dependency():
    declared = (set(_slicer_requirements()) | set(NOT_INSTALLED_BY_THE_PANELS.values()) | OPTIONAL_OR_INDIRECT
                | INSTALLED_WITH_A_DECLARED_ONE)
    imported = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "cardioquant"}
    assert third_party <= declared, f"imported but not declared: {third_party - declared}"


def test_the_runtime_never_imports_phantoms_training_or_data_loaders():
    """What the command line, the panels and the batch runner load: no phantom generator, training code or
    data-set loader (those are development code; a clean interpreter shows the real import graph)."""
    import subprocess

    code = ("import sys, cardioquant.cli, cardioquant.batch.runner, cardioquant.batch.engine\n"
            "from cardioquant import pipelines\n"
            "[pipelines.get(name) for name in pipelines.TITLES]\n"
            "print(' '.join(m for m in sys.modules if m.startswith('cardioquant')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    development = [m for m in loaded if any(word in m for word in ("phantom", "emidec", "myops", "training", "evaluation",
                                                                   "coca", "train_"))]
    assert "cardioquant.calcium.pipeline" in loaded and development == []


def test_the_slicer_panels_load_before_their_dependencies_are_installed():
    """The panels import the pipeline registry, the scene layer, progress and process helpers and the modules'
    logic when Slicer starts, and build their parameter nodes from the analyses' settings, before they ask to
    install what they need: those imports need only what Slicer ships (numpy, SimpleITK, vtk, MRML), never a
    package of the first-use list (CardioQuantCoreLib/requirements.txt) or torch."""
    import subprocess

    requirements = ROOT / "CardioQuantCore" / "CardioQuantCoreLib" / "requirements.txt"
    listed = [line.split("# import:")[1].strip() for line in requirements.read_text().splitlines() if "# import:" in line]
    code = ("import sys, cardioquant.pipelines, cardioquant.scene, cardioquant.progress, cardioquant.processes\n"
            "import CardioQuantCoreLib.logic\n"
            "[cardioquant.pipelines.settings_class(name).panel_fields() for name in cardioquant.pipelines.TITLES]\n"
            f"print(' '.join(m for m in {listed + ['torch']!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT / "CardioQuantCore").stdout.split()
    assert loaded == []
