"""Train the coronary lumen network (background / coronary lumen / aorta on a 0.5 mm grid) on procedural CCTA
phantoms (cardioquant.ffr.cta_phantom).

    python scripts/train_coronary_lumen.py --out CardioQuantCore/cardioquant/models/weights/coronary_lumen_v1.pt

Cases (seeds 60000+, 69000+ held out) draw aortic size, left and right trees with curved courses, tapering and branches, stenoses of
20-90 % area (half with calcified plaque), contrast 250-600 HU, ventricles, veins, fat/soft-tissue background,
partial volume, blur, motion blur and noise. Patches of 64^3 voxels are cut when a case is made (most centred on
lumen, some on the aortic root, some on bright non-coronary structures, some anywhere) so that many cases fit in memory. Held-out cases (seeds 69000+)
are scored at the end: lumen Dice and the share of true centerline points inside the predicted lumen.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from cardioquant.ffr import cta_phantom
from cardioquant.ffr import lumen_network as lnet
from cardioquant.metrics import dice
from cardioquant.models.runtime import build_network
from cardioquant.models.training import generate_cases, save_weights, train

ARCHITECTURE = {"name": "UNet", "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 3,
                                           "channels": [8, 16, 32, 64], "strides": [2, 2, 2], "num_res_units": 1}}
PATCH = 64
PATCHES_PER_CASE = (18, 6, 6)  # centred on lumen, on the aortic root, anywhere


def cut_patches(seed: int):
    case = cta_phantom.make_case(seed)
    hu = sitk.GetArrayFromImage(case.image)
    labels = sitk.GetArrayFromImage(case.labels)
    rng = np.random.default_rng(seed)
    centres = []
    for value, count in zip((cta_phantom.LUMEN, cta_phantom.AORTA), PATCHES_PER_CASE[:2], strict=False):
        voxels = np.argwhere(labels == value)
        centres += [voxels[i] + rng.integers(-16, 17, 3) for i in rng.integers(len(voxels), size=count)]
    bright = np.argwhere((labels == 0) & (hu > 200))  # ventricles, veins, calcium: bright but not lumen or aorta
    centres += [bright[i] for i in rng.integers(len(bright), size=PATCHES_PER_CASE[2] // 2)]
    centres += [rng.integers(0, labels.shape) for _ in range(PATCHES_PER_CASE[2] - PATCHES_PER_CASE[2] // 2)]
    half = PATCH // 2
    padded_hu = np.pad(hu, half, constant_values=-1000)
    padded_labels = np.pad(labels, half)
    xs, ys = [], []
    for centre in centres:
        corner = np.clip(centre, 0, np.array(labels.shape) - 1)  # the patch centre, shifted by the padding
        box = tuple(slice(c, c + PATCH) for c in corner)
        xs.append(padded_hu[box].astype(np.int16))
        ys.append(padded_labels[box].astype(np.uint8))
    return np.stack(xs), np.stack(ys)


def evaluate(network, device, seeds) -> dict:
    dices, inside = [], []
    for seed in seeds:
        case = cta_phantom.make_case(seed)
        lumen, _ = lnet.predict(case.image, network, device, (96, 96, 96))
        truth = sitk.GetArrayFromImage(case.labels) == cta_phantom.LUMEN
        dices.append(dice(lumen, truth))
        points = np.vstack([p.points for tree in case.trees.values() for p in tree])
        index = np.round([case.image.TransformPhysicalPointToContinuousIndex(tuple(p * [-1, -1, 1])) for p in points])
        index = index.astype(int)[:, ::-1]
        inside.append(lumen[tuple(index.T)].mean())
    return {"held_out_cases": len(seeds), "lumen_dice": round(float(np.mean(dices)), 3),
            "lumen_dice_min": round(float(np.min(dices)), 3), "centerline_points_inside": round(float(np.mean(inside)), 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--validation", type=int, default=4)
    parser.add_argument("--first-seed", type=int, default=60000, help="cases use seeds from here [60000]")
    parser.add_argument("--init", type=Path, help="continue from these weights")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    started = time.time()
    cases = generate_cases(cut_patches, range(args.first_seed, args.first_seed + args.cases), args.workers)
    x_all = np.concatenate([c[0] for c in cases])
    y_all = np.concatenate([c[1] for c in cases])
    del cases
    network = build_network(type("E", (), {"architecture": ARCHITECTURE, "name": lnet.MODEL_NAME})())
    if args.init:
        network.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
    network = network.to(args.device)

    def next_batch():
        index = rng.integers(len(x_all), size=args.batch)
        x, y = lnet.normalise(x_all[index].astype(np.float32)), y_all[index].astype(np.int64)
        for axis in (1, 2, 3):  # random flips (the network labels lumen and aorta, not the side)
            flip = rng.random(args.batch) < 0.5
            x[flip], y[flip] = np.flip(x[flip], axis), np.flip(y[flip], axis)
        x = torch.from_numpy(np.ascontiguousarray(x))[:, None]
        gain = 1 + 0.08 * torch.randn(args.batch, 1, 1, 1, 1)  # contrast and scanner calibration jitter
        return x * gain, torch.from_numpy(np.ascontiguousarray(y))[:, None]

    train(network, next_batch, args.iterations, args.lr, args.device, batch_dice=True, started=started)
    figures = evaluate(network.eval(), torch.device(args.device), range(69000, 69000 + args.validation))
    save_weights(network, args.out, cases=args.cases, iterations=args.iterations, seconds=round(time.time() - started),
                 **figures)


if __name__ == "__main__":
    main()
