"""Slicer module files: every `self.ui.<name>` the code uses exists in the module's .ui file, and the
extension layout follows Slicer's conventions (CMake registration, icons, catalog entry)."""

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["CalciumScoring", "ScarQuantification", "BoneDensity", "CTFFR"]
BASE = ROOT / "CardioQuantCore" / "CardioQuantCoreLib" / "module_base.py"


def ui_names(module: str) -> set[str]:
    tree = ET.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    return {w.get("name") for w in tree.iter() if w.tag in ("widget", "layout", "spacer") and w.get("name")}


def used_names(path: Path) -> set[str]:
    return set(re.findall(r"self\.ui\.([A-Za-z_]\w*)", path.read_text()))


@pytest.mark.parametrize("module", MODULES)
def test_every_ui_reference_exists(module):
    names = ui_names(module)
    missing = (used_names(ROOT / module / f"{module}.py") | used_names(BASE)) - names
    # hasattr-guarded optional widgets in the base class are allowed to be absent
    optional = set(re.findall(r'hasattr\(self\.ui, "(\w+)"\)', BASE.read_text()))
    assert not (missing - optional), f"{module}.ui lacks {sorted(missing - optional)}"


@pytest.mark.parametrize("module", MODULES)
def test_module_layout(module):
    folder = ROOT / module
    cmake = (folder / "CMakeLists.txt").read_text()
    assert f"set(MODULE_NAME {module})" in cmake and "slicerMacroBuildScriptedModule" in cmake
    assert "slicer_add_python_unittest" in (folder / "Testing" / "Python" / "CMakeLists.txt").read_text()
    assert (folder / "Resources" / "Icons" / f"{module}.png").read_bytes()[:4] == b"\x89PNG"
    source = (folder / f"{module}.py").read_text()
    for cls in (module, f"{module}Widget", f"{module}Logic", f"{module}Test"):
        assert re.search(rf"^class {cls}\(", source, re.M), cls
    assert f"add_subdirectory({module})" in (ROOT / "CMakeLists.txt").read_text()


def _bindings(module: str) -> dict[str, ET.Element]:
    """SlicerParameterName -> the widget bound to that parameter of the module's parameter node."""
    tree = ET.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    bound = {}
    for widget in tree.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget
    return bound


def _logic_class(module: str):
    from CardioQuantCoreLib import logic

    return {"CalciumScoring": logic.CalciumLogic, "ScarQuantification": logic.ScarLogic,
            "BoneDensity": logic.BMDLogic, "CTFFR": logic.FFRLogic}[module]


@pytest.mark.parametrize("module", MODULES)
def test_the_panel_binds_every_setting_it_shows_to_a_fitting_widget(module):
    """The parameter node (module_base.parameterNodeClass) holds the input volume, the nodes the reader may pick and
    the settings the panel shows; parameterNodeWrapper binds each to the widget whose SlicerParameterName names
    it, and only a fitting widget can show it: a combo box for choices, a double spin box for a number, a node
    selector (with None allowed, and given the scene) for a node."""
    from cardioquant import pipelines

    logic_class = _logic_class(module)
    fields = pipelines.settings_class(logic_class.MODULE_KEY).panel_fields()
    bound = _bindings(module)
    assert set(bound) == {"inputVolume", *logic_class.NODE_INPUTS, *(name for name, *_ in fields)}
    for name, kind, choices, _, _ in fields:
        expected = "QComboBox" if choices else {float: "QDoubleSpinBox", int: "QSpinBox", bool: "QCheckBox"}[kind]
        assert bound[name].get("class") == expected, name
    ui = (ROOT / module / "Resources" / "UI" / f"{module}.ui").read_text()
    for name, class_name in {"inputVolume": "vtkMRMLScalarVolumeNode", **logic_class.NODE_INPUTS}.items():
        widget = bound[name]
        assert widget.get("class") == "qMRMLNodeComboBox", name
        assert class_name in ET.tostring(widget, encoding="unicode"), f"{name}: selector lacks {class_name}"
        assert f"<receiver>{widget.get('name')}</receiver><slot>setMRMLScene" in ui, f"{name}: selector gets no scene"
        if name != "inputVolume":
            assert re.search(r'name="noneEnabled"><bool>true', ET.tostring(widget, encoding="unicode")), name


@pytest.mark.parametrize("module", MODULES)
def test_panel_values_round_trip_to_the_same_settings(module):
    """What the parameter node holds for the settings the panel shows comes back as the same settings object; a
    number the run reads from the scan when absent (kVp) is 0 in its spin box ('from DICOM') and None again."""
    from cardioquant import pipelines

    settings_class = pipelines.settings_class(_logic_class(module).MODULE_KEY)
    defaults = settings_class()
    assert settings_class.from_panel(defaults.to_panel()) == defaults
    if "kvp" in defaults.to_panel():
        assert defaults.to_panel()["kvp"] == 0 and settings_class.from_panel({"kvp": 80.0}).kvp == 80.0


def test_extension_metadata_and_catalog_entry():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "project(CardioQuant)" in cmake and "add_subdirectory(CardioQuantCore)" in cmake
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf"set\({key} \S", cmake), key
    entry = json.loads((ROOT / "CardioQuant.json").read_text())
    assert {"scm_url", "scm_revision", "category", "build_dependencies"} <= set(entry)
    assert "hidden = True" in (ROOT / "CardioQuantCore" / "CardioQuantCore.py").read_text()


def test_module_files_stay_thin():
    """Science lives in the cardioquant package: module files import no numpy/torch/SimpleITK themselves."""
    for module in MODULES:
        source = (ROOT / module / f"{module}.py").read_text()
        assert not re.search(r"^\s*import (numpy|torch|SimpleITK|monai)", source, re.M), module


def test_science_does_not_import_slicer():
    package = ROOT / "CardioQuantCore" / "cardioquant"
    for path in package.rglob("*.py"):
        if path.name == "scene.py":
            continue  # the scene layer is the one place that talks to MRML
        assert not re.search(r"^\s*(import|from) (slicer|qt|ctk)\b", path.read_text(), re.M), path
