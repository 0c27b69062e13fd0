"""Automatic calcium pipeline with the shipped network, on held-out generated phantoms (seeds never trained on).

Truth is the phantom's own artery label of every calcification voxel, scored by the same engine: the test
measures the labelling, not the arithmetic. Margins are set below the benchmark figures (README) with room for
the small sample here.
"""

import pytest

from cardioquant.calcium import evaluation, phantom
from cardioquant.models.manifest import get_model
from cardioquant.models.runtime import resolve_weights

CASES = range(30500, 30508)


@pytest.fixture(scope="module")
def outcomes():
    truth, predicted = [], []
    for seed in CASES:
        case = phantom.make_cardiac_phantom(seed, spacing=(0.8, 0.8, 3.0), kvp=120)
        truth.append(evaluation.truth_arteries(case))
        arteries = evaluation.run_pipeline(case, mode="noncontrast").summary["arteries"]
        predicted.append({k: v["agatston"] for k, v in arteries.items()})
    return truth, predicted


def test_shipped_weights_pass_checksum():
    entry = get_model("calcium_labeller")
    path, origin = resolve_weights(entry, allow_download=False)
    assert origin == "bundled" and path.stat().st_size < 5_000_000
    assert entry.training_data and "phantom" in entry.training_data.lower()


def test_artery_level_f1(outcomes):
    f1 = evaluation.artery_f1(*outcomes)
    assert f1["f1"] >= 0.75, f1


def test_risk_category_agreement(outcomes):
    truth, predicted = outcomes
    stats = evaluation.agreement([sum(t.values()) for t in truth], [sum(p.values()) for p in predicted])
    assert stats["same_category"] >= 0.75 and stats["weighted_kappa"] >= 0.7, stats


def test_zero_calcium_case_scores_zero():
    case = phantom.make_cardiac_phantom(30600, spacing=(0.8, 0.8, 3.0), kvp=120, n_calcifications=0)
    result = evaluation.run_pipeline(case, mode="noncontrast")
    assert result.summary["total"]["agatston"] == 0.0, result.summary["lesions"]
