"""Vertebrae from the project's network: body / posterior elements / sacrum / rib / intervertebral disc classes on
a 2 mm grid, then bodies split at the discs and levels assigned by anatomy.

Level rules (assign_levels): with a sacrum in view the body resting on it is L5 and levels count upwards; the
lowest body that carries ribs is T12 when a rib-free body below it is in view (with the place its rib heads would
be); with both, they must agree (across a missed vertebra, with room for it), and where a rib-free body (C7) lies
above the highest rib-bearing one, that one is T1 and must agree with them too (never an anchor alone: a cervical
rib makes C7 look like T1); without a decisive anchor the bodies
are V1, V2, ... from the lowest and the level is "not determined" (or the user gives the lowest level,
`--lowest-level`). A wrong count shifts every
level, so a level is never guessed, and the rule is stated in every result. Before counting, bodies that cannot
be vertebral bodies (not bone, off the midline, in the front of the trunk, with no vertebral arch behind them where
the field of view has room for one) are dropped with a warning (on_the_spine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from ..geometry import (
    NO_DATA_HU,
    PADDING_HU,
    as_padding,
    bounding_box,
    disk,
    fill_holes_in_plane,
    largest_component,
    open_in_plane,
    outside_the_reconstruction,
    resample_isotropic,
    turned_to,
)
from ..models.manifest import preprocessing
from .levels import LEVELS, UNDETERMINED
from .vertebrae import DENSE_BODY_SHARE, cut_by_scan_range, share_denser_than_bone

MODEL_NAME = "vertebra_segmenter"
# The network's preprocessing, read from its manifest entry (the one source; training uses the same values).
_INPUT = preprocessing(MODEL_NAME)
GRID_MM = float(_INPUT["spacing_mm"][0])
HU_WINDOW = tuple(_INPUT["normalisation"]["clip_hu"])
HU_OFFSET, HU_SCALE = _INPUT["normalisation"]["offset_hu"], _INPUT["normalisation"]["scale_hu"]
REPLICATE_END_SLICES = _INPUT.get("padding", {}).get("slices") == "replicate"  # the manifest says why
IN_PLANE_PADDING_HU = _INPUT.get("padding", {}).get("in_plane_hu")  # beyond a small field of view; the manifest says why
ORIENTATION = _INPUT.get("orientation", {}).get("axes")  # "LAS": the axes the scan is turned to; the manifest says why
CLASSES = ("background", "body", "posterior", "sacrum", "rib", "disc")
DISC = CLASSES.index("disc")
DISC_CUT_MM = 8.0  # a vertebral body is 30-50 mm across: a disc seen in part of it still separates the whole column
MAX_DISC_MM = 20.0  # the tallest lumbar discs are 12-16 mm; a larger gap between labelled bodies is a missing body
RIB_ML = 0.3  # rib beside a body's back half: it carries ribs (the chest CT's T12 reads 0.48 mL as stored)
# ... and clearly none: L1 reads 0.00-0.03 mL on the two labelled CTs, 0.06-0.10 on the abdominal CT rolled 10
# degrees (its sacrum names the levels there). The twelfth rib is often short, and the network sees it in part: the
# contrast chest CT with 20 mm of air added on each side (make bench, "wider field of view": the sliding window's
# tiles fall elsewhere) read 0.26 mL beside T12 and 0.60 beside T11, and every level was named one too low.
RIB_FREE_ML = 0.05


def disc_labels(instances: np.ndarray, order: Sequence[int], spacing) -> np.ndarray:
    """The intervertebral discs of a label map of vertebral bodies (`instances`, one value per body; `order`, the
    values from head to feet): in every column (k runs head-feet or feet-head) both bodies of a pair of neighbours
    cover, the voxels between the end plates, where that gap is at most MAX_DISC_MM. This is what the network's
    disc class is taught, on generated and real scans alike: the bodies it separates are then split at the discs
    rather than bridged across them."""
    disc = np.zeros(instances.shape, bool)
    k = np.arange(instances.shape[0])[:, None, None]
    present = [value for value in order if (instances == value).any()]
    for upper, lower in zip(present[:-1], present[1:], strict=True):
        a, b = instances == upper, instances == lower
        both = a.any(axis=0) & b.any(axis=0)
        if not both.any():
            continue
        a_first, a_last, b_first, b_last = _first_slice(a), _last_slice(a), _first_slice(b), _last_slice(b)
        # the gap runs from the end of whichever body comes first along k to the start of the other
        low = np.where(a_last < b_first, a_last, b_last)
        high = np.where(a_last < b_first, b_first, a_first)
        ok = both & (high > low) & ((high - low - 1) * spacing[2] <= MAX_DISC_MM)
        disc |= ok[None] & (k > low[None]) & (k < high[None])
    return disc & (instances == 0)


def _first_slice(mask: np.ndarray) -> np.ndarray:
    """Per column (j, i), the first k the mask covers (-1 where it covers none)."""
    return np.where(mask.any(axis=0), mask.argmax(axis=0), -1)


def _last_slice(mask: np.ndarray) -> np.ndarray:
    """Per column (j, i), the last k the mask covers (-1 where it covers none)."""
    return np.where(mask.any(axis=0), mask.shape[0] - 1 - mask[::-1].argmax(axis=0), -1)


def to_grid(image: sitk.Image, is_label: bool = False) -> sitk.Image:
    """The scan on the network's grid: its axes turned to the manifest's orientation (the same anatomy the same way
    up whatever order the file stores its rows in), then resampled to GRID_MM. A fill outside the reconstruction
    circle stored as air, or padding below -3024 HU, is resampled as -3024 HU padding (the same grid either way)."""
    oriented = turned_to(image, ORIENTATION) if ORIENTATION else image
    if not is_label:
        fill = outside_the_reconstruction(oriented)
        if fill is not None or sitk.GetArrayViewFromImage(oriented).min() < PADDING_HU:
            padded = sitk.GetImageFromArray(as_padding(sitk.GetArrayFromImage(oriented), fill))
            padded.CopyInformation(oriented)
            oriented = padded
    return resample_isotropic(oriented, GRID_MM, is_label, default=0.0 if is_label else -1000.0)


def normalise(array: np.ndarray) -> np.ndarray:
    return ((np.clip(array, *HU_WINDOW) - HU_OFFSET) / HU_SCALE).astype(np.float32)


def predict_classes(grid: sitk.Image, network, device, roi, progress=None) -> sitk.Image:
    """Class map of the scan already on the network's 2 mm grid (`grid`, from to_grid: the caller keeps it for the
    HU checks, so the scan is resampled once), with that grid's geometry."""
    import torch

    from ..models.runtime import sliding_window_predict

    hu = sitk.GetArrayFromImage(grid)
    below, above = end_slices_to_add(hu.shape[0], roi[0])
    padded = np.pad(hu, ((below, above), (0, 0), (0, 0)), mode="edge")
    rows, columns = in_plane_padding(hu.shape[1:], roi[1:])
    if rows != (0, 0) or columns != (0, 0):
        padded = np.pad(padded, ((0, 0), rows, columns), constant_values=IN_PLANE_PADDING_HU)
    x = torch.from_numpy(normalise(padded))[None, None]
    logits = sliding_window_predict(network, x, roi, device, sw_batch_size=1, overlap=0.25, progress=progress)
    inside = (0, slice(below, below + hu.shape[0]), slice(rows[0], rows[0] + hu.shape[1]),
              slice(columns[0], columns[0] + hu.shape[2]))
    classes = sitk.GetImageFromArray(logits.argmax(1)[inside].cpu().numpy().astype(np.uint8))
    classes.CopyInformation(grid)
    return classes


