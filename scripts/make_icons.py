"""Draw the module and extension icons (128x128 PNG). Run once; the PNGs are committed."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ICONS = {
    "CalciumScoring/Resources/Icons/CalciumScoring.png": ("CAC", "#b22222"),
    "ScarQuantification/Resources/Icons/ScarQuantification.png": ("LGE", "#6a1b9a"),
    "BoneDensity/Resources/Icons/BoneDensity.png": ("BMD", "#c8a165"),
    "CTFFR/Resources/Icons/CTFFR.png": ("FFR", "#1565c0"),
    "Resources/Icons/CardioQuant.png": ("CQ", "#8b0000"),
}


def draw(path: Path, text: str, colour: str) -> None:
    figure = plt.figure(figsize=(1.28, 1.28), dpi=100)
    ax = figure.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.add_patch(Circle((0.5, 0.5), 0.46, color=colour))
    ax.text(0.5, 0.5, text, color="white", ha="center", va="center", fontsize=26 if len(text) < 3 else 21, weight="bold")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, transparent=True)
    plt.close(figure)


if __name__ == "__main__":
    for relative, (text, colour) in ICONS.items():
        draw(ROOT / relative, text, colour)
