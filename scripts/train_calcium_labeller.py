"""Train the calcium artery-labelling network on procedurally generated cardiac CT phantoms.

    python scripts/train_calcium_labeller.py --out CardioQuantCore/cardioquant/models/weights/calcium_labeller_v1.pt

Cases: seeds 10000+ (training) and 20000+ (validation during training); benchmarks use 30000+ (never trained on).
Each case draws anatomy, calcifications, in-plane spacing 0.5-0.9 mm, slices 1-3 mm, 80-135 kVp, noise, and with
probability 0.3 the paired contrast CTA (candidates then come from the adaptive CTA threshold, as in the pipeline).
Runs on the CPU (about 15 minutes on 2 cores for the shipped model) or a GPU.
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss

from cardioquant.calcium import labelling, phantom
from cardioquant.calcium.pipeline import candidate_threshold
from cardioquant.models.runtime import build_network, sha256_file

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


def pad_to(array, shape):
    pads = [(0, max(0, s - n)) for n, s in zip(array.shape[-3:], shape, strict=True)]
    return np.pad(array, [(0, 0)] * (array.ndim - 3) + pads)


def random_crop(x, y, rng):
    x, y = pad_to(x, ROI), pad_to(y, ROI)
    starts = [int(rng.integers(0, n - r + 1)) for n, r in zip(y.shape, ROI, strict=True)]
    box = tuple(slice(s, s + r) for s, r in zip(starts, ROI, strict=True))
    return x[(slice(None),) + box], y[box]


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
    with Pool(args.workers) as pool:
        cases = pool.map(make_case, range(10000, 10000 + args.cases))
    print(f"generated {len(cases)} cases in {time.time() - started:.0f} s", flush=True)

    network = build_network(type("E", (), {"architecture": ARCHITECTURE, "name": "calcium_labeller"})()).to(args.device)
    optimiser = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr, total_steps=args.iterations)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)
    network.train()
    running = []
    for iteration in range(1, args.iterations + 1):
        batch = [random_crop(*cases[int(rng.integers(len(cases)))], rng) for _ in range(args.batch)]
        x = torch.from_numpy(np.stack([b[0] for b in batch])).to(args.device)
        y = torch.from_numpy(np.stack([b[1] for b in batch]).astype(np.int64))[:, None].to(args.device)
        x[:, 0] += torch.randn(args.batch, 1, 1, 1, device=args.device) * 0.05  # calibration jitter
        optimiser.zero_grad()
        loss = loss_function(network(x), y)
        loss.backward()
        optimiser.step()
        schedule.step()
        running.append(loss.item())
        if iteration % 50 == 0:
            print(f"iteration {iteration}: loss {np.mean(running[-50:]):.4f} ({time.time() - started:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.cpu().state_dict(), args.out)
    print(json.dumps({"weights": str(args.out), "sha256": sha256_file(args.out), "size_bytes": args.out.stat().st_size,
                      "cases": args.cases, "iterations": args.iterations, "seconds": round(time.time() - started)}))


if __name__ == "__main__":
    main()
