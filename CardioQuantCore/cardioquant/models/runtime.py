"""Model runtime: find verified weights, pick the device, run (sliding-window) inference with progress/cancel.

Weight lookup order (first hit wins):
  1. an explicit path (`--weights` on the command line, the Slicer panel's "weights file")
  2. the environment variable CARDIOQUANT_WEIGHTS_<MODEL NAME IN CAPITALS>
  3. the weights bundled in the package (cardioquant/models/weights/)
  4. the per-user cache (CARDIOQUANT_CACHE, default ~/.cache/cardioquant/models/<name>/<version>/)
  5. download from the manifest URL into the cache, unless CARDIOQUANT_OFFLINE=1
Bundled, cached and downloaded files must match the manifest sha256. User-supplied files are the user's own
model, so they are not held to the manifest checksum, but they must load into the architecture.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import InputError, ProcessingError
from ..progress import Progress
from .manifest import BUNDLED_WEIGHTS_DIR, ModelEntry

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    root = os.environ.get("CARDIOQUANT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cardioquant", "models")
    return Path(root)


def sha256_file(path: str | Path) -> str:
    """The file's sha256, computed once per process for the same file (path, size, modification time): a batch
    worker checks the same weights for every study."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


_DIGESTS: dict[tuple, str] = {}


def _verify(path: Path, entry: ModelEntry, origin: str) -> Path:
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise InputError(f"{origin} weights {path} fail the sha256 check for model {entry.name} {entry.version} "
                         f"(expected {entry.sha256[:12]}..., got {actual[:12]}...): the file is corrupt or from "
                         "another version; delete it so it is fetched again, or pass the right file with --weights.")
    return path


def resolve_weights(entry: ModelEntry, user_path: str | Path | None = None, allow_download: bool | None = None,
                    progress: Progress | None = None) -> tuple[Path, str]:
    """Return (path, origin) of the weights to load; origin is one of user/env/bundled/cache/download."""
    for origin, candidate in (("user", user_path),
                              ("env", os.environ.get(f"CARDIOQUANT_WEIGHTS_{entry.name.upper()}"))):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_file():
                raise InputError(f"weights file not found: {path} (from {origin}); check the path.")
            return path, origin
    bundled = BUNDLED_WEIGHTS_DIR / entry.file
    if bundled.is_file():
        return _verify(bundled, entry, "bundled"), "bundled"
    cached = cache_dir() / entry.name / entry.version / entry.file
    if cached.is_file():
        return _verify(cached, entry, "cached"), "cache"
    if allow_download is None:
        allow_download = os.environ.get("CARDIOQUANT_OFFLINE", "") not in ("1", "true", "yes")
    if not entry.url:
        raise InputError(f"weights for model {entry.name} {entry.version} are not installed and the manifest gives no "
                         f"URL; pass them with --weights or put {entry.file} in {cached.parent}.")
    if not allow_download:
        raise InputError(f"weights for model {entry.name} are not cached and downloads are off (CARDIOQUANT_OFFLINE); "
                         f"copy {entry.file} (sha256 {entry.sha256[:12]}...) to {cached.parent} or pass --weights.")
    download(entry.url, cached, entry.sha256, progress)
    return cached, "download"


