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
Also tried (session 26, on a lent H200 GPU: --pack, --minutes, batches cut and augmented on the GPU, four runs
at once, batch 32, segmenter 3.5 minutes (12 400-12 600 iterations) then refiner 2.5 minutes (9 600-9 700)):
(A) both stages anew, lr 3e-3; (B) both continued from the shipped pair, lr 1e-3; (C) as A with MyoPS at half of
each batch and --scanner-augmentation (2 600 iterations: its noise is drawn on the CPU); (D) the refiner alone,
continued 6 minutes (23 200 iterations) on the shipped segmenter. On the validation splits (EMIDEC pooled scar /
MyoPS scar per case / MyoPS %LGE r; shipped 0.614 / 0.520 / 0.50): A 0.610 / 0.483 / 0.27, B 0.592 / 0.501 / 0.50,
C 0.543 / 0.483 / 0.32, D 0.606 / 0.511 / 0.44; A and B gave a normal heart scar (5/6); the shipped and B weights
averaged (a "soup") 0.617 / 0.504 / 0.44. On the training splits (in-sample) A and B rose (MyoPS scar 0.70 ->
0.76, r 0.79 -> 0.93): more training fits the 23 MyoPS training volumes better and reads new ones worse. The
figures are limited by the labelled cases, not by compute; none was shipped.
    python scripts/train_scar_model.py --data ../shared/data/emidec --myops ../shared/data/myops --save-pack P.npz
packs the training cases (27 MB) for a machine without the data folders or their readers.
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
from cardioquant.models.training import load_pack, save_pack, save_weights, train
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


def emidec_stacks(root, case_ids) -> list:
    """EMIDEC training cases as (normalised stack [slices, 256, 256], labels)."""
    return [(normalise_stack(x), y) for x, y in (emidec.load_case(root, case) for case in case_ids)]


def myops_stacks(root, case_ids) -> list:
    """MyoPS training cases as EMIDEC's: each whole-field-of-view slice normalised as the pipeline does (on its own
    grid), resampled to 1.5 mm pixels and cut to 256 x 256 around the LV."""
    stacks = []
    for case in case_ids:
        signal, classes, _, spacing = myops.load_case(root, case)
        stacks.append(myops.on_training_grid(normalise_stack(signal), classes, (spacing[1], spacing[0])))
    return stacks


def _inputs(stacks, channels: int, segmenter, device):
    """Per case (normalised stack, labels) -> inputs [n, channels, rows, cols] (each slice with its neighbours in
    its own case; for the refiner followed by the `segmenter`'s cavity and wall probabilities), labels [n, ...]."""
    images, labels = [], []
    for stack, y in stacks:
        if segmenter is None:
            images += list(with_neighbours(stack, channels))
        else:
            # Both centres' stacks run apex first (every one of them): read so, not as a first pass guesses.
            images += list(refiner_inputs(stack, probabilities(segmenter, stack, torch.device(device), apex_first=True)))
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
    theta = theta.to(x.device)  # drawn on the CPU by `generator` (reproducible and resumable), applied where x is
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False).long()
    gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 0.3).to(x.device)
    images = slice(0, image_channels)
    x[:, images] = x[:, images].clamp(min=0) ** gamma
    if scanner_augmentation:  # another scanner's contrast and noise: gain 0.8-1.2, offset +-0.1, noise SD 0-0.05
        gain = 0.8 + torch.rand(n, 1, 1, 1, generator=generator) * 0.4
        offset = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 0.1
        noise = torch.randn(x[:, images].shape, generator=generator) * torch.rand(n, 1, 1, 1, generator=generator) * 0.05
        x[:, images] = x[:, images] * gain.to(x.device) + offset.to(x.device) + noise.to(x.device)
    return x, y


