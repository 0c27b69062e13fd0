"""The shipped networks' inference time on one device (a GPU where there is one): what `make bench` cannot show on a
machine without one. Only the networks are timed (with their pre- and post-processing in `predict`), on inputs of
the clinical sizes; the pipelines around them run on the CPU either way.

    python scripts/bench_networks.py [--device cuda] [--pack P.npz]

- LGE cascade (segmenter + scar refiner, both passes, four mirrored copies): real short-axis stacks from a
  `train_scar_model.py --save-pack` file (256 x 256 slices at the training pixel size), else the generated phantom.
- Vertebra network: a 512 x 512 x 300 chest CT at 0.7 x 0.7 x 1 mm on its 2 mm grid (180 x 180 x 150 voxels).
- Coronary lumen network: a heart region of 140 x 110 x 120 mm on its 0.5 mm grid.
Each figure is the median of 3 runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def timed(run, repeats: int = 3) -> float:
    """Median wall time of `run()` over `repeats`, after one warm-up call (kernel selection, caches)."""
    run()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def lge_stacks(pack: Path | None) -> list[np.ndarray]:
    if pack is not None:
        with np.load(pack) as stacks:
            return [stacks[key].astype(np.float32) for key in sorted(stacks.files) if key.endswith("/x")][:20]
    from cardioquant.scar import network
    from cardioquant.scar.phantom import make_lge_phantom

    return [network.normalise_stack(make_lge_phantom(noise=3.0).signal)]


def bench_lge(device, pack: Path | None) -> None:
    from cardioquant.models.runtime import load_named_model
    from cardioquant.scar import network

    segmenter, refiner = (load_named_model(name, None, device)[0] for name in (network.MODEL_NAME, network.REFINER_NAME))
    stacks = lge_stacks(pack)
    slices = sum(len(stack) for stack in stacks)
    seconds = timed(lambda: [network.predict(segmenter, stack, device, refiner=refiner) for stack in stacks])
    print(f"LGE cascade on {device.type}: {1000 * seconds / slices:.1f} ms per 256x256 slice ({len(stacks)} real "
          f"stacks, {slices} slices{'' if pack else '; generated phantom'})", flush=True)


def bench_volume_network(device, name: str, shape: tuple[int, int, int], what: str) -> None:
    from cardioquant.models.runtime import load_named_model, sliding_window_predict

    model, entry, _ = load_named_model(name, None, device)
    roi = tuple(entry.input["patch_size"])
    x = torch.rand((1, 1) + shape) * 2 - 1
    seconds = timed(lambda: sliding_window_predict(model, x, roi, device, sw_batch_size=1, overlap=0.25))
    print(f"{name} on {device.type}: {seconds:.2f} s for {what} ({'x'.join(map(str, shape))} voxels, windows "
          f"{'x'.join(map(str, roi))})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pack", type=Path, help="a train_scar_model.py --save-pack file (real LGE stacks)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    with torch.inference_mode():
        bench_lge(device, args.pack)
        bench_volume_network(device, "vertebra_segmenter", (150, 180, 180), "a chest CT of 512 x 512 x 300")
        bench_volume_network(device, "coronary_lumen", (240, 220, 280), "a heart region of 140 x 110 x 120 mm")


if __name__ == "__main__":
    main()