def download(url: str, destination: Path, sha256: str, progress: Progress | None = None, timeout: float = 60) -> None:
    """Download to a temporary file, check sha256, then move into place (never leaves a partial file)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=destination.parent, suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress and total:
                    progress.update(done / total, "downloading weights")
        if digest.hexdigest() != sha256:
            raise InputError(f"downloaded weights from {url} fail the sha256 check (expected {sha256[:12]}..., got "
                             f"{digest.hexdigest()[:12]}...); the server copy is wrong or was changed. Nothing was kept.")
        shutil.move(temp_name, destination)
    except urllib.error.URLError as exc:
        raise InputError(f"cannot download weights from {url}: {exc.reason}; work offline by passing --weights "
                         "or copying the file into the cache.") from exc
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def select_device(requested: str = "auto"):
    """torch.device for 'auto', 'cpu' or 'cuda'; asking for CUDA without a GPU falls back to CPU with a message."""
    import torch

    if requested not in ("auto", "cpu", "cuda") and not requested.startswith("cuda:"):
        raise InputError(f"unknown device '{requested}': use auto, cpu or cuda")
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda" if requested == "auto" else requested)
    if requested != "auto":
        log.warning("CUDA was requested but no usable GPU was found; running on the CPU")
    return torch.device("cpu")


NETWORKS = ("UNet",)  # the architectures a manifest entry may name (models/unet.py: MONAI's, in its layout)


def build_network(entry: ModelEntry):
    """The entry's network with fresh weights; MONAI is not imported (models/unet.py says why)."""
    from . import unet

    architecture = entry.architecture
    if architecture["name"] not in NETWORKS:
        raise InputError(f"model {entry.name}: unknown network '{architecture['name']}' (known: "
                         f"{', '.join(NETWORKS)})")
    try:
        return getattr(unet, architecture["name"])(**architecture["kwargs"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"model {entry.name}: its architecture cannot be built ({exc})") from exc


def load_model(entry: ModelEntry, weights: str | Path, device=None):
    """Network in eval mode with the weights loaded; corrupt or mismatching files raise InputError."""
    import torch

    device = device or torch.device("cpu")
    network = build_network(entry)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (pickle, zip, runtime) for a damaged file
        raise InputError(f"cannot load weights {weights}: the file is corrupt or not a PyTorch state dict ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        network.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise InputError(f"weights {weights} do not fit model {entry.name} ({entry.architecture['name']}): "
                         f"{str(exc).splitlines()[0]}") from exc
    return network.to(device).eval()


USER_WEIGHTS_NOTE = "user weights, accuracy not measured by CardioQuant"


def weights_provenance(entry: ModelEntry, weights: Path, origin: str) -> dict:
    """What the result JSON says about the weights. Weights given by the user (--weights or an environment
    variable) are identified by their own sha256; unless that is the manifest's, the manifest's accuracy is not
    theirs and is not quoted."""
    provenance = {**entry.provenance(), "weights_origin": origin}
    if origin in ("user", "env"):
        digest = sha256_file(weights)
        provenance |= {"weights_file": str(weights), "sha256": digest}
        if digest != entry.sha256:
            provenance |= {"accuracy": None, "training_data": None, "note": USER_WEIGHTS_NOTE}
    return provenance


_LOADED: dict[tuple, object] = {}  # networks already loaded in this process (a batch worker reuses them)


def load_named_model(name: str, user_path: str | Path | None, device):
    """(network, manifest entry, provenance) for manifest model `name`: weights looked up as `resolve_weights` does
    (`user_path` first), loaded on `device`; the provenance is what result JSONs record about the model. A network
    is loaded once per process for the same weights file (path, size and modification time) and device, then
    reused: it is only ever evaluated, never changed."""
    from .manifest import get_model

    entry = get_model(name)
    weights, origin = resolve_weights(entry, user_path=user_path)
    provenance = weights_provenance(entry, weights, origin) | {"device": str(device)}
    stat = os.stat(weights)
    key = (entry.name, entry.version, os.path.abspath(weights), stat.st_size, stat.st_mtime_ns, str(device))
    if key not in _LOADED:
        _LOADED[key] = load_model(entry, weights, device)
    return _LOADED[key], entry, provenance


def sliding_window_predict(network, image, roi_size, device, sw_batch_size: int = 4, overlap: float = 0.25,
                           progress: Progress | None = None, max_gpu_output_gb: float = 2.0):
    """Sliding-window logits for a (1, C, *spatial) tensor, with progress, cancel and a GPU memory guard.

    Memory guard: when the stitched output would exceed `max_gpu_output_gb` (or the GPU runs out of memory),
    windows still run on the GPU but are stitched in CPU memory; a CUDA out-of-memory error falls back to a
    full CPU run with a warning rather than failing.
    """
    import torch

    from .sliding_window import sliding_window, window_count

    n_calls = max(1, math.ceil(window_count(image.shape[2:], roi_size, overlap) / sw_batch_size))
    calls = [0]

    def predictor(batch):
        if progress:
            progress.update(calls[0] / n_calls, "inference")
        calls[0] += 1
        return network(batch)

    out_channels = None
    for attr in ("out_channels", "out_ch"):
        out_channels = out_channels or getattr(network, attr, None)
    output_gb = (out_channels or 4) * image[0, 0].numel() * 4 / 1e9
    stitch_device = device if device.type == "cpu" or output_gb <= max_gpu_output_gb else torch.device("cpu")
    try:
        with torch.inference_mode():
            logits = sliding_window(image.to(stitch_device), roi_size, predictor, sw_batch_size, overlap,
                                    window_device=device, output_device=stitch_device)
    except torch.cuda.OutOfMemoryError:
        log.warning("GPU out of memory; running this volume on the CPU instead")
        torch.cuda.empty_cache()
        network.to("cpu")
        calls[0] = 0
        with torch.inference_mode():
            logits = sliding_window(image.cpu(), roi_size, predictor, sw_batch_size, overlap)
    except RuntimeError as exc:
        raise ProcessingError(f"inference failed: {str(exc).splitlines()[0]}") from exc
    if progress:
        progress.update(1.0, "inference done")
    return logits
