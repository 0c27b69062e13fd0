"""Agreement statistics for validating calcium scores against truth (benchmarks and tests)."""

from __future__ import annotations

import numpy as np

from .scoring import classic_category

CATEGORIES = ["0", "1-10", "11-100", "101-400", ">400"]


def category_index(agatston: float) -> int:
    return CATEGORIES.index(classic_category(agatston))


def weighted_kappa(truth: list[int], predicted: list[int], n_categories: int = 5, weights: str = "linear") -> float:
    """Cohen's kappa with linear (or quadratic) disagreement weights."""
    observed = np.zeros((n_categories, n_categories))
    for t, p in zip(truth, predicted, strict=True):
        observed[t, p] += 1
    observed /= observed.sum()
    expected = np.outer(observed.sum(1), observed.sum(0))
    i, j = np.indices(observed.shape)
    w = np.abs(i - j) / (n_categories - 1)
    if weights == "quadratic":
        w = w ** 2
    denominator = (w * expected).sum()
    return float(1 - (w * observed).sum() / denominator) if denominator > 0 else 1.0


def artery_f1(truth: list[dict], predicted: list[dict], arteries=("LM", "LAD", "LCX", "RCA")) -> dict:
    """F1 of 'this artery has calcium' over all (case, artery) pairs."""
    tp = fp = fn = 0
    for t, p in zip(truth, predicted, strict=True):
        for artery in arteries:
            has_t, has_p = t[artery] > 0, p[artery] > 0
            tp += has_t and has_p
            fp += has_p and not has_t
            fn += has_t and not has_p
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall, "tp": tp, "fp": fp, "fn": fn}


def agreement(truth_totals: list[float], predicted_totals: list[float]) -> dict:
    t_cat = [category_index(v) for v in truth_totals]
    p_cat = [category_index(v) for v in predicted_totals]
    r = float(np.corrcoef(truth_totals, predicted_totals)[0, 1]) if np.std(truth_totals) and np.std(predicted_totals) else float("nan")
    return {"pearson_r": r, "weighted_kappa": weighted_kappa(t_cat, p_cat),
            "same_category": float(np.mean(np.array(t_cat) == np.array(p_cat))), "cases": len(truth_totals)}


def phantom_loaded(case):
    """A generated phantom as the pipeline's input (a CT at the phantom's kVp)."""
    import SimpleITK as sitk

    from ..imageio import LoadedImage

    image = sitk.GetImageFromArray(case.hu)
    image.SetSpacing(case.spacing)
    image.SetOrigin(case.origin)
    return LoadedImage(image=image, path=f"phantom-{'cta' if case.contrast else 'ct'}", format="phantom",
                       dicom={"modality": "CT", "kvp": str(case.kvp)})


def truth_arteries(case) -> dict:
    """Per-artery Agatston of the phantom scored with its true artery labels (the reference standard)."""
    from .scoring import ScoringSettings, score

    result = score(case.hu, case.truth_labels(), case.spacing, ScoringSettings(kvp=case.kvp))
    return {name: values["agatston"] for name, values in result.arteries.items()}


def run_pipeline(case, mode: str = "auto", device: str = "cpu", **overrides):
    from ..progress import Progress
    from .pipeline import CalciumSettings, run

    return run(phantom_loaded(case), CalciumSettings(mode=mode, device=device, **overrides), Progress())