def end_slices_to_add(slices: int, patch_slices: int) -> tuple[int, int]:
    """(below, above): copies of the first and last slice that bring a scan shorter than the network's patch up to
    it (none when the manifest does not ask for them)."""
    short = max(0, patch_slices - slices) if REPLICATE_END_SLICES else 0
    return short // 2, short - short // 2


def in_plane_padding(size: Sequence[int], patch: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """((before, after) rows, (before, after) columns) of IN_PLANE_PADDING_HU that bring a field of view smaller
    than the patch up to it (none when the manifest gives no value: the sliding window then pads with 0, 200 HU)."""
    if IN_PLANE_PADDING_HU is None:
        return (0, 0), (0, 0)
    short = [max(0, p - n) for n, p in zip(size, patch, strict=True)]
    return (short[0] // 2, short[0] - short[0] // 2), (short[1] // 2, short[1] - short[1] // 2)


def to_native(labels: sitk.Image, image: sitk.Image) -> np.ndarray:
    """A label image on the 2 mm grid brought to the scan's grid (nearest neighbour)."""
    return sitk.GetArrayFromImage(sitk.Resample(labels, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0))


def not_body(classes: np.ndarray) -> np.ndarray:
    """Where the network sees bone or disc that is not a vertebral body (posterior elements, ribs, discs)."""
    return np.isin(classes, [CLASSES.index("posterior"), CLASSES.index("rib"), DISC])


def cut_at_discs(body: np.ndarray, spacing, ratio: float = 0.35, reach_mm: float = 15.0) -> np.ndarray:
    """The body mask with the slices of discs removed: a disc shows as a slice whose body area is a local
    minimum below `ratio` x the largest area within `reach_mm` on both sides (the network sometimes bridges a
    disc with a thin layer of "body", which erosion alone does not open)."""
    area = body.sum(axis=(1, 2)).astype(float)
    reach = max(1, int(round(reach_mm / spacing[2])))
    cut = body.copy()
    for k in range(1, len(area) - 1):
        if area[k] == 0 or area[k] > area[k - 1] or area[k] > area[k + 1]:
            continue
        below, above = area[max(0, k - reach):k].max(), area[k + 1:k + 1 + reach].max()
        if area[k] < ratio * min(below, above):
            cut[k] = False
    return cut


def split_bodies(body: np.ndarray, spacing, disc: np.ndarray | None = None, min_volume_ml: float = 3.0) -> list[np.ndarray]:
    """Individual vertebral bodies, inferior first: cut at disc slices, with the body voxels near the network's
    discs taken away (_disc_cut), eroded across the discs and labelled; every body voxel outside the disc slices
    is then given to the nearest piece (each body its largest connected part)."""
    whole = cut_at_discs(body, spacing)
    if disc is not None and disc.any():
        body = body & ~_disc_cut(disc, spacing)
    body = cut_at_discs(body, spacing) & whole
    iterations = max(1, int(round(2.0 / spacing[2])))
    structure = np.zeros((3, 3, 3), bool)
    structure[:, 1, 1] = True  # erode along z only: discs are thin in z
    cores, count = ndimage.label(ndimage.binary_erosion(body, structure, iterations=iterations))
    if count == 0:
        return []
    _, (kk, jj, ii) = ndimage.distance_transform_edt(cores == 0, sampling=spacing[::-1], return_indices=True)
    grown = np.where(whole, cores[kk, jj, ii], 0)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    # A body is one piece: stray body voxels elsewhere (a rib head, the edge of a bright vessel) given to its
    # core would move its trabecular ROI.
    out = []
    for n, box in enumerate(ndimage.find_objects(grown), start=1):
        if box is None or (grown[box] == n).sum() * voxel_ml < min_volume_ml:
            continue  # its largest part is smaller still
        piece = np.zeros(grown.shape, bool)
        piece[box] = largest_component(grown[box] == n)  # labelled in the piece's box, not the whole scan
        if piece[box].sum() * voxel_ml >= min_volume_ml:
            out.append(piece)
    return sorted(out, key=lambda mask: np.nonzero(mask)[0].mean())


def _disc_cut(disc: np.ndarray, spacing) -> np.ndarray:
    """Where bodies are to be separated: the disc voxels and the voxels of their slices within DISC_CUT_MM. The
    network often marks a thin thoracic disc in part of the column only, and the bodies above and below would stay
    joined at its edges; the pieces this takes from the end plates are given back to the nearest body."""
    radius = max(1, int(round(DISC_CUT_MM / spacing[0])))
    return ndimage.binary_dilation(disc, structure=disk(radius)[None])


@dataclass
class Naming:
    """Levels of the bodies found, inferior first: a level where an anchor decides it, else V1, V2, ... counted
    from the lowest body in view ("level not determined"), and how that was decided."""
    levels: dict                     # name -> body mask
    rule: str
    determined: bool                 # every body has a level
    warnings: list = field(default_factory=list)
    missed_below: list = field(default_factory=list)  # names of the bodies with a vertebra missed just below them


def assign_levels(bodies: list[np.ndarray], classes: np.ndarray, spacing, lowest_level: str | None = None,
                  merged: Sequence[np.ndarray] = (), posterior: int = 1, hu: np.ndarray | None = None) -> Naming:
    """Levels from the anchors in view: the sacrum (the body resting on it is L5) and the ribs (T12 is the lowest
    rib-bearing vertebra: decisive only when a rib-free body below it is in view, with the place beside and
    behind it where rib heads would be, and is no denser than bone (`hu`, on the classes' grid: cement hides its
    ribs from the network); `posterior`: +1 when j runs towards the back). With both, they must agree
    (_anchors_agree: across a missed vertebra, the levels between them must fit the room it left). A body missed
    between an anchor and the others (a gap of more than a vertebra's height) stops the count there, and so does a
    piece of several vertebrae not split at their discs (`merged`, dropped by on_the_spine): the bodies beyond stay
    V-named. Where no anchor decides, the bodies are named V1, V2, ... from the lowest and the levels are not
    determined: a level is never guessed."""
    if not bodies:
        raise InputError("no vertebral body found in the field of view.")
    if lowest_level:
        return _named(bodies, {0: LEVELS.index(lowest_level)}, f"user: lowest vertebra is {lowest_level}", [])
    centre = lambda mask: np.nonzero(mask)[0].mean()  # noqa: E731
    notes: list[str] = []
    sacrum = _sacrum(classes, spacing)
    if sacrum is not None:
        # Nothing below the sacrum's middle is a vertebral body (pelvis, femoral heads). Not its top: the sacrum
        # reaches up behind the tilted lumbosacral disc, above L5's centre.
        middle = np.nonzero(sacrum)[0].mean()
        resting = [mask for mask in bodies if centre(mask) > middle]
        if not resting:  # e.g. the top body of a short scan range, its end slices repeated up to the network's patch
            notes.append("what the network calls sacrum lies above every body found, and the spine rests on the "
                         "sacrum: it is not the sacrum and does not fix the levels")
            sacrum = None
        elif under := _bodies_under(sacrum, bodies):
            notes.append(f"what the network calls sacrum has {under} vertebral bod{'y' if under == 1 else 'ies'} wholly "
                         "below it, and the spine does not go on below the sacrum: it is not the sacrum and does not "
                         "fix the levels")
            sacrum = None
        else:
            bodies = resting
    sacrum_top = None if sacrum is None else int(np.nonzero(sacrum)[0].max())
    merged_centres = [centre(mask) for mask in merged]
    run_of = _runs(bodies, spacing, merged_centres)
    anchors = {}  # rule -> (LEVELS index of the anchored body, its position among the bodies)
    if sacrum_top is not None:
        gap_mm = (np.nonzero(bodies[0])[0].min() - sacrum_top) * spacing[2]
        if any(np.nonzero(mask)[0].max() > sacrum_top and centre(mask) < centre(bodies[0]) for mask in merged):
            notes.append("on the sacrum lies a piece of several vertebrae not split at their discs, so the sacrum "
                         "does not fix the levels")
        elif gap_mm <= SACRUM_GAP_MM:
            anchors["sacrum in view: the body resting on it is L5"] = (LEVELS.index("L5"), 0)
        else:
            notes.append(f"the sacrum is in view but the lowest body found is {gap_mm:.0f} mm above it: a vertebra "
                         "between them was not found, so the sacrum does not fix the levels")
    with_ribs = [n for n, mask in enumerate(bodies) if _has_ribs(mask, classes, spacing, posterior)]
    below = with_ribs[0] - 1 if with_ribs else -1
    if below >= MAX_LUMBAR:
        notes.append(f"{below + 1} bodies without ribs lie below the lowest rib-bearing one, more than the lumbar "
                     f"spine has ({MAX_LUMBAR} with a sixth lumbar vertebra): ribs were missed, so the ribs do not fix "
                     "the levels")
    elif below >= 0 and run_of[below] == run_of[below + 1]:
        doubt = _not_clearly_rib_free(bodies[below], classes, spacing, posterior, hu, "below the lowest", "the ribs",
                                      "a short twelfth rib seen in part?", " (the chest CT with cement in T12 lost "
                                      "T12's ribs, and T11 was taken for T12)")
        if doubt is None:
            anchors["lowest rib-bearing vertebra is T12"] = (LEVELS.index("T12"), with_ribs[0])
        else:
            notes.append(doubt)
    elif below >= 0:
        # Not even when the space the missed vertebra left shows no rib: the network can miss T12 with its short
        # twelfth rib (the chest CT read 0.8 times its size lost L2-T12, its space was rib-free, and T11-T2 were
        # named one level too low when that space named the levels, as tried in session 45).
        notes.append("a vertebra between the lowest rib-bearing body and the rib-free one below it was not found "
                     "(or several are merged there): the rib-free body's level cannot be counted, so the ribs do "
                     "not fix the levels")
    elif with_ribs:
        notes.append("the lowest body found carries ribs: the lowest rib-bearing vertebra (T12) cannot be told "
                     "(it may lie below the field of view), so the ribs do not fix the levels")
    if with_ribs and (first := _first_thoracic(bodies, with_ribs[-1], classes, spacing, posterior, run_of, hu,
                                               notes)) is not None:
        if anchors:
            anchors["highest rib-bearing vertebra is T1"] = (LEVELS.index("T1"), first)
        else:
            notes.append("the highest rib-bearing body may be T1, but the highest ribs alone do not fix the levels: a "
                         "cervical rib, or the network's rib class on C7's long transverse process, would make C7 look "
                         "like T1")
    if not _anchors_agree(list(anchors.values()), bodies, spacing, run_of):
        said = "; ".join(f"{rule.split(':')[0]} gives the lowest body {LEVELS[level + position]}"
                         for rule, (level, position) in anchors.items())
        if len(set(run_of)) > 1:
            said += ", counting no vertebra missed between the bodies found"
        naming = _unnamed(bodies, "anchors disagree: " + said, notes + [f"{_anchor_names(anchors)} disagree ({said}): "
                                                                        "levels not determined"])
    elif not anchors:
        naming = _unnamed(bodies, "no sacrum or rib transition in view", notes)
    else:
        rule = next(iter(anchors))
        if len(anchors) >= 2:
            rule = f"{_anchor_names(anchors)} agree: {rule}"
        starts = {run_of[position]: level + position for level, position in anchors.values()}
        naming = _named(bodies, starts, rule, notes, run_of)
    name_of = {id(mask): name for name, mask in naming.levels.items()}
    naming.missed_below = [name_of[id(bodies[n])] for n in range(1, len(bodies)) if run_of[n] != run_of[n - 1]]
    return naming


def _sacrum(classes: np.ndarray, spacing) -> np.ndarray | None:
    """The largest piece the network calls sacrum, when it is at least MIN_SACRUM_ML (a sacrum in view, even only
    its top, is tens of mL; the network's scattered sacrum voxels on a chest or cardiac CT are a few mL in all)."""
    pieces, count = ndimage.label(classes == 3)
    if count == 0:
        return None
    sizes = np.bincount(pieces.ravel())[1:]
    if sizes.max() * float(np.prod(spacing)) / 1000.0 < MIN_SACRUM_ML:
        return None
    return pieces == int(np.argmax(sizes)) + 1


def _bodies_under(sacrum: np.ndarray, bodies: list[np.ndarray]) -> int:
    """How many bodies lie wholly below what the network calls sacrum (k runs upwards). The bodies here passed
    on_the_spine (bone on the midline with an arch behind it): the pelvis and femoral heads did not, and the
    coccyx is too small. A body wholly below the sacrum means the spine goes on under it, so it is not the sacrum:
    the real chest CT with T12 crushed by half its height had a 10 mL 'sacrum' at the crush, and L3-L1 under it
    were dropped as pelvis and T11-T7 named L5-L1."""
    bottom = int(np.nonzero(sacrum)[0].min())
    return sum(int(np.nonzero(mask)[0].max()) < bottom for mask in bodies)


MIN_SACRUM_ML = 10.0
MAX_LUMBAR = 6  # five lumbar vertebrae, six in a few per cent of people (lumbarised S1, or L6)
SACRUM_GAP_MM = 16.0   # the L5-S1 disc is 10-12 mm; a missed L5 leaves a gap of a whole vertebra (30 mm and more)


def _runs(bodies: list[np.ndarray], spacing, merged_centres=()) -> list[int]:
    """Run number of each body: consecutive bodies with no vertebra missing between them (_gaps) share a run."""
    return [0] + np.cumsum(_gaps(bodies, spacing, merged_centres)).tolist()


def _gaps(bodies: list[np.ndarray], spacing, merged_centres=()) -> list[bool]:
    """For each two bodies in a row, whether a vertebra is missing between them. A step between centres over 1.6
    times its neighbours' (the median of the up to four nearest other steps; over 45 mm with fewer than three
    steps), or a merged piece between them, is a gap. The neighbours', not the whole spine's: vertebrae grow taller
    down the spine (thoracic steps 15-25 mm, lumbar 30-40), and on a chest CT, mostly thoracic, the L2-L1 step of the
    contrast chest CT here (32-36 mm) sat at 1.5-1.7 times the spine's median (21 mm): as one reconstruction or
    another fell, L3 and L2 were cut off as beyond a missed vertebra, and the patient figure came from L1 and T12
    (102 mg/cm3 against 77). So is a space between their facing end plates that holds a body (_space_holds_a_body):
    the upper thoracic steps vary, and with T3 left out of the real chest CT its neighbours' step was no gap, and T2
    and T1 were named T3 and T2."""
    points, spaces, heights = _along_the_spine(bodies, spacing)
    centres = np.array([point[2] for point in points]) / spacing[2]  # in slices, as `merged_centres`
    steps = np.diff(centres) * spacing[2]
    limits = [1.6 * float(np.median(_nearest_others(steps, n))) if steps.size >= 3 else 45.0 for n in range(steps.size)]
    return [step > limit or any(low < c < high for c in merged_centres) or by_space
            for step, limit, low, high, by_space
            in zip(steps, limits, centres[:-1], centres[1:], _space_holds_a_body(bodies, spaces, heights), strict=True)]


def _space_holds_a_body(bodies: list[np.ndarray], spaces: list, heights: list[float]) -> list[bool]:
    """For each two bodies in a row, whether the space between their facing end plates along the spine holds a
    body: more than any disc (MAX_DISC_MM), or a body's worth (MIN_MISSED_SHARE of the found bodies' median height:
    a small upper thoracic body) where both end plates are the bodies' own, each body whole (_whole) or cut by the
    scan's range at its far end (its facing end plate is in view). The network finds the real CTs' held-out lumbar
    bodies in part (20-50 % of each), and a space of more than a disc beside them is still a missed body. Beside a
    body found in part the space may be the rest of it: on a 110 mm slab of the real chest CT the network found 3 mL
    of L2, a 14 mm space above it and a long step to L1; grown there, the rest of L2 was one body too many, and L3 and
    L2 were named L4 and L3. `spaces` and `heights` as _along_the_spine gives them."""
    height = float(np.median(heights)) if heights else 0.0
    whole = _whole(bodies, heights)
    return [space > MAX_DISC_MM or (space >= MIN_MISSED_SHARE * height and (whole[n] or bool(bodies[n][0].any()))
                                    and (whole[n + 1] or bool(bodies[n + 1][-1].any())))
            for n, (space, _) in enumerate(spaces)]


def _whole(bodies: list[np.ndarray], heights: list[float]) -> list[bool]:
    """Whether each body was found whole: WHOLE_SHARE of the found bodies' median height along the spine, and of the
    median volume of the up to four nearest others (bodies grow down the spine: T1 a third of L3). A piece of a
    body spans its height in a few columns: on the chest CT with gas in its discs the network found 4 mL of L1
    (18 mm high), and the rest of L1 was grown as a body between it and T12, one body too many."""
    volumes = np.array([float(mask.sum()) for mask in bodies])
    height = float(np.median(heights)) if heights else 0.0
    return [heights[n] >= WHOLE_SHARE * height and (volumes.size < 2 or volumes[n] >= WHOLE_SHARE * float(
        np.median(_nearest_others(volumes, n)))) for n in range(len(bodies))]


def _nearest_others(steps: np.ndarray, n: int, count: int = 4) -> np.ndarray:
    """The `count` steps nearest step n along the spine, n left out (fewer where the spine holds fewer)."""
    others = [m for m in range(steps.size) if m != n]
    return steps[sorted(others, key=lambda m: (abs(m - n), m))[:count]]


def _anchors_agree(anchors: list[tuple[int, int]], bodies: list[np.ndarray], spacing, run_of: list[int]) -> bool:
    """Whether the anchors, (LEVELS index, position among the bodies) each, agree: between each two anchored bodies
    the levels must be the bodies found between them and the vertebrae the spaces between them left room for
    (_missed_in; none in one run)."""
    ordered = sorted(anchors, key=lambda anchor: anchor[1])
    return all((lower_level - upper_level) - (upper - lower) == _missed_in(bodies, spacing, run_of, lower, upper)
               for (lower_level, lower), (upper_level, upper) in pairwise(ordered))


def _anchor_names(anchors: dict) -> str:
    """'the sacrum and the lowest ribs', ... for the anchors' rules (assign_levels)."""
    names = {"sacrum": "the sacrum", "lowest rib": "the lowest ribs", "highest rib": "the highest ribs"}
    said = [next(name for key, name in names.items() if rule.startswith(key)) for rule in anchors]
    return ", ".join(said[:-1]) + " and " + said[-1] if len(said) > 1 else said[0]


def _not_clearly_rib_free(body: np.ndarray, classes: np.ndarray, spacing, posterior: int, hu: np.ndarray | None,
                          where: str, anchor: str, stub_hint: str, dense_example: str = "") -> str | None:
    """Why the rib-free body next to the rib-bearing ones (`where`: "below the lowest", "above the highest") does
    not make `anchor` decisive, or None: denser than bone (cement hides a body's ribs from the network), a stub of
    rib beside it (`stub_hint` says what it may be), or the place of its rib heads out of view (_rib_heads_in_view).
    The one check of the T12 and the T1 rules."""
    if hu is not None and (dense := share_denser_than_bone(body, hu)) >= DENSE_BODY_SHARE:
        return (f"{100 * dense:.0f} % of the body {where} rib-bearing one is denser than bone (cement or a sclerotic "
                f"lesion): the network may not see the ribs beside it, so {anchor} do not fix the levels{dense_example}")
    if (stub := _rib_ml(body, classes, spacing, posterior)) >= RIB_FREE_ML:
        return (f"the body {where} rib-bearing one shows {stub:.2f} mL of rib beside its back ({stub_hint}): it is "
                f"not clearly rib-free, so {anchor} do not fix the levels")
    if not _rib_heads_in_view(body, classes.shape, spacing, posterior):
        return (f"the body {where} rib-bearing one is cut by the field of view (beside or behind it, or at the "
                f"scan's end): whether it carries ribs cannot be seen, so {anchor} do not fix the levels")
    return None


MAX_CERVICAL = 7  # more rib-free bodies above the highest rib-bearing one: ribs were missed higher up


def _first_thoracic(bodies: list[np.ndarray], highest: int, classes: np.ndarray, spacing, posterior: int,
                    run_of: list[int], hu: np.ndarray | None, notes: list[str]) -> int | None:
    """The position of T1 among the bodies, or None (with a note where the ribs' upper end is in view but not
    decisive): T1 is the highest rib-bearing vertebra (the first rib articulates with T1 alone) when the body above
    it is in view, found with no vertebra missed between them, clearly rib-free (C7), with the place beside and
    behind it where rib heads would be in view, and no denser than bone (cement hides ribs from the network). The
    mirror of the lowest rib-bearing vertebra's rule (T12), but a check only (assign_levels): a cervical rib (under
    1 % of people) or the network's rib class on C7's long transverse process makes C7 the highest rib-bearing body.
    On a chest CT whose range holds both ends of the ribs, a vertebra lost between them without a gap (a crushed
    body the network splits between its neighbours, or two found as one) leaves the levels undetermined instead of
    naming every level above it one too low."""
    above = highest + 1
    if above >= len(bodies):
        return None  # nothing above the highest ribs in view: the usual abdominal, cardiac or chest range
    if len(bodies) - above > MAX_CERVICAL:
        notes.append(f"{len(bodies) - above} bodies without ribs lie above the highest rib-bearing one, more than the "
                     "cervical spine has: ribs were missed, so the highest ribs do not fix the levels")
    elif run_of[above] != run_of[highest]:
        notes.append("a vertebra between the highest rib-bearing body and the rib-free one above it was not found: "
                     "the highest ribs do not fix the levels")
    elif (doubt := _not_clearly_rib_free(bodies[above], classes, spacing, posterior, hu, "above the highest",
                                         "the highest ribs", "a cervical rib, or C7's transverse process?")):
        notes.append(doubt)
    else:
        return highest
    return None


DISC_SHARE = 0.3  # a disc is about 0.2-0.4 of a body's height (thoracic to lumbar)


def vertebrae_with_room(space: float, height: float) -> int:
    """How many vertebrae fill `space` between two found bodies' facing end plates, for bodies `height` high (the
    same unit): n bodies and the n + 1 discs round them take n + (n + 1) DISC_SHARE heights (1.6 for one, 2.9 for
    two), and the nearest n is taken: one up to 2.25 heights. Bodies the network finds short widen a space by half
    a body at most, which leaves one missed vertebra counted as one. The one room model of the missed-body filler
    and of the anchors' count across a gap."""
    return int(round((space / height - DISC_SHARE) / (1 + DISC_SHARE)))


def _missed_in(bodies: list[np.ndarray], spacing, run_of: list[int], lower: int, upper: int) -> int:
    """How many vertebrae were missed between bodies `lower` and `upper` (positions): at each break between runs,
    the vertebrae with room between the facing end plates (at least one), measured along the spine as the
    missed-body filler measures them (_along_the_spine): along the slices, the leaning thoracic spine's end plates
    overlap, and two missed bodies there left room for one."""
    _, spaces, heights = _along_the_spine(bodies, spacing)
    height = float(np.median(heights))
    return sum(max(1, vertebrae_with_room(spaces[n][0], height))
               for n in range(lower, upper) if run_of[n + 1] != run_of[n])


def _named(bodies, starts: dict[int, int], rule: str, notes: list, run_of: list | None = None) -> Naming:
    """Levels counted up from LEVELS[start] for body 0 in each anchored run (run -> start); the others V-named."""
    run_of = run_of or [0] * len(bodies)
    levels, unnamed = {}, []  # inferior first, as the bodies
    for n, mask in enumerate(bodies):
        index = starts.get(run_of[n], -1) - n
        if run_of[n] in starts and 0 <= index < len(LEVELS) and LEVELS[index] != "S1":
            levels[LEVELS[index]] = mask
        else:
            levels[UNDETERMINED[n]] = mask
            unnamed.append(n)
    if unnamed:
        notes = notes + [f"{len(unnamed)} bod{'y' if len(unnamed) == 1 else 'ies'} beyond a missed vertebra (or several "
                         "found as one): level not determined"]
    return Naming(levels, rule, not unnamed, notes)


def _unnamed(bodies, why: str, notes: list) -> Naming:
    return Naming({UNDETERMINED[n]: mask for n, mask in enumerate(bodies)},
                  f"level not determined ({why}); bodies named V1, V2, ... from the lowest in view", False, notes)


def on_the_spine(bodies: list[np.ndarray], hu: np.ndarray, spacing, posterior: int,
                 arch: np.ndarray | None = None, disc: np.ndarray | None = None) -> tuple[list, list, list[str]]:
    """(The bodies that can be vertebral bodies, those dropped as several vertebrae merged, one line for each
    dropped): a vertebral body is bone (mean
    >= MIN_BODY_HU), at most MAX_BODY_HEIGHT_MM high, and one vertebra, not several left joined at their discs
    (_several_stacked: taller or larger than its neighbours allow, or holding a disc the network saw, `disc`), near
    the trunk's left-right middle (<= MAX_MIDLINE_MM) and in its back half (centre beyond MIN_DEPTH_SHARE of the
    trunk's front-to-back depth). The xiphoid, sternum and costal cartilage lie in front, ribs, scapulae and
    humeri to the side, the heart in front of the spine. Where the field of view cuts the trunk on a side (a
    cardiac field of view), the middle or the depth cannot be known and that test is not made. A body also needs
    its vertebral arch (`arch`: what the network calls posterior elements) behind it wherever the field of view has
    room for one (_without_arch); where the network sees no arch anywhere, that cannot be judged and is not."""
    kept, several = [], []
    dropped: list[str] = []
    seen_arch = arch if arch is not None and arch.any() else None
    for mask in bodies:
        why = _not_a_body(mask, hu, spacing, posterior) or (
            _without_arch(mask, hu, spacing, posterior, seen_arch) if seen_arch is not None else None)
        if why is None:
            kept.append(mask)
        elif "several vertebrae" in why:
            several.append((mask, why))
        else:
            dropped.append(_dropped(mask, why))
    for n, why in reversed(_several_stacked(kept, spacing, disc)):
        several.append((kept.pop(n), f"{why}, several vertebrae not split at their discs"))
    merged = []
    for mask, why in several:
        parts = split_where_bodies_meet(mask, hu, spacing, _typical_height_mm(kept, spacing))
        if len(parts) > 1 and all(_not_a_body(part, hu, spacing, posterior) is None for part in parts):
            kept += parts
            dropped.append(_dropped(mask, f"{why}; split where its bone shows {len(parts)} bodies meeting") + " as one")
        else:
            merged.append(mask)  # on the spine: the count cannot run through it (assign_levels)
            dropped.append(_dropped(mask, why))
    kept.sort(key=lambda mask: float(np.nonzero(mask.any(axis=(1, 2)))[0].mean()))  # lowest first, as found
    return kept, merged, dropped


# Between two bodies joined as one piece lies their disc: darker than the bone on either side where it is a few
# slices thick, or, where it is thinner than a 2 mm slice, two end plates whose cortex reads brighter than the
# trabecular bone of the bodies they close (a chest CT read as a patient 0.9 times its size: T6 and T5 one 40 mm
# piece, its slices' median 128 and 145 HU in the two bodies' middles, 226 HU where they meet).
SPLIT_CONTRAST_HU = 40.0


def split_where_bodies_meet(piece: np.ndarray, hu: np.ndarray, spacing, body_height_mm: float) -> list[np.ndarray]:
    """A piece of several vertebrae (listed lowest first) split into as many bodies as its height holds bodies of
    `body_height_mm` (its neighbours'), at the slices where its bone shows them meeting (SPLIT_CONTRAST_HU): a disc
    darker than the bone within half a body on either side, or end plates brighter than the darkest bone there.
    Each part is at least 0.6 of a body high; the slice where they meet goes to neither. [piece] when no such
    slices are found: it stays several vertebrae."""
    from .vertebrae import body_slices

    span = body_slices(piece)
    count = int(round((span.stop - span.start) * spacing[2] / body_height_mm))
    if count < 2:
        return [piece]
    profile = np.array([float(np.median(hu[k][piece[k]])) for k in range(span.start, span.stop)])
    shortest = max(2, int(round(0.6 * body_height_mm / spacing[2])))
    window = max(2, int(round(0.5 * body_height_mm / spacing[2])))
    cuts: list[int] = []
    for _ in range(count - 1):
        scores = np.full(profile.size, -np.inf)
        for at in range(shortest, profile.size - shortest):
            if any(abs(at - cut) <= shortest for cut in cuts):
                continue
            before, after = profile[max(0, at - window):at], profile[at + 1:at + 1 + window]
            scores[at] = max(profile[at] - max(before.min(), after.min()),
                             min(np.median(before), np.median(after)) - profile[at])
        if scores.max() < SPLIT_CONTRAST_HU:
            return [piece]
        best = np.flatnonzero(scores == scores.max())
        cuts.append(int(best[len(best) // 2]))  # the middle of a run of equally good slices (a disc's)
    edges = [span.start - 1, *sorted(span.start + cut for cut in cuts), span.stop]
    parts = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        part = np.zeros(piece.shape, bool)
        part[low + 1:high] = piece[low + 1:high]
        parts.append(part)
    return parts


def _typical_height_mm(bodies: list[np.ndarray], spacing) -> float:
    """The median height of the bodies kept (a thoracic body's 20 mm when none is)."""
    from .vertebrae import body_slices

    heights = [(span.stop - span.start) * spacing[2] for span in map(body_slices, bodies)]
    return float(np.median(heights)) if heights else 20.0


def _dropped(mask: np.ndarray, why: str) -> str:
    k = int(round(np.nonzero(mask)[0].mean()))
    return f"a body found at slice {k} of the 2 mm grid was dropped: {why}; not a vertebral body"


def _several_stacked(bodies: list[np.ndarray], spacing, disc: np.ndarray | None = None) -> list[tuple[int, str]]:
    """(index, why) of each body, listed lowest first, that is several vertebrae and their discs not split:
    - over STACKED_HEIGHT_RATIO times as high as the taller of its two neighbours, or STACKED_VOLUME_RATIO times
      the larger one's volume. Neighbouring bodies differ in height by a few mm and in volume by a tenth or so, and
      two bodies with a disc are over twice one; MAX_BODY_HEIGHT_MM, set by the tallest lumbar bodies, lets a small
      patient's merged thoracic pair through (a chest CT read as a patient 0.9 times its size had T6 and T5 as one
      38 mm body beside 20 mm ones, and the four bodies above were named one level too low). A crushed body's rest
      joined to its neighbour may add little height but much bone (the chest CT with 12 mm taken out of T10: T11
      and T10's rest one 30 mm, 24 mL piece beside 32 mm and 16 mL T12, every level above named one too low). Judged
      only between two neighbours the scan's ends do not cut: a neighbour the scan range cuts is short without
      reaching the scan's last slice on the network's grid (on a 110 mm slab of the abdominal CT, L5 beside the cut
      L4 was taken for two).
    - holding DISC_INSIDE_MM2 of what the network calls disc with its own bone above and below it
      (_disc_held_inside): the chest CT with 12 mm taken out of T9 had T10 and T9's lower rest one piece, with T9's
      lower disc inside it, and every level above was named one too low. Not judged on a piece the scan's end
      cuts: there the network may join a whole body to its cut neighbour's sliver across their disc (COCA 4 in a
      round field of view, and 3 of 42 short scan ranges, lost a body to it).
    Set apart, such a piece stops the count (assign_levels): the levels beyond it are not determined. On the real CTs
    as stored no body comes near either limit (1.11 times the larger neighbour's volume, 8 mm2 of disc); beside a
    crushed body the volume rule can set apart a whole neighbour (the chest CT with T11 crushed: T12 1.45 times L1,
    which the network finds only in part), and the levels there are then not determined rather than named."""
    from .vertebrae import body_slices

    heights = [(span.stop - span.start) * spacing[2] for span in map(body_slices, bodies)]
    volumes = [float(mask.sum()) * float(np.prod(spacing)) / 1000.0 for mask in bodies]
    whole = [not cut_by_scan_range(mask) for mask in bodies]
    found = []
    for n, (height, volume) in enumerate(zip(heights, volumes, strict=True)):
        beside = [m for m in (n - 1, n + 1) if 0 <= m < len(bodies) and whole[m]]
        taller = max((heights[m] for m in beside), default=np.inf)
        larger = max((volumes[m] for m in beside), default=np.inf)
        if len(beside) == 2 and height > STACKED_HEIGHT_RATIO * taller:
            found.append((n, f"{height:.0f} mm high beside a {taller:.0f} mm one"))
        elif len(beside) == 2 and volume > STACKED_VOLUME_RATIO * larger:
            found.append((n, f"{volume:.1f} mL beside a {larger:.1f} mL one"))
        elif disc is not None and whole[n] and (held := _disc_held_inside(bodies[n], disc, spacing)) >= DISC_INSIDE_MM2:
            found.append((n, f"{held:.0f} mm2 of disc inside it, its bone above and below"))
    return found


def _disc_held_inside(body: np.ndarray, disc: np.ndarray, spacing) -> float:
    """mm2 of the network's disc voxels with at least 4 mm of the body's own bone in the 6 mm above them and in the
    6 mm below, in their column: a disc inside one piece. A tilted end plate puts a voxel or two of bone on the far
    side of its disc in a column, not 4 mm. Read in the body's box: a disc voxel outside it has none of the body's
    bone above and below it."""
    box = bounding_box(body)
    body, disc = body[box], disc[box]
    need = max(1, int(round(4.0 / spacing[2])))
    reach = need + 1
    bone = np.concatenate([np.zeros((1, *body.shape[1:]), np.int32), np.cumsum(body, axis=0, dtype=np.int32)])
    k = np.arange(body.shape[0])
    above = bone[np.minimum(k + 1 + reach, body.shape[0])] - bone[k + 1]
    below = bone[k] - bone[np.maximum(k - reach, 0)]
    held = disc & ~body & (above >= need) & (below >= need)
    return float(held.sum()) * spacing[0] * spacing[1]


def fill_missed_bodies(bodies: list[np.ndarray], hu: np.ndarray, spacing, posterior: int,
                       merged: Sequence[np.ndarray] = (), arch: np.ndarray | None = None) -> tuple[list, list[str]]:
    """(the bodies with each one the network missed between two found ones grown in, one line for each). The spine
    is a column of bodies and discs: one body is missing between two found ones when the space between their facing
    end plates holds a body (_space_holds_a_body: more than a disc, or MIN_MISSED_SHARE of the found bodies' median
    height between bodies not found in part) with room for one body at most (vertebrae_with_room).
    The network's pieces reach into the discs (the real CTs' discs read -5 to 4 mm between them), so a missed upper
    thoracic body leaves 15-20 mm: no absolute disc height (a lumbar disc's 16 mm) separates the two. Measured along
    the spine (_along_the_spine), not along the slices: the thoracic spine leans 20-40 degrees in its kyphosis, and
    on the real chest CT the slices between T6 and T4 with T5 missed spanned 6 mm. Between end plates, not centres:
    at a scan's ends bodies are cut, and their centres' steps say nothing of a gap (a long step beside a body found
    in part grew the rest of it as one body too many on a short real slab). The body is grown in the shape of its
    neighbours (_like_the_neighbours) from the bone there not already taken nor the vertebral arch (`arch`, what the
    network calls posterior elements), and kept when it is a body by the same tests as the network's (on_the_spine)
    and at least MIN_FILLED_ML. The median, not the neighbours' height: a neighbour found over its disc into the next
    body (a chest CT read as a patient 0.8 times its size) made a gap where three were missed look like room for one,
    and the body grown there read 141 against 72-81 mg/cm3 on L2-L1. Not between bodies the field of view cuts. A
    larger space (two or more missing), or one holding a piece of several vertebrae not split at their discs
    (`merged`), is left as it is, and the count stops there (assign_levels)."""
    if len(bodies) < 2:
        return bodies, []
    not_to_take = np.logical_or.reduce(bodies) | (arch if arch is not None else False)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    between = [np.nonzero(piece)[0].mean() * spacing[2] for piece in merged]
    centres, spaces, heights = _along_the_spine(bodies, spacing)
    height = float(np.median(heights))
    holds_a_body = _space_holds_a_body(bodies, spaces, heights)
    filled, notes = list(bodies), []
    for n, (lower, upper) in enumerate(pairwise(bodies)):
        space, middle = spaces[n]
        if (not holds_a_body[n] or vertebrae_with_room(space, height) > 1
                or any(centres[n][2] < c < centres[n + 1][2] for c in between)
                or _at_the_edge(lower) or _at_the_edge(upper)):
            continue
        grown = _like_the_neighbours(lower, upper, centres[n], centres[n + 1], middle, hu, spacing, not_to_take)
        if grown.sum() * voxel_ml < MIN_FILLED_ML or _not_a_body(grown, hu, spacing, posterior) is not None:
            continue
        filled.append(grown)
        notes.append(f"a body the network missed, in {space:.0f} mm between two found bodies' end plates along the "
                     f"spine, was grown from the bone there in their shape ({grown.sum() * voxel_ml:.0f} mL)")
    return sorted(filled, key=lambda mask: np.nonzero(mask)[0].mean()), notes


MIN_MISSED_SHARE = 0.6  # a missed body leaves most of its height between its neighbours' pieces; a disc under 0.2
WHOLE_SHARE = 0.75  # a body found whole: the real CTs' bodies read 0.8-1.5 times the median height along the spine


def _along_the_spine(bodies: list[np.ndarray], spacing) -> tuple[list[np.ndarray], list[tuple[float, np.ndarray]],
                                                                   list[float]]:
    """(each body's centre (x, y, z in mm), for each two in a row the space between their facing end plates and the
    point on the line through their centres in the middle of that space, each body's height): lengths along the
    spine, the line through the neighbours' centres (morphometry.spine_axis), in the bodies' middle (within
    CENTRAL_COLUMN_MM of that line). The middle, not the whole body: the line through two centres leans 5-15 degrees
    from a body's own axis in the thoracic curve, and a 30-40 mm deep body's front and back corners then reach 3-5 mm
    beyond its end plates; the whole bodies' extents left 8-22 mm between T6 and T4 of the real chest CT with T5
    missed (a disc's worth)."""
    from .morphometry import spine_axis

    points = [_voxels_mm(mask, spacing) for mask in bodies]
    centres = [p.mean(0) for p in points]

    def extent(p: np.ndarray, centre: np.ndarray, axis: np.ndarray) -> tuple[float, float]:
        along = (p - centre) @ axis
        off = np.linalg.norm((p - centre) - along[:, None] * axis, axis=1)
        central = along[off <= CENTRAL_COLUMN_MM] if (off <= CENTRAL_COLUMN_MM).any() else along
        return float(central.min() + centre @ axis), float(central.max() + centre @ axis)

    spaces = []
    for (lower, upper), (below, above) in zip(pairwise(points), pairwise(centres), strict=True):
        axis = spine_axis(below, above, below)
        top, bottom = extent(lower, below, axis)[1], extent(upper, above, axis)[0]
        spaces.append((bottom - top, below + axis * ((top + bottom) / 2 - float(below @ axis))))
    heights = []
    for n, p in enumerate(points):
        axis = spine_axis(centres[n], centres[min(n + 1, len(centres) - 1)], centres[max(n - 1, 0)])
        bottom, top = extent(p, centres[n], axis)
        heights.append(top - bottom)
    return centres, spaces, heights


def _voxels_mm(mask: np.ndarray, spacing) -> np.ndarray:
    """The mask's voxels as (x, y, z) in mm from the array's corner, found in its bounding box (np.nonzero over the
    whole 2 mm grid cost a tenth of a second a body, and the spine is measured several times a scan)."""
    box = bounding_box(mask)
    corner = np.array([piece.start for piece in box][::-1], float)
    return (np.stack(np.nonzero(mask[box])[::-1], 1) + corner) * np.asarray(spacing, float)


CENTRAL_COLUMN_MM = 8.0  # a body's middle, well inside the smallest (upper thoracic, ~25 mm across)


def _like_the_neighbours(lower: np.ndarray, upper: np.ndarray, lower_centre, upper_centre, middle, hu: np.ndarray,
                         spacing, not_to_take: np.ndarray) -> np.ndarray:
    """The bone of a missed body in the shape of the two it lies between: each moved to the middle of the space
    between them (in whole voxels), together and a voxel wider, then the voxels there of at least 0.4 times the
    neighbours' median HU (osteoporotic bone near disc attenuation stays in; the shape keeps soft tissue out), not in
    `not_to_take`, closed and hole-filled. Bodies stack, and a missed one is shaped and leans like the bodies above and
    below: grown freely inside a 25 mm ellipsoid on the slices' axis it took its pedicles and arch (a chest CT rolled
    10 degrees: the grown L2's ROI sat at the body's back and read 192 HU against 73 on its label)."""
    shape = np.zeros_like(lower)
    for mask, centre in ((lower, lower_centre), (upper, upper_centre)):
        by = np.round((np.asarray(middle) - centre) / np.asarray(spacing, float)).astype(int)[::-1]  # slice, row, column
        shape |= ndimage.shift(mask.astype(np.uint8), by, order=0, mode="constant", cval=0) > 0
    shape = ndimage.binary_dilation(shape)
    low = max(0.4 * float(np.median(hu[lower | upper])), MIN_GROWN_HU)
    bone = largest_component(shape & (hu >= low) & (hu <= MAX_GROWN_HU) & ~not_to_take)
    return fill_holes_in_plane(ndimage.binary_closing(bone, iterations=2) & shape & ~not_to_take)


def _at_the_edge(mask: np.ndarray) -> bool:
    """Whether a body reaches the image's edge in plane: the field of view cuts it, and a body grown between two
    such has no back wall to stop it nor its trabecular ROI the body's whole depth to sit in (on the chest CT cut
    25 mm behind the bodies' front a grown L2 read 13 HU above its mask)."""
    planes = mask.any(axis=0)
    near = EDGE_VOXELS  # on the 2 mm grid a cut body's last voxel or two at the edge can read background
    return bool(planes[:near].any() or planes[-near:].any() or planes[:, :near].any() or planes[:, -near:].any())


MIN_FILLED_ML = 5.0  # the smallest upper thoracic bodies are 5-8 mL
MIN_GROWN_HU = 20.0  # ... and its bone at least this (vertebrae.grow_from_seed's floor)
MAX_GROWN_HU = 2000.0  # denser is metal or contrast, not a body's bone
EDGE_VOXELS = 3  # within this many voxels of the image's edge in plane: at the edge


def _not_a_body(mask: np.ndarray, hu: np.ndarray, spacing, posterior: int) -> str | None:
    kk, jj, ii = np.nonzero(mask)
    mean_hu = float(hu[mask].mean())
    if mean_hu < MIN_BODY_HU:
        return f"mean {mean_hu:.0f} HU, not bone"
    height = (kk.max() - kk.min() + 1) * spacing[2]
    if height > MAX_BODY_HEIGHT_MM:
        return f"{height:.0f} mm high, several vertebrae not split at their discs"
    trunk = _trunk(hu[int(round(kk.mean()))], spacing[0])
    rows, cols = np.nonzero(trunk)
    if not rows.size:
        return None
    if cols.min() > 0 and cols.max() < trunk.shape[1] - 1:
        offset = abs(ii.mean() - (cols.min() + cols.max()) / 2) * spacing[0]
        if offset > MAX_MIDLINE_MM:
            return f"{offset:.0f} mm beside the trunk's middle"
    if rows.min() > 0 and rows.max() < trunk.shape[0] - 1:
        depth = (jj.mean() - rows.min()) / max(rows.max() - rows.min(), 1)
        depth = depth if posterior > 0 else 1.0 - depth
        if depth < MIN_DEPTH_SHARE:
            return f"in the front of the trunk ({100 * depth:.0f} % of its depth)"
    return None


def _without_arch(mask: np.ndarray, hu: np.ndarray, spacing, posterior: int, arch: np.ndarray) -> str | None:
    """Why a body is not a vertebral body when its vertebral arch should be in view and is not: the pedicles leave
    the back of every vertebral body, so with ARCH_ROOM_MM of field of view behind it, some of the arch lies within
    ARCH_GAP_MM of it. On a CTA cropped around the heart the network took the iodine-filled left atrium (500 HU) for a
    body: the trunk is cut on every side there, so neither the midline nor the depth test could be made."""
    if _near(mask, arch, spacing, ARCH_GAP_MM):
        return None
    kk, jj, ii = np.nonzero(mask)
    column = hu[int(round(kk.mean())), :, int(round(ii.mean()))]
    back = jj.max() if posterior > 0 else jj.min()
    behind = column[back + 1:] if posterior > 0 else column[:back][::-1]
    outside = np.flatnonzero(behind <= NO_DATA_HU)  # the reconstruction circle's padding: not in view
    room = (outside[0] if outside.size else behind.size) * spacing[1]
    if room < ARCH_ROOM_MM:
        return None  # the field of view ends at the body's back (a cardiac field of view): the arch may be cut away
    return f"no vertebral arch within {ARCH_GAP_MM:g} mm of it, with {room:.0f} mm of the field of view behind it"


def _near(mask: np.ndarray, other: np.ndarray, spacing, within_mm: float) -> bool:
    """Whether some voxel of `other` lies within `within_mm` of `mask` (looked for in the mask's box widened by that
    much: a distance transform of a whole chest CT's grid per body would cost seconds and hundreds of MB)."""
    pad = [int(np.ceil(within_mm / s)) for s in spacing[::-1]]
    box = tuple(slice(max(int(ax.min()) - p, 0), int(ax.max()) + p + 1) for ax, p in zip(np.nonzero(mask), pad, strict=True))
    if not other[box].any():
        return False
    return bool(ndimage.distance_transform_edt(~other[box], sampling=spacing[::-1])[mask[box]].min() <= within_mm)


MAX_BODY_HEIGHT_MM = 45.0  # the tallest lumbar bodies are 30-35 mm
# The real CTs' bodies are at most 1.36 times their taller neighbour (T1 beside T2, 30 against 22 mm). A crushed
# body the network joins to the one above reads less than two: the chest CT with 8 mm taken out of T8 had T9 and
# T8 as one 38 mm body, 1.46 times T10 (26 mm), and T7 above it was named T8. Taken for one vertebra, such a piece
# names every level above it wrong; taken for several, the count stops there and the levels above are not
# determined, so the limit leans to the second.
STACKED_HEIGHT_RATIO = 1.4
# Two vertebrae are twice one's bone; neighbours differ by a tenth or so (the real CTs' bodies as stored: at most
# 1.11 times the larger neighbour's volume). A crushed body's rest on its neighbour adds a third to a half (T11 with
# T10's rest: 1.5 times T12); a body beside a crushed one and one the network finds in part can reach as much (T12
# beside a crushed T11: 1.45 times L1), and its levels are then not determined.
STACKED_VOLUME_RATIO = 1.4
# A disc inside one piece: T10 with T9's lower rest held 168 and 300 mm2 of it (T9 crushed by 12 mm). The bodies of
# the real CTs as stored hold at most 8 mm2 (a tilted end plate's sliver of bone beyond its disc), and crushed ones
# elsewhere up to 96: a sixth of a thoracic disc's area or more is a disc.
DISC_INSIDE_MM2 = 150.0
MIN_BODY_HU = 60.0        # trabecular bone with its cortex; osteoporotic bodies still read 80 and more
MAX_MIDLINE_MM = 40.0     # vertebral bodies sit on the midline (scoliosis moves them tens of mm at most)
MIN_DEPTH_SHARE = 0.5     # thoracic and lumbar bodies' centres lie 55-80 % of the way from front to back
ARCH_ROOM_MM = 20.0       # the pedicles run 10-20 mm back from the body before the laminae turn in
ARCH_GAP_MM = 10.0        # every real body the network found on the CTs here has its arch within 2 mm of it
THIN_ATTACHMENT_MM = 4.0  # opening radius: the table's shell or a blanket (1-4 mm thick) goes; the trunk, cut by a
                          # field of view or not, is tens of mm thick wherever it meets the image's edge


def _trunk(hu_slice: np.ndarray, pixel_mm: float) -> np.ndarray:
    """The largest piece of body (> -500 HU) in a slice, without what only a thin strand joins to it: arms are
    separate pieces, and the table's shell, a blanket or a cable that touches the skin and runs to the image's edge
    would otherwise make the trunk look cut by the field of view, and the midline and depth tests would not be made
    (on a real abdominal CT's pelvis the table did, and an iliac wing was measured as a vertebral body)."""
    return largest_component(open_in_plane(hu_slice > -500.0, THIN_ATTACHMENT_MM / pixel_mm))


def _has_ribs(body: np.ndarray, classes: np.ndarray, spacing, posterior: int = 1) -> bool:
    return _rib_ml(body, classes, spacing, posterior) >= RIB_ML


def _rib_ml(body: np.ndarray, classes: np.ndarray, spacing, posterior: int = 1) -> float:
    """mL of rib voxels beside the body's back half and behind it (its slices, within 30 mm of its sides, from its
    centre to 40 mm behind its back): rib heads and necks run there to the transverse processes, while the sloping
    shafts of higher ribs reach lower slices only far laterally, and the costal cartilages lie at the front of
    the chest (on a cardiac field of view they are often all the 'rib' in view)."""
    ks, js, is_ = np.nonzero(body)
    half_width = (is_.max() - is_.min()) / 2 * spacing[0]
    x = np.abs(np.arange(classes.shape[2]) - is_.mean()) * spacing[0]
    depth = (np.arange(classes.shape[1]) - js.mean()) * posterior * spacing[1]   # mm behind the body's centre
    back = depth[js].max()
    band = classes[ks.min():ks.max() + 1] == 4
    band &= ((depth >= 0) & (depth <= back + 40.0))[None, :, None] & (x <= half_width + 30.0)[None, None, :]
    return band.sum() * float(np.prod(spacing)) / 1000.0


def _rib_heads_in_view(body: np.ndarray, shape, spacing, posterior: int) -> bool:
    """Whether a rib-free body could have shown ribs: the body is whole in z (not cut by the scan's end) and the
    field of view holds the place where rib heads articulate, 15 mm out from its sides and 10 mm behind its back.
    A cardiac field of view centred on the heart often cuts there, and ribs it cannot see are not absent."""
    if cut_by_scan_range(body):
        return False
    _, js, is_ = np.nonzero(body)
    reach_i, reach_j = 15.0 / spacing[0], 10.0 / spacing[1]
    back = js.max() + reach_j if posterior > 0 else js.min() - reach_j
    return is_.min() - reach_i >= 0 and is_.max() + reach_i <= shape[2] - 1 and 0 <= back <= shape[1] - 1
