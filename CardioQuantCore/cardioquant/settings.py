"""One settings object per analysis: a typed dataclass whose fields are the analysis's options, declared once.

The same object is what
- the command line parses into (`add_arguments`, then `from_options`),
- the Slicer panel edits through its parameter node (`panel_fields`, `to_panel` / `from_panel`),
- the background run is started with (`to_arguments`: the command line that parses back into the same object),
- the result's JSON stores under "options" (`to_json`), and re-scoring or a re-run reads back (`from_json`).

Each field is declared with `setting(default, help, ...)`: its range, choices and whether the panel shows it are
metadata of the field, so the ranges checked before any work (`check`) and the panel's limits cannot drift from
the options' declaration.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass
from typing import Any, Self

from .errors import InputError


def setting(default: Any, help: str, *, choices: tuple | None = None, limits: tuple | None = None,
            panel: bool = False, panel_choices: tuple | None = None, flag: str | None = None,
            metavar: str | None = None, path: bool = False, words: tuple = ()) -> Any:
    """A settings field.

    limits: (low, high, low inclusive[, high inclusive]) for a number (high inclusive unless said otherwise);
    path: a file or folder the analysis reads, which must exist (`check`), unless the value is one of `words`
    (e.g. 'totalsegmentator': run it instead of reading its output);
    panel: the Slicer panel shows it (bound by its field name through the widget's SlicerParameterName);
    panel_choices: the panel's choices when they differ from the command line's (e.g. presets of a free value);
    flag: the option as typed when it is not --field-name (a boolean flag is --field-name as written).
    """
    metadata = {"help": help, "choices": choices, "limits": limits, "panel": panel,
                "panel_choices": panel_choices, "flag": flag, "metavar": metavar, "path": path, "words": words}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _value_type(annotation) -> tuple[type, bool]:
    """(the value's type, whether None is allowed): `float | None` -> (float, True); `list[str]` -> (list, False)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _value_type(inner[0])[0], True
    return (typing.get_origin(annotation) or annotation), False


_TYPED_FIELDS: dict[type, list[tuple[dataclasses.Field, type, bool]]] = {}


def _typed_fields(cls: type) -> list[tuple[dataclasses.Field, type, bool]]:
    if cls not in _TYPED_FIELDS:
        hints = typing.get_type_hints(cls)
        _TYPED_FIELDS[cls] = [(f, *_value_type(hints[f.name])) for f in dataclasses.fields(cls)]
    return _TYPED_FIELDS[cls]


@dataclass
class AnalysisSettings:
    """What every analysis shares: where its networks run and which weights they use."""

    device: str = setting("auto", "auto (GPU when present), cpu or cuda [auto]", panel=True,
                          panel_choices=("auto", "cpu", "cuda"))
    weights: str | None = setting(None, "model weights file to use instead of the bundled/cached ones (scar: the "
                                        "first-stage segmenter; the scar refiner via "
                                        "CARDIOQUANT_WEIGHTS_LGE_SCAR_REFINER)", path=True)

    # --- declaration ------------------------------------------------------------------------------------------

    @classmethod
    def fields(cls) -> list[tuple[dataclasses.Field, type, bool]]:
        """Each field with its value type and whether it may be None (resolved once per class)."""
        return _typed_fields(cls)

    @classmethod
    def flag(cls, name: str) -> str:
        field = next(f for f, _, _ in cls.fields() if f.name == name)
        return field.metadata["flag"] or "--" + name.replace("_", "-")

    # --- the command line -------------------------------------------------------------------------------------

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        """The fields as command-line options; defaults are the dataclass's, so a bare command line parses into
        `cls()`."""
        for field, kind, _ in cls.fields():
            meta = field.metadata
            keywords: dict[str, Any] = {"help": meta["help"], "dest": field.name}
            if kind is bool:
                keywords["action"] = "store_true"
            elif kind is list:
                keywords.update(action="append", default=[])
            else:
                keywords.update(type=kind, default=field.default, choices=meta["choices"])
                if meta["metavar"]:
                    keywords["metavar"] = meta["metavar"]
            parser.add_argument(cls.flag(field.name), **keywords)

    @classmethod
    def from_options(cls, options: argparse.Namespace) -> Self:
        """The settings a parsed command line gives (its other options, input and output, are not settings)."""
        return cls(**{f.name: getattr(options, f.name) for f, _, _ in cls.fields()})

    def to_arguments(self) -> list[str]:
        """The command-line options that parse back into these settings (only those that differ from the
        defaults): how the Slicer panel starts its background run."""
        defaults = type(self)()
        arguments: list[str] = []
        for field, kind, _ in self.fields():
            value = getattr(self, field.name)
            if value == getattr(defaults, field.name):
                continue
            flag = self.flag(field.name)
            if kind is bool:
                arguments.append(flag)
            elif kind is list:
                arguments += [f"{flag}={item}" for item in value]
            elif value is not None:
                arguments.append(f"{flag}={float(value)!r}" if kind is float else f"{flag}={value}")  # "=": "-1" is a value
        return arguments

    # --- checks -----------------------------------------------------------------------------------------------

    def check(self) -> None:
        """One line naming the option when a number is out of its range (NaN included) or a file it names is not
        there; before any work (a mask read after minutes of segmentation is no place to find a typo)."""
        for field, _, _ in self.fields():
            value, meta = getattr(self, field.name), field.metadata
            if meta["path"] and value and value not in meta["words"] and not os.path.exists(value):
                raise InputError(f"{self.flag(field.name)} {value}: no such file or folder; check the path.")
        for field, _, _ in self.fields():
            value, limits = getattr(self, field.name), field.metadata["limits"]
            if value is None or limits is None:
                continue
            low, high, low_inclusive, *rest = limits
            high_inclusive = rest[0] if rest else True
            above_low = value >= low if low_inclusive else value > low
            below_high = value <= high if high_inclusive else value < high
            if not (math.isfinite(value) and above_low and below_high):
                raise InputError(f"{self.flag(field.name)} {value:g} is out of range: give a value "
                                 f"{'from' if low_inclusive else 'above'} {low:g} "
                                 f"{'up to' if high_inclusive else 'below'} {high:g}.")

    # --- the result's JSON ------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, stored: dict | None) -> Self:
        """The settings a result's JSON recorded; fields it lacks (a run of an older version) take their defaults,
        keys that are no longer settings are passed over."""
        names = {f.name for f, _, _ in cls.fields()}
        return cls(**{k: v for k, v in (stored or {}).items() if k in names})

    # --- the Slicer panel ---------------------------------------------------------------------------------------

    @classmethod
    def panel_fields(cls) -> list[tuple[str, type, tuple | None, tuple | None, Any]]:
        """(name, type, choices, (low, high) limits, default) of each field the panel shows, as its parameter node
        holds it: a number that may be None is 0 there (a spin box's 'automatic'), text that may be None is ''."""
        shown = []
        for field, kind, optional in cls.fields():
            meta = field.metadata
            if not meta["panel"]:
                continue
            choices = meta["panel_choices"] or meta["choices"]
            limits = meta["limits"][:2] if meta["limits"] else None
            if optional and kind in (int, float) and limits is not None:
                limits = (min(0, limits[0]), limits[1])  # 0 stands for None
            default = field.default if field.default is not None else kind()
            shown.append((field.name, kind, choices, limits, default))
        return shown

    def to_panel(self) -> dict:
        """The panel's values (parameter node) of these settings."""
        return {name: (kind() if getattr(self, name) is None else getattr(self, name))
                for name, kind, _, _, _ in self.panel_fields()}

    @classmethod
    def from_panel(cls, values: dict, **others) -> Self:
        """Settings from the panel's values (0 or '' back to None where the field allows it) and `others` (the
        reader's nodes written as files, the application's weights setting)."""
        optional = {f.name for f, _, may_be_none in cls.fields() if may_be_none}
        given: dict[str, Any] = {name: (None if name in optional and not value else value) for name, value in values.items()}
        return cls(**given, **others)
