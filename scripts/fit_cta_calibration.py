"""Fit the CTA Agatston-equivalent scale: non-contrast truth ~ scale x raw CTA score, through the origin, on
paired training phantoms (seeds 10000+, never the benchmark seeds 30100+).

    python scripts/fit_cta_calibration.py [--pairs 24] [--k 3]

Prints the least-squares scale; the value shipped as cardioquant.calcium.cta.DEFAULT_SCALE comes from this script.
"""

import argparse

import numpy as np

from cardioquant.calcium import evaluation, phantom


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--k", type=float, default=3.0)
    args = parser.parse_args()
    truth, raw = [], []
    for n in range(args.pairs):
        seed = 10000 + n
        rng = np.random.default_rng(seed)
        spacing = (float(rng.uniform(0.5, 0.8)),) * 2 + (float(rng.choice([1.5, 2.5, 3.0])),)
        kvp = float(rng.choice([100, 120, 120, 135]))
        case = phantom.make_cardiac_phantom(seed, spacing=spacing, kvp=kvp)
        paired = phantom.make_cardiac_phantom(seed, spacing=spacing, kvp=kvp, contrast=True)
        truth.append(sum(evaluation.truth_arteries(case).values()))
        raw.append(evaluation.run_pipeline(paired, mode="cta", k=args.k, cta_scale=1.0).summary["total"]["agatston"])
        print(f"seed {seed}: non-contrast {truth[-1]:.1f}, raw CTA {raw[-1]:.1f}", flush=True)
    truth, raw = np.array(truth), np.array(raw)
    scale = float((truth * raw).sum() / (raw * raw).sum())
    print(f"scale {scale:.3f} (pairs {args.pairs}, k {args.k:g}); raw r {np.corrcoef(truth, raw)[0, 1]:.3f}")


if __name__ == "__main__":
    main()
