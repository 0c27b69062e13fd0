"""Shared pieces of the one-page reports (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import __version__  # noqa: E402

PAGE_INCHES = (8.27, 11.69)  # A4 portrait


def new_page(title: str, subtitle: str = ""):
    figure = plt.figure(figsize=PAGE_INCHES, dpi=110)
    figure.text(0.05, 0.965, title, fontsize=16, weight="bold", va="top")
    if subtitle:
        figure.text(0.05, 0.94, subtitle, fontsize=9, color="0.3", va="top")
    return figure


def draw_table(ax, rows: list[list], header: list[str], col_widths: list[float] | None = None, font_size: float = 8.5):
    ax.axis("off")
    table = ax.table(cellText=[[str(c) for c in r] for r in rows], colLabels=header, loc="upper center",
                     cellLoc="center", colWidths=col_widths)
    table.auto_set_font_size(False)
    table.set_fontsize(font_size)
    table.scale(1, 1.3)
    for (row, _col), cell in table.get_celld().items():
        if row == 0:
            cell.set_facecolor("#dde4ee")
            cell.set_text_props(weight="bold")
    return table


def footer(figure, lines: list[str]) -> None:
    text = "\n".join(lines + [f"CardioQuant {__version__} - research software, not a medical device; "
                              "results must be reviewed by a qualified reader."])
    figure.text(0.05, 0.02, text, fontsize=6.5, color="0.35", va="bottom", wrap=True)


def save_page(figure, png_path: Path) -> None:
    """PNG for quick viewing and a PDF beside it for the record."""
    png_path = Path(png_path)
    figure.savefig(png_path)
    figure.savefig(png_path.with_suffix(".pdf"))
    plt.close(figure)
