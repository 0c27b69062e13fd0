"""One settings object per analysis: the command line parses into it, `to_arguments` is the command line that
parses back into it (how the Slicer panel starts its background run), the JSON stores it, ranges are checked from
it before any work."""

import json
import math

import pytest

from cardioquant import cli, pipelines
from cardioquant.errors import InputError

ANALYSES = list(pipelines.TITLES)


def _parse(analysis, arguments):
    options = cli.build_parser().parse_args([analysis, "scan.nrrd", "-o", "out", *arguments])
    return pipelines.settings_class(analysis).from_options(options)


def _other_than_default(field, kind, default):
    """A valid value different from the default, for every kind of field."""
    meta = field.metadata
    if meta["choices"]:
        return next(choice for choice in reversed(meta["choices"]) if choice != default)
    if kind is bool:
        return not default
    if kind is list:
        return ["L1:-1.5,2,3", "L2:4,5,6"]
    if kind in (int, float):
        low, high = meta["limits"][:2] if meta["limits"] else (0.0, 100.0)
        value = (low + high) / 3 if math.isfinite(high) else low + 1.5
        return kind(value) if value != default else kind(value + 1)
    return "-starts with a minus.nrrd" if field.name != "device" else "cpu"


@pytest.mark.parametrize("analysis", ANALYSES)
def test_a_bare_command_line_gives_the_documented_defaults(analysis):
    assert _parse(analysis, []) == pipelines.settings_for(analysis)


@pytest.mark.parametrize("analysis", ANALYSES)
def test_every_setting_survives_the_background_runs_command_line(analysis):
    """The panel's settings, turned into the background run's options, parse back into the same object: every
    field changed at once (a leading minus, a repeated option, a flag included)."""
    settings_class = pipelines.settings_class(analysis)
    defaults = settings_class()
    changed = settings_class(**{field.name: _other_than_default(field, kind, getattr(defaults, field.name))
                                for field, kind, _ in settings_class.fields()})
    assert all(getattr(changed, f.name) != getattr(defaults, f.name) for f, _, _ in settings_class.fields())
    assert _parse(analysis, changed.to_arguments()) == changed
    assert defaults.to_arguments() == []  # defaults are not spelled out


@pytest.mark.parametrize("analysis", ANALYSES)
def test_the_json_keeps_the_settings_and_an_older_run_reads_back_with_defaults(analysis):
    settings_class = pipelines.settings_class(analysis)
    given = settings_class(device="cpu")
    assert settings_class.from_json(json.loads(json.dumps(given.to_json()))) == given
    assert settings_class.from_json({"device": "cpu", "a_setting_of_an_older_version": 1}) == given
    assert settings_class.from_json(None) == settings_class()


def test_a_number_out_of_its_range_is_refused_naming_the_option():
    with pytest.raises(InputError, match=r"--kvp 200 is out of range: give a value from 60 up to 150"):
        pipelines.settings_for("calcium", kvp=200.0).check()
    with pytest.raises(InputError, match=r"--left-share 1 is out of range: give a value above 0 below 1"):
        pipelines.settings_for("ffr", left_share=1.0).check()
    with pytest.raises(InputError, match=r"--n-sd nan is out of range"):
        pipelines.settings_for("scar", n_sd=float("nan")).check()
    with pytest.raises(InputError, match=r"--memory-limit-gb 0.5 is out of range"):
        pipelines.settings_for("bmd", memory_limit_gb=0.5).check()


def test_an_unknown_setting_is_a_type_error():
    with pytest.raises(TypeError):
        pipelines.settings_for("calcium", thresold=130)


def test_the_result_json_records_the_settings_the_run_was_given(tmp_path, capsys):
    from cardioquant.calcium.phantom import write_block_phantom

    ct_path, label_path = write_block_phantom(tmp_path)
    code = cli.main(["calcium", ct_path, "--labels", label_path, "--kvp", "100", "--min-area", "philips", "-o",
                     str(tmp_path / "out"), "--quiet"])
    capsys.readouterr()
    document = json.loads((tmp_path / "out" / "calcium.json").read_text())
    assert code == 0
    assert document["options"] == pipelines.settings_for("calcium", labels=label_path, kvp=100.0,
                                                         min_area="philips").to_json()
    assert document["settings"]["kvp"] == 100.0  # what scoring used, derived from the options
