"""The model manifest: which networks CardioQuant ships, how to build them and what they were trained on."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

MODELS_DIR = Path(__file__).resolve().parent
MANIFEST_PATH = MODELS_DIR / "manifest.json"
SCHEMA_PATH = MODELS_DIR / "manifest.schema.json"
BUNDLED_WEIGHTS_DIR = MODELS_DIR / "weights"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: str
    file: str
    sha256: str
    architecture: dict
    input: dict
    labels: dict
    training_data: str
    accuracy: dict
    url: str | None = None
    size_bytes: int | None = None
    training_script: str = ""
    licence: str = ""

    @classmethod
    def from_json(cls, data: dict) -> ModelEntry:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def provenance(self) -> dict:
        """What goes into every result JSON: enough to know exactly which model produced it."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256,
                "training_data": self.training_data, "accuracy": self.accuracy}


@functools.cache
def _shipped() -> dict[str, ModelEntry]:
    """The shipped manifest, read once per process (the network modules read their preprocessing from it). Its
    schema is checked by the tests, not here: reading it needs only json, so the Slicer panels read their settings'
    defaults (a cut-off of the scar refiner) when Slicer starts, before jsonschema is installed."""
    return load_manifest(validate=False)


def preprocessing(name: str) -> dict:
    """The `input` block of a shipped model's entry: the one source of its grid, patch, intensity normalisation,
    slices read, test-time mirrors and cut-offs. The code that runs or trains the network reads them from here;
    user weights (--weights) are run with the same preprocessing as the entry they replace."""
    return get_model(name).input


def load_manifest(path: str | Path | None = None, validate: bool = True) -> dict[str, ModelEntry]:
    """Validate a manifest against its JSON schema and index its models by name."""
    path = Path(path) if path else MANIFEST_PATH
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read model manifest {path}: {exc}") from exc
    if validate:
        _validate(data, path)
    entries = [ModelEntry.from_json(m) for m in data["models"]]
    return {e.name: e for e in entries}


def _validate(data: dict, path: Path) -> None:
    import jsonschema  # noqa: PLC0415  (on use: see _shipped)

    try:
        jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise InputError(f"model manifest {path} is invalid at '{where}': {exc.message}") from exc


def get_model(name: str, manifest_path: str | Path | None = None) -> ModelEntry:
    models = load_manifest(manifest_path) if manifest_path else _shipped()
    if name not in models:
        raise InputError(f"model '{name}' is not in the manifest (known: {', '.join(sorted(models)) or 'none'})")
    return models[name]
