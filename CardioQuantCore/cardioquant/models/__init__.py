"""Model manifest, weight resolution (bundled, user path, per-user cache, download with sha256) and inference."""

from .manifest import ModelEntry, load_manifest
from .runtime import load_model, resolve_weights, select_device, sliding_window_predict

__all__ = ["ModelEntry", "load_manifest", "load_model", "resolve_weights", "select_device", "sliding_window_predict"]
