"""Train the calcium artery-labelling network on procedurally generated cardiac CT phantoms.

    python scripts/train_calcium_labeller.py --out CardioQuantCore/cardioquant/models/weights/calcium_labeller_v1.pt

Cases: seeds 10000+ (training) and 20000+ (validation during training); benchmarks use 30000+ (never trained on).
Each case draws anatomy, calcifications, in-plane spacing 0.5-0.9 mm, slices 1-3 mm, 80-135 kVp, noise, and with
probability 0.3 the paired contrast CTA (candidates then come from the adaptive CTA threshold, as in the pipeline).
Runs on the CPU (about 15 minutes on 2 cores for the shipped model) or a GPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from cardioquant.calcium import labelling, phantom
from cardioquant.calcium.pipeline import candidate_threshold
from cardioquant.models.runtime import build_network
from cardioquant.models.training import generate_cases, random_crop, save_weights, train

ARCHITECTURE = {"name": "UNet", "kwargs": {"spatial_dims": 3, "in_channels": 2, "out_channels": 6,
                                           "channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1}}
ROI = (48, 96, 96)


def case_parameters(seed: int) -> dict:
    rng = np.random.default_rng(seed + 7)
    in_plane = float(rng.uniform(0.5, 0.9))
    return {"seed": seed, "spacing": (in_plane, in_plane, float(rng.choice([1.0, 1.5, 2.0, 2.5, 3.0]))),
            "kvp": float(rng.choice([80, 100, 120, 120, 135])), "contrast": bool(rng.random() < 0.3)}


def make_case(seed: int):
    params = case_parameters(seed)
    case = phantom.make_cardiac_phantom(params["seed"], spacing=params["spacing"], kvp=params["kvp"],
                                        contrast=params["contrast"])
    threshold, _ = candidate_threshold(case.hu, case.spacing, "cta" if case.contrast else "noncontrast", case.kvp, 3.0)
    candidates = case.hu >= threshold
    truth = case.truth_labels(threshold)
    x = labelling.network_input(case.hu, case.spacing, candidates)
    y = labelling.coarse_target(case.vessel_labels, truth, candidates, case.spacing).astype(np.int8)
    return x, y


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", type=int, default=240)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    started = time.time()
    cases = generate_cases(make_case, range(10000, 10000 + args.cases), args.workers)

    network = build_network(type("E", (), {"architecture": ARCHITECTURE, "name": "calcium_labeller"})()).to(args.device)

    def next_batch():
        batch = [random_crop(*cases[int(rng.integers(len(cases)))], ROI, rng) for _ in range(args.batch)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))
        y = torch.from_numpy(np.stack([b[1] for b in batch]).astype(np.int64))[:, None]
        x[:, 0] += torch.randn(args.batch, 1, 1, 1) * 0.05  # calibration jitter
        return x, y

    train(network, next_batch, args.iterations, args.lr, args.device, started=started)
    save_weights(network, args.out, cases=args.cases, iterations=args.iterations, seconds=round(time.time() - started))


if __name__ == "__main__":
    main()
