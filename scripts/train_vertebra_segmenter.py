"""Train the vertebra segmenter (background / body / posterior elements / sacrum / rib on a 2 mm grid) on
procedurally generated spine phantoms (cardioquant.bmd.phantom).

    python scripts/train_vertebra_segmenter.py --out /tmp/vertebra_segmenter.pt [--real ../shared/data/totalsegmentator --init W]

Cases (seeds 40000+) draw a random run of levels (chest, thoracolumbar or abdominal fields of view, with or
without the sacrum), sizes, curvature, spacing 1.0-1.5 mm in-plane and 1.5-3 mm slices, 80-140 kVp, BMD 40-220
mg/cm^3 and scanner drift.

Real data (--real FOLDER, ../shared/data/totalsegmentator): the one labelled CT we have, TotalSegmentator's example
(T11-S1, 3 mm), with its vertebra labels and vertebral-body mask mapped to our classes. Only its lower part (below
REAL_SPLIT_MM: S1 to L3, most of L2 and the pelvis) is trained on; the upper part (L1, T12, T11) is held out and
scored by scripts/bench.py. Its ribs and the sacrum below S1 are not labelled, so bone-dense voxels outside the
vertebra labels carry no loss (IGNORE) rather than being taught as background, except the pelvis (bone well below
the ribs and over 20 mm from the spine), which is taught as background so that it is not called rib. A quarter of the batches come from
the real case. --init continues from earlier weights (the shipped v1 trained on phantoms only).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from cardioquant.bmd import network as vnet
from cardioquant.bmd import phantom
from cardioquant.bmd.levels import LEVELS, TOTALSEGMENTATOR_VALUES
from cardioquant.models.runtime import build_network
from cardioquant.models.training import IGNORE, generate_cases, random_crop, save_weights, train

ARCHITECTURE = {"name": "UNet", "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 5,
                                           "channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1}}
ROI = (64, 96, 96)
FIELDS = [("T1", "L1"), ("T5", "L2"), ("T9", "L4"), ("T11", "S1"), ("T12", "S1"), ("L1", "S1"), ("T7", "L3")]


def case_parameters(seed: int) -> dict:
    rng = np.random.default_rng(seed + 11)
    first, last = FIELDS[int(rng.integers(len(FIELDS)))]
    levels = LEVELS[LEVELS.index(first):LEVELS.index(last) + 1]
    in_plane = float(rng.uniform(1.0, 1.5))  # the network works on a 2 mm grid: finer rendering adds nothing
    return {"seed": seed, "levels": tuple(levels), "spacing": (in_plane, in_plane, float(rng.choice([1.5, 2.0, 3.0]))),
            "kvp": float(rng.choice([80, 100, 120, 140])), "noise": float(rng.uniform(8, 30))}


def make_case(seed: int):
    p = case_parameters(seed)
    case = phantom.make_spine_phantom(p["seed"], spacing=p["spacing"], kvp=p["kvp"], levels=p["levels"],
                                      noise_hu=p["noise"], fov_mm=300.0)
    image = sitk.GetImageFromArray(case.hu)
    image.SetSpacing(case.spacing)
    image.SetOrigin(case.origin)
    labels = sitk.GetImageFromArray(case.classes)
    labels.CopyInformation(image)
    x = vnet.normalise(sitk.GetArrayFromImage(vnet.to_grid(image)))[None]  # channel axis
    y = sitk.GetArrayFromImage(vnet.to_grid(labels, is_label=True)).astype(np.int8)
    return x, y


PELVIS_BELOW_MM, PELVIS_DISTANCE_MM = 330.0, 20.0  # example CT: below the 12th ribs' reach, away from the spine
REAL_SPLIT_MM = 345.0  # physical z (mm) in the example CT through upper L2: train below (S1-L2), hold out L1, T12, T11


def real_case(folder: Path):
    """(x, y) of the real example CT's training part on the 2 mm grid, y with IGNORE where bone is unlabelled."""
    ct = sitk.ReadImage(str(folder / "example_ct.nii.gz"))
    levels = sitk.ReadImage(str(folder / "spine_report__example_ct_report__totalseg.nii.gz"))
    body = sitk.ReadImage(str(folder / "spine_report__example_ct_report__totalseg_vertebrae_body.nii.gz"))
    hu = sitk.GetArrayFromImage(vnet.to_grid(ct))
    levels = sitk.GetArrayFromImage(vnet.to_grid(levels, is_label=True))
    body = sitk.GetArrayFromImage(vnet.to_grid(body, is_label=True)) == 1
    vertebra = levels > 0
    y = np.zeros(hu.shape, np.uint8)
    y[vertebra] = phantom.POSTERIOR
    y[vertebra & body] = phantom.BODY
    y[levels == TOTALSEGMENTATOR_VALUES["S1"]] = phantom.SACRUM
    grid = vnet.to_grid(ct)
    z = np.array([grid.TransformIndexToPhysicalPoint((0, 0, int(k)))[2] for k in range(hu.shape[0])])
    # Unlabelled bone: ribs (and the lower sacrum, next to the spine) are unknown classes, so no loss there; but
    # bone well below the ribs and away from the spine is the pelvis, which must not be called rib.
    far = ndimage.distance_transform_edt(~vertebra, sampling=grid.GetSpacing()[::-1]) > PELVIS_DISTANCE_MM
    pelvis = (z < PELVIS_BELOW_MM)[:, None, None] & far
    y[(hu > 150) & ~vertebra & ~pelvis] = IGNORE
    keep = z < REAL_SPLIT_MM
    return vnet.normalise(hu[keep])[None], y[keep]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", type=int, default=120)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--real", type=Path, help="TotalSegmentator example folder (real CT with vertebra labels)")
    parser.add_argument("--init", type=Path, help="start from these weights")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    started = time.time()
    cases = generate_cases(make_case, range(40000, 40000 + args.cases), args.workers)
    real = real_case(args.real) if args.real else None
    network = build_network(type("E", (), {"architecture": ARCHITECTURE, "name": "vertebra_segmenter"})())
    if args.init:
        network.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
    network = network.to(args.device)

    def pick():
        if real is not None and rng.random() < 0.25:
            return real
        return cases[int(rng.integers(len(cases)))]

    def next_batch():
        batch = [random_crop(*pick(), ROI, rng) for _ in range(args.batch)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))
        y = torch.from_numpy(np.stack([b[1] for b in batch]).astype(np.int64))[:, None]
        return x * (1 + 0.05 * torch.randn(args.batch, 1, 1, 1, 1)), y  # scanner gain jitter

    train(network, next_batch, args.iterations, args.lr, args.device, started=started, ignore_unknown=real is not None)
    save_weights(network, args.out, cases=args.cases, iterations=args.iterations, seconds=round(time.time() - started))


if __name__ == "__main__":
    main()
