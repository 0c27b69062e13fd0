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


def save_page(figure, png_path: Path, warnings=()) -> None:
    """PNG for quick viewing and a PDF beside it for the record, with the run's `warnings` at the foot of the page
    (what the JSON warns of, a reader of the page must see too)."""
    if warnings:
        _warnings_at_foot(figure, warnings)
    png_path = Path(png_path)
    figure.savefig(png_path)
    figure.savefig(png_path.with_suffix(".pdf"))
    plt.close(figure)


WARNING_LINE_CHARACTERS = 140  # at 7 pt across the page's width
WARNING_LINE_HEIGHT = 0.0115   # of the page's height, at 7 pt
MAX_WARNING_LINES = 16         # a fifth of the page


def _warnings_at_foot(figure, warnings) -> None:
    """Move the page's content up (axes and texts squeezed into the space above) and write the warnings, wrapped, in
    the room made at the foot: every report has them whatever its layout."""
    import textwrap

    lines = [wrapped for warning in warnings
             for wrapped in textwrap.wrap(f"- {warning}", WARNING_LINE_CHARACTERS, subsequent_indent="  ")]
    if len(lines) > MAX_WARNING_LINES:  # the page's content keeps most of the page; the JSON has every word
        lines = lines[:MAX_WARNING_LINES - 1] + ["  ... (continued in the JSON's warnings)"]
    room = 0.03 + (len(lines) + 1) * WARNING_LINE_HEIGHT
    for ax in figure.axes:
        box = ax.get_position()
        ax.set_position([box.x0, room + box.y0 * (1 - room), box.width, box.height * (1 - room)])
    for text in figure.texts:
        x, y = text.get_position()
        text.set_position((x, room + y * (1 - room)))
    figure.text(0.05, room - 0.01, "\n".join([f"Warnings ({len(warnings)}): review before use"] + lines), fontsize=7,
                color="darkred", va="top", linespacing=1.25)
