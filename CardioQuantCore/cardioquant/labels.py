"""Label tables: label value <-> segment name, colour and standard terminology (SNOMED CT codes).

One `LabelTable` per module output; the same table names segments in Slicer, rows in DICOM SEG and the
`labels` entry of the module JSON, so a label value means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Code = tuple[str, str, str]  # (coding scheme designator, code value, code meaning)

# Categories and types used across modules (DICOM CID 7150/7151, SNOMED CT).
TISSUE: Code = ("SCT", "85756007", "Tissue")
ANATOMICAL_STRUCTURE: Code = ("SCT", "123037004", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED: Code = ("SCT", "49755003", "Morphologically Altered Structure")

# Not 0.5 grey: Slicer takes (0.5, 0.5, 0.5) for "no colour" and gives such a segment a colour of its own.
UNLABELLED_GREY = (0.6, 0.6, 0.6)

SLICER_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class SegmentSpec:
    value: int
    name: str
    color: tuple[float, float, float]
    category: Code
    type: Code
    region: Code | None = None
    description: str = ""

    def terminology_entry(self) -> str:
        """Slicer's serialised terminology entry (context~category~type~modifier~anatomic context~region~modifier)."""
        def code(c: Code | None) -> str:
            return "^".join(c) if c else "^^"

        return "~".join([SLICER_CONTEXT, code(self.category), code(self.type), "^^", ANATOMIC_CONTEXT,
                         code(self.region), "^^"])

    def header_keys(self, n: int) -> dict[str, str]:
        """This segment's name, label value and terminology as segment `n` of a Slicer segmentation file's header."""
        return {f"Segment{n}_Name": self.name, f"Segment{n}_LabelValue": str(self.value),
                f"Segment{n}_Tags": f"TerminologyEntry:{self.terminology_entry()}|"}

    def to_json(self) -> dict:
        return {
            "value": self.value,
            "name": self.name,
            "color": [round(c, 4) for c in self.color],
            "category": list(self.category),
            "type": list(self.type),
            "region": list(self.region) if self.region else None,
            "description": self.description,
        }


@dataclass
class LabelTable:
    segments: list[SegmentSpec] = field(default_factory=list)
    # Whether the segments a result lacks are put in the scene empty, for the reader to paint into: yes for a few
    # named structures (arteries, scar), no for a table of every possible vertebra (104 entries: a list no reader
    # wants, and each segment costs Slicer's writer, which saves a reader's edits, a pass over the whole scan).
    offer_empty: bool = True

    def __post_init__(self):
        values = [s.value for s in self.segments]
        names = [s.name for s in self.segments]
        if len(set(values)) != len(values) or len(set(names)) != len(names) or 0 in values:
            raise ValueError("label values and names must be unique and non-zero")

    def header_keys(self) -> dict[str, str]:
        """The segments as a Slicer segmentation's header names them (SegmentN_Name, _LabelValue, _Tags), for a label
        map file: read back (imageio.slicer_segments), its values are this table's, not another convention's (a BMD
        label map's were taken for TotalSegmentator's, T2-L3 named C1-T5)."""
        keys: dict[str, str] = {}
        for n, spec in enumerate(self.segments):
            keys |= spec.header_keys(n)
        return keys

    def segments_of(self, present: set[int], include_empty: bool = True) -> list[SegmentSpec]:
        """The segments of a result whose label map holds the values `present`: the table's entries found (and the
        empty ones to paint into, when `include_empty` and the table offers them), in the table's order, then one
        grey "unlabelled N" segment for each value outside the table (kept visible, never dropped; typed "Tissue",
        the type Slicer gives a segment without one)."""
        found = [spec for spec in self.segments if spec.value in present or (include_empty and self.offer_empty)]
        known = {spec.value for spec in self.segments}
        return found + [SegmentSpec(value, f"unlabelled {value}", UNLABELLED_GREY, TISSUE, TISSUE)
                        for value in sorted(set(present) - known)]

    def by_value(self, value: int) -> SegmentSpec:
        return next(s for s in self.segments if s.value == value)

    def renumbered(self, drawn, values: dict[int, int]):
        """`drawn` (an integer array) with each value turned into another (`values`: old -> new; a SEG's segment
        numbers into this table's values, values_of_labels, or the values into segment numbers), in one lookup;
        voxels of other values are 0."""
        import numpy as np

        lookup = np.zeros(max([int(drawn.max()), *values]) + 1, np.uint8)
        lookup[list(values)] = list(values.values())
        return lookup[drawn]

    def values_of_labels(self, labels: dict[int, str]) -> dict[int, int]:
        """Segment number -> this table's value, for the segments (a DICOM SEG's: number -> label) whose label is one
        of this table's names, in any case. A SEG numbers its segments 1..N in its writer's order (CardioQuant's own
        export numbers the segments present), so its numbers are not the table's values."""
        values = {spec.name.lower(): spec.value for spec in self.segments}
        return {number: values[label.strip().lower()] for number, label in labels.items()
                if label.strip().lower() in values}

    def to_json(self) -> list[dict]:
        return [s.to_json() for s in self.segments]
