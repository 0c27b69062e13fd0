"""Train the LGE segmentation network (LV cavity, myocardium, scar, MVO) on real LGE of two centres: EMIDEC's
slices and (with --myops) MyoPS's oblique whole-field-of-view volumes, each with a fixed case-level split.

    python scripts/train_scar_model.py --data ../shared/data/emidec --myops ../shared/data/myops --out /tmp/lge_segmenter.pt
           [--init W] [--checkpoint CKPT]   (then scripts/register_model.py)

The shipped 1.3.0: --init lge_segmenter_v1_2.pt --iterations 8000 --lr 1.5e-3 (MyoPS 35 % of each batch); a run
continued from it with --scanner-augmentation (gain, offset, noise) was worse on both centres' validation splits
and was not shipped. --checkpoint makes a killed run resume where it stopped.

2.5D: each slice is read with its neighbours above and below (in_channels 3; --input-slices 1 for 2D).

    python scripts/train_scar_model.py --stage refiner --data ../shared/data/emidec --out /tmp/lge_scar_refiner.pt

trains the cascade's second stage (lge_scar_refiner): scar and MVO from the slice, its neighbours and the first
stage's P(cavity) and P(wall) (computed here with the shipped lge_segmenter, or --segmenter W) on the same
training cases. Tried for the refiner and not shipped: its slices referenced to the first stage's remote
myocardium (0, the wall's 25th percentile) and blood pool (1, the cavity's median), per case or per slice, which
lines the two centres up on the labels (remote-to-scar 0.16-1.04 on MyoPS, 0.21-1.04 on EMIDEC); continued from
1.1.0 for 5000 iterations each, EMIDEC's %LGE r rose (0.952 and 0.936 against 0.913) but MyoPS's scar Dice fell
(0.516 and 0.512 per case against 0.530): the MyoPS misses are not the intensity reference.
Also tried: the refiner continued from 1.1.0 with MyoPS at half of each batch (--myops-share 0.5, 5000
iterations, 24 minutes): MyoPS scar Dice 0.513 per case, %LGE r 0.39; EMIDEC pooled 0.595, r 0.897; worse on both.
Also tried: the segmenter continued from 1.3.0 for 4000 iterations at --lr 5e-4 (--seed 1, 25 minutes), with the
shipped refiner: EMIDEC pooled 0.612 but a normal heart given scar (5/6); MyoPS 0.820 / 0.515 per case / r 0.51,
all below 1.3.0's; not shipped.
Also tried (session 23, against subendocardial scar read as blood pool, 15 % of EMIDEC's validation scar): the
segmenter continued from 1.3.0 for 3000 iterations at --lr 1e-3 with the cross-entropy of pixels within 2 pixels of
the true cavity-wall border counted 3 times (11 minutes): with the shipped refiner, EMIDEC pooled 0.609 (1.3.1:
0.614), true scar called cavity still 15 % (7 % on the training split), %LGE r 0.913; MyoPS 0.825 / 0.525 per case
/ r 0.45 (0.827 / 0.520 / 0.50); not shipped, and the loss not kept.
On MyoPS the scar found beyond its labels lies for a third in its labelled edema (bench: MyoPS counts edema as
myocardium, and it can enhance on LGE) and for almost half in normal myocardium.
Splits: fixed by case (cardioquant.scar.emidec.split: 64 training, 16 validation cases; cardioquant.scar.myops.split:
23 and 7; slices of a case never cross). Augmentation: rotation, scaling 0.85-1.15, shifts of +-30 pixels, flips,
gamma; per-slice normalisation. Runs on the CPU (1.3.0: 33 minutes on 2 cores, its refiner 16) or a GPU. Prints
validation Dice on both centres at the end.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cardioquant.metrics import dice
from cardioquant.models.runtime import build_network, load_named_model
from cardioquant.models.training import save_weights, train
from cardioquant.scar import emidec, myops
from cardioquant.scar.network import (
    CROP,
    MODEL_NAME,
    REFINER_NAME,
    normalise_stack,
    predict,
    probabilities,
    refiner_inputs,
    with_neighbours,
)

ARCHITECTURE = {"name": "UNet", "kwargs": {"spatial_dims": 2, "in_channels": 3, "out_channels": 5,
                                           "channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2],
                                           "num_res_units": 1}}
# The refiner: the same UNet reading 3 slices + P(cavity) + P(wall), giving other / scar / MVO.
REFINER_ARCHITECTURE = {"name": "UNet", "kwargs": {**ARCHITECTURE["kwargs"], "in_channels": 5, "out_channels": 3}}


def load(root, case_ids, channels: int, segmenter=None):
    """EMIDEC training inputs [n, channels, 256, 256] and labels [n, 256, 256]."""
    return _inputs([(normalise_stack(x), y) for x, y in (emidec.load_case(root, case) for case in case_ids)],
                   channels, segmenter)


def load_myops(root, case_ids, channels: int, segmenter=None):
    """MyoPS training inputs and labels as EMIDEC's: each whole-field-of-view slice normalised as the pipeline
    does (on its own grid), resampled to 1.5 mm pixels and cut to 256 x 256 around the LV."""
    stacks = []
    for case in case_ids:
        signal, classes, _, spacing = myops.load_case(root, case)
        stacks.append(myops.on_training_grid(normalise_stack(signal), classes, (spacing[1], spacing[0])))
    return _inputs(stacks, channels, segmenter)


def _inputs(stacks, channels: int, segmenter):
    """Per case (normalised stack, labels) -> inputs [n, channels, rows, cols] (each slice with its neighbours in
    its own case; for the refiner followed by the `segmenter`'s cavity and wall probabilities), labels [n, ...]."""
    images, labels = [], []
    for stack, y in stacks:
        if segmenter is None:
            images += list(with_neighbours(stack, channels))
        else:
            images += list(refiner_inputs(stack, probabilities(segmenter, stack, torch.device("cpu"))))
        labels += list(y)
    return np.stack(images), np.stack(labels)


def scar_targets(labels: np.ndarray) -> np.ndarray:
    """EMIDEC labels -> the refiner's classes: 0 everything but scar, 1 scar, 2 MVO."""
    return np.where(labels >= 3, labels - 2, 0).astype(labels.dtype)


def warm_start(network, weights: Path) -> None:
    """Load `weights`, also those of a network with fewer input channels: its first-layer filters go to the
    centre slice and the neighbours start at zero, so training starts from the same predictions."""
    state, own = torch.load(weights, map_location="cpu", weights_only=True), network.state_dict()
    for key, value in state.items():
        if value.ndim == 4 and value.shape[1] != own[key].shape[1]:
            widened = torch.zeros_like(own[key])
            widened[:, own[key].shape[1] // 2] = value[:, 0]
            state[key] = widened
    network.load_state_dict(state)


def augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, image_channels: int | None = None,
            scanner_augmentation: bool = False):
    """Random affine (rotation, scale, shift, flip) applied identically to image and labels, plus gamma (and with
    `scanner_augmentation` gain, offset and noise) on the first `image_channels` (all: None; probabilities are not
    intensities)."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.pi
    scale = 0.85 + torch.rand(n, generator=generator) * 0.3
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (30 / 128)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False).long()
    gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 0.3)
    images = slice(0, image_channels)
    x[:, images] = x[:, images].clamp(min=0) ** gamma
    if scanner_augmentation:  # another scanner's contrast and noise: gain 0.8-1.2, offset +-0.1, noise SD 0-0.05
        gain = 0.8 + torch.rand(n, 1, 1, 1, generator=generator) * 0.4
        offset = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 0.1
        noise = torch.randn(x[:, images].shape, generator=generator) * torch.rand(n, 1, 1, 1, generator=generator) * 0.05
        x[:, images] = x[:, images] * gain + offset + noise
    return x, y


def drop_neighbours(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Replace a neighbour by the centre slice now and then (both for 10 % of samples, one for another 20 %),
    as at the ends of a stack and for a single 2D slice, so that the network also works without them."""
    centre = x.shape[1] // 2
    draw = torch.rand(x.shape[0], generator=generator)
    x = x.clone()
    for n in range(x.shape[0]):
        sides = range(x.shape[1]) if draw[n] < 0.1 else [0] if draw[n] < 0.2 else [x.shape[1] - 1] if draw[n] < 0.3 else []
        for side in sides:
            x[n, side] = x[n, centre]
    return x


def class_dice(pred, truth, classes):
    return dice(np.isin(pred, classes), np.isin(truth, classes), empty=1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="EMIDEC folder with images/ and labels/")
    parser.add_argument("--myops", type=Path, help="MyoPS folder (Case*/Case*_LGE.nii.gz, *_gd.nii.gz): its training "
                                                   "split is added (another centre and scanner)")
    parser.add_argument("--myops-share", type=float, default=0.35,
                        help="share of training slices drawn from MyoPS [0.35]")
    parser.add_argument("--scanner-augmentation", action="store_true",
                        help="also vary gain, offset and noise of the slices (another scanner's contrast)")
    parser.add_argument("--checkpoint", type=Path, help="training state written here as it runs; a run started "
                                                        "again with the same path resumes")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--crop", type=int, default=CROP, help=f"training crop (the manifest's patch size) [{CROP}]")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--input-slices", type=int, choices=(1, 3), default=3,
                        help="1: 2D (the first stage of the shipped model), 3: 2.5D [3]")
    parser.add_argument("--init", type=Path, help="start from these weights (continued training)")
    parser.add_argument("--stage", choices=("segmenter", "refiner"), default="segmenter",
                        help="segmenter: the five-class first stage; refiner: the scar stage of the cascade")
    parser.add_argument("--segmenter", type=Path, help="first-stage weights for --stage refiner (default: shipped)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the batches and augmentation [0]")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    train_ids, validation_ids = emidec.split(list(emidec.cases(args.data)))
    channels = args.input_slices
    segmenter = None
    if args.stage == "refiner":
        segmenter = load_named_model(MODEL_NAME, args.segmenter, torch.device("cpu"))[0]
        architecture, name = REFINER_ARCHITECTURE, REFINER_NAME
    else:
        architecture = {**ARCHITECTURE, "kwargs": {**ARCHITECTURE["kwargs"], "in_channels": channels}}
        name = MODEL_NAME
    x_train, y_train = load(args.data, train_ids, channels, segmenter)
    from_myops = np.zeros(len(x_train), bool)
    print(f"EMIDEC: {len(train_ids)} training cases ({len(x_train)} slices), {len(validation_ids)} validation cases",
          flush=True)
    if args.myops:
        myops_train, myops_validation = myops.split(list(myops.cases(args.myops)))
        x_more, y_more = load_myops(args.myops, myops_train, channels, segmenter)
        print(f"MyoPS: {len(myops_train)} training cases ({len(x_more)} slices), {len(myops_validation)} validation "
              f"cases", flush=True)
        x_train, y_train = np.concatenate([x_train, x_more]), np.concatenate([y_train, y_more])
        from_myops = np.concatenate([from_myops, np.ones(len(x_more), bool)])
    if segmenter is not None:
        y_train = scar_targets(y_train)
    # Each slice is drawn with a weight that gives MyoPS its share of the batches (it has far fewer slices).
    share = args.myops_share if from_myops.any() else 0.0
    weights = np.where(from_myops, share / max(from_myops.sum(), 1), (1 - share) / max((~from_myops).sum(), 1))
    weights = torch.from_numpy(weights / weights.sum())
    network = build_network(type("E", (), {"architecture": architecture, "name": name})())
    if args.init:
        warm_start(network, args.init)
    network = network.to(args.device)
    started = time.time()
    margin = (x_train.shape[-1] - args.crop) // 2
    window = (Ellipsis, slice(margin, margin + args.crop), slice(margin, margin + args.crop))

    def next_batch():
        index = torch.multinomial(weights, args.batch, replacement=True, generator=generator).numpy()
        x = torch.from_numpy(x_train[index])
        image_channels = x.shape[1] if segmenter is None else 3  # the refiner's 3 slices, then probabilities
        x = torch.cat([drop_neighbours(x[:, :image_channels], generator), x[:, image_channels:]], 1)
        y = torch.from_numpy(y_train[index][:, None].astype(np.int64))
        x, y = augment(x, y, generator, image_channels, args.scanner_augmentation)
        return x[window], y[window]

    train(network, next_batch, args.iterations, args.lr, args.device, batch_dice=True, log_every=100, started=started,
          checkpoint=args.checkpoint, generator=generator)
    network.eval()
    scores = {"myocardium": [], "scar+mvo": []}
    with torch.inference_mode():
        for case in validation_ids:
            x, y = emidec.load_case(args.data, case)
            stack, device = normalise_stack(x), torch.device(args.device)
            pred = (predict(network, stack, device) if segmenter is None else
                    predict(segmenter.to(device), stack, device, refiner=network))
            scores["myocardium"].append(class_dice(pred, y, [2, 3, 4]))
            if np.isin(y, [3, 4]).any():
                scores["scar+mvo"].append(class_dice(pred, y, [3, 4]))
    if args.myops:
        for case in myops_validation:
            signal, classes, _, spacing = myops.load_case(args.myops, case)
            device = torch.device(args.device)
            stack, pixel_mm = normalise_stack(signal), (spacing[1], spacing[0])
            pred = (predict(network, stack, device, pixel_mm=pixel_mm) if segmenter is None else
                    predict(segmenter.to(device), stack, device, pixel_mm=pixel_mm, refiner=network))
            scores.setdefault("myops myocardium", []).append(class_dice(pred, classes, [2, 3, 4]))
            scores.setdefault("myops scar", []).append(class_dice(pred, classes, [3, 4]))
    save_weights(network, args.out, validation_dice={k: float(np.mean(v)) for k, v in scores.items()},
                 iterations=args.iterations, seconds=round(time.time() - started))


if __name__ == "__main__":
    main()
