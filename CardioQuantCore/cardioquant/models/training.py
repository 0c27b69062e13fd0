"""The training loop shared by the project's training scripts (scripts/train_*.py).

AdamW with a one-cycle learning-rate schedule and MONAI's Dice + cross-entropy loss (background excluded): the
scripts differ only in their data and augmentation, which they pass in as `next_batch`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

IGNORE = 255  # label value for voxels whose class is unknown (e.g. unlabelled ribs in real data): no loss there


def masked_dice_ce(batch_dice: bool):
    """Dice + cross-entropy (background excluded from Dice) that skips voxels labelled IGNORE."""
    import torch
    import torch.nn.functional as F
    from monai.losses import MaskedDiceLoss

    dice = MaskedDiceLoss(to_onehot_y=True, softmax=True, include_background=False, batch=batch_dice)

    def loss(logits, y):
        valid = y != IGNORE
        target = torch.where(valid, y, torch.zeros_like(y))
        ce = F.cross_entropy(logits, target[:, 0], reduction="none")
        ce = (ce * valid[:, 0]).sum() / valid.sum().clamp(min=1)
        return ce + dice(logits, target, mask=valid.float())

    return loss


def train(network, next_batch: Callable[[], tuple], iterations: int, lr: float, device, batch_dice: bool = False,
          log_every: int = 50, started: float | None = None, ignore_unknown: bool = False,
          checkpoint: Path | None = None, generator=None, seconds: float | None = None):
    """Train in place; `next_batch()` returns (x, y) tensors (on the CPU or already on `device`), y with a channel
    axis of class indices (and IGNORE where the class is unknown, when `ignore_unknown`).

    With `seconds` the run trains for that long (at most `iterations`), its one-cycle schedule following the share
    of the time spent rather than of the iterations: on a lent GPU whose speed is not known ahead, a run sized in
    iterations would either stop short of its schedule or outlast the lease.

    With a `checkpoint` path the state (network, optimiser, schedule, iteration, the batch `generator`'s state) is
    written there every `log_every` iterations (atomically), and a run started again with the same path resumes
    where it stopped instead of starting over; the file is removed when training ends. Returns the number of
    iterations done."""
    import torch
    from monai.losses import DiceCELoss

    started = started or time.time()
    optimiser = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-4)
    clock = _TrainingClock(seconds)
    schedule = (torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=iterations) if seconds is None
                else torch.optim.lr_scheduler.LambdaLR(optimiser, clock.one_cycle_factor))
    loss_function = (masked_dice_ce(batch_dice) if ignore_unknown else
                     DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=batch_dice))
    network.train()
    running, first, done = [], 1, 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        network.load_state_dict(state["network"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        if generator is not None:
            generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        done = state["iteration"]
        first = done + 1
        clock.spent_before = state.get("seconds_trained", 0.0)
        print(f"resumed from {checkpoint} at iteration {state['iteration']}", flush=True)
    for iteration in range(first, iterations + 1):
        if clock.finished():
            print(f"time budget of {seconds:.0f} s spent after {done} iterations", flush=True)
            break
        x, y = next_batch()
        optimiser.zero_grad()
        loss = loss_function(network(x.to(device)), y.to(device))
        loss.backward()
        optimiser.step()
        schedule.step()
        done = iteration
        running.append(loss.item())
        if iteration % log_every == 0:
            print(f"iteration {iteration}: loss {np.mean(running[-log_every:]):.4f} ({time.time() - started:.0f} s)",
                  flush=True)
            if checkpoint is not None:
                _save_checkpoint(checkpoint, iteration, network, optimiser, schedule, generator, clock.spent())
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
    network.eval()
    return done


class _TrainingClock:
    """Training time, counted across a resumed run, and the one-cycle learning-rate factor over its share of a
    time budget (as torch's OneCycleLR over iterations: cosine up from 1/25 over the first 30 %, then cosine down
    to 1/10^4 of the peak)."""

    def __init__(self, seconds: float | None):
        self.seconds, self.spent_before, self.started = seconds, 0.0, time.time()

    def spent(self) -> float:
        return self.spent_before + time.time() - self.started

    def finished(self) -> bool:
        return self.seconds is not None and self.spent() >= self.seconds

    def one_cycle_factor(self, _step: int) -> float:
        import math

        assert self.seconds is not None, "a one-cycle schedule over time needs a time budget"
        share = min(self.spent() / self.seconds, 1.0)
        start, end = 1 / 25, 1 / 25 / 1e4
        if share < 0.3:
            return 1 + (start - 1) * (1 + math.cos(math.pi * share / 0.3)) / 2
        return end + (1 - end) * (1 + math.cos(math.pi * (share - 0.3) / 0.7)) / 2


def _save_checkpoint(path, iteration, network, optimiser, schedule, generator, seconds_trained=0.0) -> None:
    """Write the training state to `path` through a temporary file, so that a kill never leaves half a file."""
    import os

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"iteration": iteration, "network": network.state_dict(), "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(), "torch_rng": torch.get_rng_state(),
                "generator": generator.get_state() if generator is not None else None,
                "seconds_trained": seconds_trained}, partial)
    os.replace(partial, path)


def generate_cases(make_case: Callable[[int], tuple], seeds, workers: int = 2) -> list:
    """Build the training cases in parallel (each seed gives one generated case)."""
    from multiprocessing import Pool

    started = time.time()
    with Pool(workers) as pool:
        cases = pool.map(make_case, list(seeds))
    print(f"generated {len(cases)} cases in {time.time() - started:.0f} s", flush=True)
    return cases


def save_pack(path: Path, groups: dict) -> None:
    """Training cases, ready for the network, in one file (half precision, compressed): what a run on a machine
    without the data sets' folders or readers (a lent GPU with neither the data nor SimpleITK) needs.
    `groups` is {name: [(x, y), ...]} (a centre, "phantom", "real"); validation cases are never packed."""
    arrays = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    for group, cases in groups.items():
        for number, (x, y) in enumerate(cases):
            arrays[f"{group}/{number:03d}/x"] = x.astype(np.float16)
            arrays[f"{group}/{number:03d}/y"] = y.astype(np.uint8)
    np.savez_compressed(path, **arrays)
    print(f"packed {', '.join(f'{len(v)} {k} cases' for k, v in groups.items())} into {path} "
          f"({path.stat().st_size / 1e6:.1f} MB)", flush=True)


def load_pack(path: Path) -> dict:
    """save_pack's file -> {group: [(x float32, y), ...]}."""
    groups: dict = {}
    with np.load(path) as pack:
        for key in sorted(k for k in pack.files if k.endswith("/x")):
            groups.setdefault(key.split("/")[0], []).append((pack[key].astype(np.float32), pack[key[:-1] + "y"]))
    return groups


def pad_to(array: np.ndarray, shape, value: float = 0.0) -> np.ndarray:
    """Pad the trailing axes of `array` up to `shape` with `value`; the array itself when it is that large already
    (a crop is cut from it next: copying a whole case for every crop took longer than the crop)."""
    lead = array.ndim - len(shape)
    pads = [(0, 0)] * lead + [(0, max(0, s - n)) for n, s in zip(array.shape[lead:], shape, strict=True)]
    return np.pad(array, pads, constant_values=value) if any(after for _, after in pads) else array


def random_crop(x: np.ndarray, y: np.ndarray, roi, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Same random window of (C, *spatial) x and (*spatial) y, padding first where the case is smaller."""
    x, y = pad_to(x, roi), pad_to(y, roi)
    starts = [int(rng.integers(0, n - r + 1)) for n, r in zip(y.shape, roi, strict=True)]
    box = tuple(slice(s, s + r) for s, r in zip(starts, roi, strict=True))
    return x[(slice(None),) + box], y[box]


def augmented_crop(x: np.ndarray, y: np.ndarray, roi, rng: np.random.Generator, zoom_range=(1.0, 1.0),
                   axial_zoom_range=(1.0, 1.0), roll_range_deg=(0.0, 0.0),
                   fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A random window like random_crop, with the anatomy in it drawn larger or smaller in plane (the last two axes,
    one factor from `zoom_range`), along the slices (the first spatial axis, a factor from `axial_zoom_range`) and
    turned in plane by an angle from `roll_range_deg` (a patient rolled on the table, a scoliotic spine's
    rotation); linear for the image, nearest for the labels. A network on a fixed mm grid otherwise learns the
    sizes, heights and the upright posture of its few training patients. The window is cut large enough that the
    turned and scaled patch holds no corner from outside it; where the case is smaller, the image is padded with
    `fill` (what inference frames a small field of view with) and the labels with background."""
    from scipy import ndimage

    in_plane, axial = float(rng.uniform(*zoom_range)), float(rng.uniform(*axial_zoom_range))
    angle = np.deg2rad(float(rng.uniform(*roll_range_deg)))
    cos, sin = np.cos(angle), np.sin(angle)
    # Output voxel -> input voxel, about the patch's centre: scaled by 1 / factor, turned by the angle in plane.
    matrix = np.array([[1 / axial, 0, 0], [0, cos / in_plane, -sin / in_plane], [0, sin / in_plane, cos / in_plane]])
    if np.array_equal(matrix, np.eye(3)):
        return random_crop(pad_to(x, roi, fill), y, roi, rng)  # nothing to scale or turn
    # The window spans the turned patch's extent, widened by an even count: the patch's centre falls on a voxel.
    span = 2 * np.abs(matrix) @ ((np.asarray(roi[-3:], float) - 1) / 2) + 1
    window = tuple(roi[:-3]) + tuple(r + 2 * int(np.ceil(max(0.0, n - r - 1e-6) / 2))
                                     for n, r in zip(span, roi[-3:], strict=True))
    x, y = random_crop(pad_to(x, window, fill), y, window, rng)
    offset = (np.asarray(window[-3:], float) - 1) / 2 - matrix @ ((np.asarray(roi[-3:], float) - 1) / 2)
    shape = tuple(roi[-3:])
    turned_x = np.stack([ndimage.affine_transform(c, matrix, offset, shape, order=1, mode="nearest") for c in x])
    turned_y = ndimage.affine_transform(y, matrix, offset, shape, order=0, mode="nearest")
    return turned_x.astype(x.dtype), turned_y.astype(y.dtype)


def save_weights(network, path, **info) -> None:
    """Save the state dict and print what the manifest needs (sha256, size) with the run's figures."""
    import json

    import torch

    from .runtime import sha256_file

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.cpu().state_dict(), path)
    print(json.dumps({"weights": str(path), "sha256": sha256_file(path), "size_bytes": path.stat().st_size, **info}))
