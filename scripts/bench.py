"""Benchmarks: speed, memory and accuracy figures, printed (never asserted). `make bench` runs them all.

    python scripts/bench.py [--only calcium] [--cases N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def _timed(function, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - started)
    return best, value


def bench_calcium_scoring():
    from cardioquant.calcium.scoring import ScoringSettings, score

    rng = np.random.default_rng(0)
    hu = rng.normal(40, 20, (64, 512, 512)).astype(np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    for _ in range(60):
        k, j, i = rng.integers(0, 60), rng.integers(100, 400), rng.integers(100, 400)
        hu[k:k + 3, j:j + 6, i:i + 5] = rng.uniform(150, 900)
        labels[k:k + 3, j:j + 6, i:i + 5] = rng.integers(1, 6)
    seconds, result = _timed(lambda: score(hu, labels, (0.4, 0.4, 3.0), ScoringSettings()))
    print(f"calcium scoring engine, 512x512x64, {result.total['lesions']} lesions: {seconds:.3f} s (target <= 0.3 s)")


def _pipeline_child():
    """Run in a fresh process so its peak memory is the pipeline's own."""
    from cardioquant.calcium import evaluation, phantom

    case = phantom.make_cardiac_phantom(30001, spacing=(0.4, 0.4, 2.5), fov_mm=204.8, z_extent_mm=160.0, kvp=120)
    assert case.hu.shape == (64, 512, 512), case.hu.shape
    started = time.perf_counter()
    result = evaluation.run_pipeline(case, mode="noncontrast", device=sys.argv[3] if len(sys.argv) > 3 else "cpu")
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(json.dumps({"seconds": seconds, "peak_gb": peak_gb, "agatston": result.summary["total"]["agatston"]}))


def bench_calcium_pipeline(device="cpu"):
    out = subprocess.run([sys.executable, __file__, "--child", "calcium-pipeline", device], capture_output=True,
                         text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"calcium automatic pipeline, 512x512x64 CT, {device}: {figures['seconds']:.1f} s "
          f"(target <= 18 s CPU / 2 s GPU), process peak memory {figures['peak_gb']:.2f} GB (incl. phantom; target <= 3 GB)")


def bench_calcium_accuracy(cases: int):
    from cardioquant.calcium import evaluation, phantom

    truth, predicted, truth_totals, predicted_totals = [], [], [], []
    cta_truth, cta_predicted = [], []
    started = time.time()
    for n in range(cases):
        seed = 30100 + n
        rng = np.random.default_rng(seed)
        spacing = (float(rng.uniform(0.5, 0.8)),) * 2 + (float(rng.choice([1.5, 2.5, 3.0])),)
        kvp = float(rng.choice([100, 120, 120, 135]))
        case = phantom.make_cardiac_phantom(seed, spacing=spacing, kvp=kvp)
        t = evaluation.truth_arteries(case)
        p = evaluation.run_pipeline(case, mode="noncontrast").summary["arteries"]
        truth.append(t)
        predicted.append({k: v["agatston"] for k, v in p.items()})
        truth_totals.append(sum(t.values()))
        predicted_totals.append(sum(v["agatston"] for v in p.values()))
        paired = phantom.make_cardiac_phantom(seed, spacing=spacing, kvp=kvp, contrast=True)
        cta_truth.append(sum(t.values()))
        cta_predicted.append(evaluation.run_pipeline(paired, mode="cta").summary["total"]["agatston"])
    f1 = evaluation.artery_f1(truth, predicted)
    auto = evaluation.agreement(truth_totals, predicted_totals)
    cta = evaluation.agreement(cta_truth, cta_predicted)
    print(f"calcium automatic labelling on {cases} held-out phantoms (seeds 30100+): artery-level F1 {f1['f1']:.3f} "
          f"(precision {f1['precision']:.3f}, recall {f1['recall']:.3f}); total Agatston r {auto['pearson_r']:.3f}, "
          f"risk category weighted kappa {auto['weighted_kappa']:.3f}, same category {auto['same_category'] * 100:.1f}%")
    print(f"calcium CTA mode vs non-contrast truth on {cases} paired phantoms: Pearson r {cta['pearson_r']:.3f}, "
          f"weighted kappa {cta['weighted_kappa']:.3f}, same category {cta['same_category'] * 100:.1f}% "
          f"(anchor: r 0.96, kappa 0.94, 92.9%)  [{time.time() - started:.0f} s]")
    return {"artery_f1": f1, "noncontrast": auto, "cta": cta}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["calcium"], default=None)
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.child == "calcium-pipeline":
        _pipeline_child()
        return
    bench_calcium_scoring()
    bench_calcium_pipeline(args.device)
    bench_calcium_accuracy(args.cases)


if __name__ == "__main__":
    main()