def drop_neighbours(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Replace a neighbour by the centre slice now and then (both for 10 % of samples, one for another 20 %),
    as at the ends of a stack and for a single 2D slice, so that the network also works without them."""
    centre = x.shape[1] // 2
    draw = torch.rand(x.shape[0], generator=generator).to(x.device)
    x = x.clone()
    for side, replaced in ((0, draw < 0.2), (x.shape[1] - 1, (draw < 0.1) | ((draw >= 0.2) & (draw < 0.3)))):
        x[:, side] = torch.where(replaced[:, None, None], x[:, centre], x[:, side])
    return x


def class_dice(pred, truth, classes):
    return dice(np.isin(pred, classes), np.isin(truth, classes), empty=1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="EMIDEC folder with images/ and labels/")
    parser.add_argument("--myops", type=Path, help="MyoPS folder (Case*/Case*_LGE.nii.gz, *_gd.nii.gz): its training "
                                                   "split is added (another centre and scanner)")
    parser.add_argument("--save-pack", type=Path, help="write the training cases of --data (and --myops) to this "
                                                       "file for --pack, and stop")
    parser.add_argument("--pack", type=Path, help="train on a --save-pack file instead of --data / --myops (no "
                                                  "validation at the end: run make bench on the weights)")
    parser.add_argument("--myops-share", type=float, default=0.35,
                        help="share of training slices drawn from MyoPS [0.35]")
    parser.add_argument("--scanner-augmentation", action="store_true",
                        help="also vary gain, offset and noise of the slices (another scanner's contrast)")
    parser.add_argument("--checkpoint", type=Path, help="training state written here as it runs; a run started "
                                                        "again with the same path resumes")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--iterations", type=int, default=2500, help="iterations (with --minutes: at most) [2500]")
    parser.add_argument("--minutes", type=float, help="train for this long, the schedule spread over it")
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
    if args.pack is None and args.data is None:
        parser.error("give --data (EMIDEC's folder) or --pack (a --save-pack file)")
    if args.save_pack is None and args.out is None:
        parser.error("give --out (where the weights go)")
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest convolutions once
    generator = torch.Generator().manual_seed(args.seed)
    centres = training_cases(args)
    if args.save_pack:
        save_pack(args.save_pack, centres)
        return
    channels = args.input_slices
    segmenter = None
    if args.stage == "refiner":
        segmenter = load_named_model(MODEL_NAME, args.segmenter, torch.device(args.device))[0]
        architecture, name = REFINER_ARCHITECTURE, REFINER_NAME
    else:
        architecture = {**ARCHITECTURE, "kwargs": {**ARCHITECTURE["kwargs"], "in_channels": channels}}
        name = MODEL_NAME
    inputs = {centre: _inputs(stacks, channels, segmenter, args.device) for centre, stacks in centres.items()}
    x_train = np.concatenate([x for x, _ in inputs.values()])
    y_train = np.concatenate([y for _, y in inputs.values()])
    from_myops = np.concatenate([np.full(len(x), centre == "myops") for centre, (x, _) in inputs.items()])
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
    # The slices live where the network trains (on a GPU the batches are cut and augmented there).
    x_train = torch.from_numpy(x_train).to(args.device)
    y_train = torch.from_numpy(y_train.astype(np.uint8)).to(args.device)

    def next_batch():
        index = torch.multinomial(weights, args.batch, replacement=True, generator=generator).to(args.device)
        x = x_train[index]
        image_channels = x.shape[1] if segmenter is None else 3  # the refiner's 3 slices, then probabilities
        x = torch.cat([drop_neighbours(x[:, :image_channels], generator), x[:, image_channels:]], 1)
        y = y_train[index][:, None].long()
        x, y = augment(x, y, generator, image_channels, args.scanner_augmentation)
        return x[window], y[window]

    iterations = train(network, next_batch, args.iterations, args.lr, args.device, batch_dice=True, log_every=100,
                       started=started, checkpoint=args.checkpoint, generator=generator,
                       seconds=None if args.minutes is None else args.minutes * 60)
    scores = validation_dice(args, network, segmenter) if args.data else {}
    save_weights(network, args.out, validation_dice=scores, iterations=iterations,
                 seconds=round(time.time() - started))


def training_cases(args) -> dict:
    """{centre: [(normalised stack, labels) per training case]} from --pack or the data folders."""
    if args.pack:
        centres = load_pack(args.pack)
    else:
        centres = {"emidec": emidec_stacks(args.data, emidec.split(list(emidec.cases(args.data)))[0])}
        if args.myops:
            centres["myops"] = myops_stacks(args.myops, myops.split(list(myops.cases(args.myops)))[0])
    for centre, stacks in centres.items():
        print(f"{centre}: {len(stacks)} training cases ({sum(len(y) for _, y in stacks)} slices)", flush=True)
    return centres


def validation_dice(args, network, segmenter) -> dict:
    """Mean myocardium and scar + MVO Dice over each centre's validation cases (make bench gives the full figures)."""
    network.eval()
    device = torch.device(args.device)
    scores = {"myocardium": [], "scar+mvo": []}
    cases = [(*emidec.load_case(args.data, case), None) for case in emidec.split(list(emidec.cases(args.data)))[1]]
    if args.myops:
        for case in myops.split(list(myops.cases(args.myops)))[1]:
            signal, classes, _, spacing = myops.load_case(args.myops, case)
            cases.append((signal, classes, (spacing[1], spacing[0])))
    with torch.inference_mode():
        for signal, truth, pixel_mm in cases:
            stack, prefix = normalise_stack(signal), "" if pixel_mm is None else "myops "
            pred = (predict(network, stack, device, pixel_mm=pixel_mm, apex_first=True) if segmenter is None else
                    predict(segmenter.to(device), stack, device, pixel_mm=pixel_mm, refiner=network, apex_first=True))
            scores.setdefault(prefix + "myocardium", []).append(class_dice(pred, truth, [2, 3, 4]))
            if np.isin(truth, [3, 4]).any() or pixel_mm is not None:
                scores.setdefault(prefix + "scar+mvo", []).append(class_dice(pred, truth, [3, 4]))
    return {k: float(np.mean(v)) for k, v in scores.items()}

if __name__ == "__main__":
    main()
