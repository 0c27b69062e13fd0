"""Copy trained weights into the package and write/replace their manifest entry (sha256 and size computed here).

    python scripts/register_model.py WEIGHTS.pt ENTRY.json

ENTRY.json holds the manifest fields except sha256/size_bytes (name, version, file, architecture, input, labels,
training_data, training_script, licence, accuracy, url). The manifest is validated against its schema afterwards.
"""

import json
import shutil
import sys
from pathlib import Path

from cardioquant.models.manifest import BUNDLED_WEIGHTS_DIR, MANIFEST_PATH, load_manifest
from cardioquant.models.runtime import sha256_file


def main():
    weights, entry_path = Path(sys.argv[1]), Path(sys.argv[2])
    entry = json.loads(entry_path.read_text())
    BUNDLED_WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    target = BUNDLED_WEIGHTS_DIR / entry["file"]
    if weights.resolve() != target.resolve():
        shutil.copy2(weights, target)
    entry["sha256"] = sha256_file(target)
    entry["size_bytes"] = target.stat().st_size
    manifest = json.loads(MANIFEST_PATH.read_text())
    manifest["models"] = [m for m in manifest["models"] if m["name"] != entry["name"]] + [entry]
    manifest["models"].sort(key=lambda m: m["name"])
    MANIFEST_PATH.write_text(json.dumps(manifest, indent=2) + "\n")
    load_manifest()  # schema check
    print(f"registered {entry['name']} {entry['version']} ({entry['size_bytes']} bytes, sha256 {entry['sha256'][:12]}...)")


if __name__ == "__main__":
    main()
