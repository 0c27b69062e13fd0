"""Artery assignment of calcium candidates from where they lie on the heart (replaces the phantom-trained network
on the automatic path: on the three real COCA scans that network called every coronary lesion "not coronary").

Candidates are 3D-connected (26) regions of voxels at or above the calcium threshold, found on the whole scan.
- Outside the heart search region (anatomy.find_heart): "outside heart", its own segment, never scored.
- Bone-sized (>= 3000 mm3) or running out of the region (ribs, sternum, costal cartilage, spine continue outside
  it; a coronary plaque lies on the heart): "not coronary".
- Otherwise the artery follows coronary anatomy, in millimetres from the heart region's centre in patient axes
  (x to the patient's left, y posterior): the RCA runs in the right atrioventricular groove, so a lesion right of
  the centre is RCA; on the left, the circumflex runs in the posterior (left atrioventricular) groove and the
  LAD in the anterior interventricular groove, so a left lesion behind the centre's front plane is LCX and one in
  front of it LAD. The left main (about 1 cm long) cannot be told from the proximal LAD by position alone and is
  scored with the LAD (as orCaScore does); lesions near the top of the left system are flagged for review.
A lesion within REVIEW_MARGIN_MM of a boundary is flagged "review" in the JSON, the table and the report.

The boundaries come from coronary anatomy and were checked (in-sample) on the three COCA scans in shared/data:
they are not fitted weights, and a reader should review every flagged lesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

LM, LAD, LCX, RCA, NOT_CORONARY, OUTSIDE_HEART = 1, 2, 3, 4, 5, 6
BONE_VOLUME_MM3 = 3000.0          # no coronary lesion is this large; spine, ribs and sternum are
RCA_RIGHT_OF_CENTRE_MM = 6.0      # x offset below -6 mm (patient's right): RCA
LCX_BEHIND_MM = -5.0              # left system, y offset above -5 mm (posterior): LCX ...
LCX_LEFT_OF_CENTRE_MM = 15.0      # ... when also at least 15 mm to the left (the circumflex wraps the left side)
REVIEW_MARGIN_MM = 5.0
LEFT_SYSTEM_TOP_MM = 10.0         # within 10 mm of the highest left-system lesion and near the centre: LM?


@dataclass
class Assignment:
    labels: np.ndarray        # uint8 [k, j, i]: 1-4 arteries, 5 not coronary, 6 outside heart
    per_candidate: list[dict]  # one entry per candidate: label, reason, review flag, offset from the centre


def candidate_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(mask, structure=np.ones((3, 3, 3), bool))


def artery_from_offset(offset_lps: np.ndarray) -> tuple[int, bool]:
    """(artery 2-4, review?) of a lesion at `offset_lps` mm from the heart centre (x left, y posterior)."""
    x, y = float(offset_lps[0]), float(offset_lps[1])
    if x < -RCA_RIGHT_OF_CENTRE_MM:
        return RCA, x > -RCA_RIGHT_OF_CENTRE_MM - REVIEW_MARGIN_MM
    near_right = x < -RCA_RIGHT_OF_CENTRE_MM + REVIEW_MARGIN_MM
    if y > LCX_BEHIND_MM and x > LCX_LEFT_OF_CENTRE_MM:
        near = y < LCX_BEHIND_MM + REVIEW_MARGIN_MM or x < LCX_LEFT_OF_CENTRE_MM + REVIEW_MARGIN_MM
        return LCX, near
    near_lcx = (y > LCX_BEHIND_MM - REVIEW_MARGIN_MM and x > LCX_LEFT_OF_CENTRE_MM - REVIEW_MARGIN_MM)
    return LAD, near_right or near_lcx


def assign(candidate_mask: np.ndarray, heart_region: np.ndarray, centre_lps: np.ndarray, voxel_to_lps,
           spacing) -> Assignment:
    """Label every candidate voxel. `voxel_to_lps(ijk (n, 3)) -> (n, 3)` maps voxel indices to LPS mm."""
    components, count = candidate_regions(candidate_mask)
    labels = np.zeros(candidate_mask.shape, np.uint8)
    voxel_mm3 = float(np.prod(spacing))
    entries = []
    boxes = ndimage.find_objects(components)
    for index, box in enumerate(boxes, start=1):
        inside_box = components[box] == index
        in_heart = heart_region[box][inside_box]
        volume = float(inside_box.sum()) * voxel_mm3
        kk, jj, ii = np.nonzero(inside_box)
        centroid = np.array([ii.mean() + box[2].start, jj.mean() + box[1].start, kk.mean() + box[0].start])
        offset = voxel_to_lps(centroid[None])[0] - centre_lps
        if not in_heart.any():
            label, reason, review = OUTSIDE_HEART, "outside the heart search region", False
        elif volume >= BONE_VOLUME_MM3:
            label, reason, review = NOT_CORONARY, f"bone-sized ({volume:.0f} mm3)", False
        elif not in_heart.all():
            label, reason, review = NOT_CORONARY, "runs out of the heart search region (chest wall, spine)", False
        else:
            label, review = artery_from_offset(offset)
            reason = "position on the heart"
        labels[box][inside_box] = label
        entries.append({"candidate": index, "label": label, "reason": reason, "review": bool(review),
                        "volume_mm3": volume, "offset_lps_mm": offset})
    _flag_left_main(entries)
    return Assignment(labels, entries)


def _flag_left_main(entries) -> None:
    """Left-system lesions at the top of the left system and near the centre line may be the left main."""
    left = [e for e in entries if e["label"] in (LAD, LCX)]
    if not left:
        return
    top = max(e["offset_lps_mm"][2] for e in left)
    for entry in left:
        x, z = entry["offset_lps_mm"][0], entry["offset_lps_mm"][2]
        if z >= top - LEFT_SYSTEM_TOP_MM and x < LCX_LEFT_OF_CENTRE_MM:
            entry["review"] = True
            entry["reason"] += "; may be the left main"
