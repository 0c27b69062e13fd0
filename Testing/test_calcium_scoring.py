"""Calcium scoring engine against the test vectors of docs/REFERENCE.md section 1 and voxel-built phantoms with exact answers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardioquant.calcium import qrm
from cardioquant.calcium.scoring import (
    ScoringSettings,
    cac_drs,
    calibration_factor,
    calibration_factor_from_rois,
    classic_category,
    kvp_boundaries,
    risk,
    score,
)

RAW = dict(increment_scaling=False)


def volume_with(blocks, shape=(6, 40, 40), background=0.0):
    """blocks: list of (k-slice, j-slice, i-slice, HU, artery label)."""
    hu = np.full(shape, background, np.float32)
    labels = np.zeros(shape, np.uint8)
    for ks, js, is_, value, artery in blocks:
        hu[ks, js, is_] = value
        labels[ks, js, is_] = artery
    return hu, labels


# --- test vectors (docs/REFERENCE.md section 1) ---------------------------------------------------------------------------

def test_vector_1_score_16_volume_2_mass_06():
    hu, labels = volume_with([(slice(1, 3), slice(5, 9), slice(5, 7), 400, 2)])
    result = score(hu, labels, (0.5, 0.5, 0.5), ScoringSettings(mass_calibration=0.00075, **RAW))
    assert result.total["agatston"] == pytest.approx(16.0)
    assert result.total["volume_mm3"] == pytest.approx(2.0)
    assert result.total["mass_mg"] == pytest.approx(0.6)
    assert result.arteries["LAD"]["agatston"] == pytest.approx(16.0) and result.arteries["LAD"]["lesions"] == 1


@pytest.mark.parametrize(("hu_value", "kvp"), [(260, 135), (280, 120), (310, 100), (400, 80)])
def test_vector_2_same_score_12_across_kvp(hu_value, kvp):
    hu, labels = volume_with([(slice(1, 3), slice(5, 8), slice(5, 9), hu_value, 4)])
    result = score(hu, labels, (0.5, 0.5, 3.0), ScoringSettings(kvp=kvp, **RAW))
    assert result.total["agatston"] == pytest.approx(12.0)


@pytest.mark.parametrize(("value", "weight"), [(129, 0), (130, 1), (199, 1), (200, 2), (299, 2), (300, 3), (399, 3), (400, 4)])
def test_vector_3_weight_boundaries_120kvp(value, weight):
    hu, labels = volume_with([(slice(2, 3), slice(5, 7), slice(5, 7), value, 3)])  # 4 pixels of 1 mm^2
    result = score(hu, labels, (1.0, 1.0, 3.0), ScoringSettings(**RAW))
    assert result.total["agatston"] == pytest.approx(4.0 * weight)


@pytest.mark.parametrize(("rule", "pixels_needed"), [(1.0, 7), (0.5, 4)])
def test_vector_4_minimum_area_pixel_counts(rule, pixels_needed):
    pixel = 0.39  # 0.1521 mm^2
    for n in (pixels_needed - 1, pixels_needed):
        hu, labels = volume_with([(slice(2, 3), slice(5, 6), slice(5, 5 + n), 450, 2)])
        result = score(hu, labels, (pixel, pixel, 3.0), ScoringSettings(min_area_mm2=rule, **RAW))
        expected = n * pixel * pixel * 4 if n >= pixels_needed else 0.0
        assert result.total["agatston"] == pytest.approx(expected)


# --- voxel-built phantoms with exact answers ----------------------------------------------------------

def test_diagonal_pixels_join_with_8_connectivity_only():
    # Two 2x2 squares touching at a corner, 1 mm^2 pixels, 250 HU (weight 2), min area 5 mm^2.
    hu, labels = volume_with([(slice(2, 3), slice(5, 7), slice(5, 7), 250, 1), (slice(2, 3), slice(7, 9), slice(7, 9), 250, 1)])
    s8 = ScoringSettings(min_area_mm2=5.0, connectivity="2d8", **RAW)
    s4 = ScoringSettings(min_area_mm2=5.0, connectivity="2d4", **RAW)
    assert score(hu, labels, (1, 1, 3), s8).total["agatston"] == pytest.approx(8 * 2)
    assert score(hu, labels, (1, 1, 3), s4).total["agatston"] == 0.0


def test_3d_connectivity_scores_each_slice_with_its_own_peak():
    # A column over 3 slices with peaks 250 / 350 / 450 HU: 4 pixels of 0.25 mm^2 each slice.
    hu, labels = volume_with([(slice(1, 2), slice(5, 7), slice(5, 7), 250, 2), (slice(2, 3), slice(5, 7), slice(5, 7), 350, 2),
                              (slice(3, 4), slice(5, 7), slice(5, 7), 450, 2)])
    expected = 1.0 * (2 + 3 + 4)
    for connectivity in ("2d8", "3d6", "3d26"):
        result = score(hu, labels, (0.5, 0.5, 3.0), ScoringSettings(connectivity=connectivity, **RAW))
        assert result.total["agatston"] == pytest.approx(expected)
        assert result.total["lesions"] == 1  # reported as one 3D lesion either way


def test_3d_region_kept_when_its_largest_slice_passes_area_rule():
    # 1-pixel tail on the slice above a 4-pixel body; 0.5 mm pixels; min area 1 mm^2 = 4 pixels.
    hu, labels = volume_with([(slice(2, 3), slice(5, 7), slice(5, 7), 420, 2), (slice(3, 4), slice(5, 6), slice(5, 6), 420, 2)])
    two_d = score(hu, labels, (0.5, 0.5, 3.0), ScoringSettings(connectivity="2d8", **RAW)).total["agatston"]
    three_d = score(hu, labels, (0.5, 0.5, 3.0), ScoringSettings(connectivity="3d26", **RAW)).total["agatston"]
    assert two_d == pytest.approx(1.0 * 4) and three_d == pytest.approx(1.25 * 4)


@pytest.mark.parametrize(("increment", "factor"), [(3.0, 1.0), (1.5, 0.5), (2.5, 2.5 / 3), (0.75, 0.25)])
def test_slice_increment_scaling(increment, factor):
    hu, labels = volume_with([(slice(1, 3), slice(5, 9), slice(5, 7), 400, 2)])
    result = score(hu, labels, (0.5, 0.5, increment), ScoringSettings())
    assert result.total["agatston"] == pytest.approx(16.0 * factor)
    overlapping = score(hu, labels, (0.5, 0.5, increment), ScoringSettings(slice_increment_mm=1.0))
    assert overlapping.total["agatston"] == pytest.approx(16.0 / 3)  # scored on the increment, not thickness


def test_anisotropic_pixels():
    hu, labels = volume_with([(slice(2, 3), slice(5, 8), slice(5, 9), 310, 4)])  # 12 pixels of 0.4 x 0.7 mm
    result = score(hu, labels, (0.4, 0.7, 3.0), ScoringSettings(**RAW))
    assert result.total["agatston"] == pytest.approx(12 * 0.28 * 3)
    assert result.total["volume_mm3"] == pytest.approx(12 * 0.28 * 3.0)


def test_per_artery_split_and_not_coronary_ignored():
    hu, labels = volume_with([
        (slice(1, 2), slice(2, 6), slice(2, 6), 500, 1),     # LM 16 px
        (slice(1, 2), slice(10, 12), slice(10, 14), 250, 2),  # LAD 8 px
        (slice(3, 4), slice(20, 24), slice(20, 22), 150, 3),  # LCX 8 px
        (slice(4, 5), slice(30, 33), slice(30, 33), 900, 5),  # not coronary
        (slice(4, 5), slice(2, 4), slice(30, 33), 900, 0),    # unassigned
    ])
    result = score(hu, labels, (1, 1, 3), ScoringSettings(**RAW))
    arteries = {k: v["agatston"] for k, v in result.arteries.items()}
    assert arteries == {"LM": 64.0, "LAD": 16.0, "LCX": 8.0, "RCA": 0.0}
    assert result.total["agatston"] == 88.0
    assert risk(result) == {"classic": "11-100", "cac_drs": "A1/N3"}


def test_touching_lesions_of_two_arteries_stay_separate():
    hu, labels = volume_with([(slice(2, 3), slice(5, 7), slice(5, 9), 450, 2)])
    labels[2, 5:7, 7:9] = 3  # right half reassigned to LCX by the user
    result = score(hu, labels, (1, 1, 3), ScoringSettings(**RAW))
    assert result.arteries["LAD"]["agatston"] == 16 and result.arteries["LCX"]["agatston"] == 16


@pytest.mark.parametrize("connectivity", ["2d8", "3d26"])
def test_one_arterys_calcium_joined_only_through_anothers_is_two_lesions(connectivity):
    # LAD | LCX | LAD in a row, 2 x 2 mm each at 450 HU (weight 4): the LAD's two pieces touch only the LCX's.
    hu, labels = volume_with([(slice(2, 3), slice(5, 7), slice(5, 11), 450, 2)])
    labels[2, 5:7, 7:9] = 3
    result = score(hu, labels, (1, 1, 3), ScoringSettings(connectivity=connectivity, **RAW))
    assert result.arteries["LAD"] == {"agatston": 32.0, "volume_mm3": 24.0, "mass_mg": None, "lesions": 2}
    assert result.arteries["LCX"]["agatston"] == 16.0 and result.arteries["LCX"]["lesions"] == 1


def test_the_report_outlines_each_lesion_alone():
    """Three LAD plaques beside each other (a calcified bifurcation) share a thumbnail's field of view: each
    thumbnail outlines its own plaque, every voxel of it and none of its neighbours'."""
    from cardioquant.calcium.report import lesion_voxels

    hu, labels = volume_with([
        (slice(2, 4), slice(5, 9), slice(5, 9), 400, 2),      # 4 x 4 px on two slices: 32 voxels
        (slice(2, 3), slice(5, 8), slice(12, 15), 300, 2),    # 3 x 3 px: 9 voxels
        (slice(2, 3), slice(12, 14), slice(5, 9), 500, 2),    # 2 x 4 px: 8 voxels
    ])
    result = score(hu, labels, (1, 1, 3), ScoringSettings(**RAW))
    voxels = [set(zip(*found, strict=True)) for found in lesion_voxels(result.lesions, result.scored_mask, labels).values()]
    assert sorted(len(lesion) for lesion in voxels) == [8, 9, 32]
    assert set.union(*voxels) == set(zip(*np.nonzero(hu > 0), strict=True))   # every plaque voxel, each once


@pytest.mark.parametrize("kvp", [70, 80, 100, 120, 135])
def test_kvp_table_rows_exact(kvp):
    values, note = kvp_boundaries(kvp)
    assert note is None and len(values) == 4


def test_kvp_interpolation_and_clamping_are_stated():
    values, note = kvp_boundaries(110)
    assert values == (138, 211, 317, 423) and "interpolated" in note
    values, note = kvp_boundaries(140)
    assert values == (119, 183, 274, 364) and "outside" in note


@pytest.mark.parametrize(("total", "classic", "drs"), [(0, "0", "A0"), (0.5, "1-10", "A1/N1"), (10, "1-10", "A1/N1"),
                                               (10.01, "11-100", "A1/N1"), (99.9, "11-100", "A1/N1"),
                                               (100, "11-100", "A2/N1"), (101, "101-400", "A2/N1"),
                                               (299, "101-400", "A2/N1"), (300, "101-400", "A3/N1"),
                                               (400, "101-400", "A3/N1"), (401, ">400", "A3/N1")])
def test_risk_category_boundaries(total, classic, drs):
    assert classic_category(total) == classic and cac_drs(total, 1) == drs


def test_calibration_factor_reference_example():
    c = calibration_factor(rod_hu=230.0, water_hu=0.0)
    assert c == pytest.approx(0.2 / 230)
    assert c * 10 * 300 == pytest.approx(2.61, abs=0.005)  # 10 mm^3 at mean 300 HU -> 2.61 mg


# --- QRM insert phantom ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spacing", [(0.4, 0.4, 0.5), (0.5, 0.5, 1.0)])
def test_qrm_mass_within_15_percent_for_5_and_3_mm_inserts(spacing):
    phantom = qrm.make_qrm_phantom(spacing=spacing, noise_hu=10, seed=3)
    c = calibration_factor_from_rois(phantom.hu, phantom.rod_mask, phantom.water_mask)
    assert c == pytest.approx(0.2 / 230, rel=0.02)
    for (diameter, density), region in phantom.inserts.items():
        if diameter == 1.0:
            continue  # 1 mm inserts are below what thresholded mass scoring can measure (stated limit)
        labels = region.astype(np.uint8) * 2
        mass = score(phantom.hu, labels, spacing, ScoringSettings(mass_calibration=c, **RAW)).total["mass_mg"]
        truth = qrm.true_mass_mg(diameter, density)
        assert abs(mass / truth - 1) < 0.15, (diameter, density, mass, truth)


# --- properties -------------------------------------------------------------------------------------------

lesion_volumes = st.builds(
    lambda seed, n: _random_lesions(seed, n), st.integers(0, 10_000), st.integers(1, 5))


def _random_lesions(seed, n):
    rng = np.random.default_rng(seed)
    hu = rng.normal(40, 20, (5, 48, 48)).astype(np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    for index in range(n):  # one lesion per 16x16 tile (tiles never touch: 2-pixel gaps)
        tj, ti = divmod(index, 3)
        k = rng.integers(0, 5)
        h, w = rng.integers(1, 10, size=2)
        hu[k, tj * 16 + 2: tj * 16 + 2 + h, ti * 16 + 2: ti * 16 + 2 + w] = rng.uniform(131, 900)
        labels[k, tj * 16: tj * 16 + 14, ti * 16: ti * 16 + 14] = rng.integers(1, 5)
    return hu, labels


@settings(max_examples=40, deadline=None)
@given(lesion_volumes, st.sampled_from(["2d8", "2d4", "3d26"]))
def test_invariant_to_in_plane_flips_and_rotations(volume, connectivity):
    hu, labels = volume
    reference = score(hu, labels, (0.5, 0.5, 3.0), ScoringSettings(connectivity=connectivity))
    for transform in (lambda a: a[:, ::-1], lambda a: a[:, :, ::-1], lambda a: np.rot90(a, 1, (1, 2)),
                      lambda a: np.rot90(a, 2, (1, 2))):
        other = score(np.ascontiguousarray(transform(hu)), np.ascontiguousarray(transform(labels)), (0.5, 0.5, 3.0),
                      ScoringSettings(connectivity=connectivity))
        assert other.total["agatston"] == pytest.approx(reference.total["agatston"])
        for artery, values in reference.arteries.items():
            assert other.arteries[artery]["agatston"] == pytest.approx(values["agatston"])
            assert other.arteries[artery]["lesions"] == values["lesions"]


@settings(max_examples=40, deadline=None)
@given(lesion_volumes)
def test_additive_over_separated_lesions(volume):
    hu, labels = volume
    whole = score(hu, labels, (0.5, 0.5, 3.0), ScoringSettings()).total["agatston"]
    parts = 0.0
    for tj in range(2):
        for ti in range(3):
            only = np.zeros_like(labels)
            only[:, tj * 16: tj * 16 + 16, ti * 16: ti * 16 + 16] = labels[:, tj * 16: tj * 16 + 16, ti * 16: ti * 16 + 16]
            parts += score(hu, only, (0.5, 0.5, 3.0), ScoringSettings()).total["agatston"]
    assert whole == pytest.approx(parts)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([70, 80, 100, 120, 135]))
def test_nothing_below_threshold_scores(seed, kvp):
    threshold = kvp_boundaries(kvp)[0][0]
    rng = np.random.default_rng(seed)
    hu = rng.uniform(-1000, threshold - 0.01, (4, 24, 24)).astype(np.float32)
    labels = rng.integers(0, 6, hu.shape).astype(np.uint8)
    result = score(hu, labels, (0.5, 0.5, 3.0), ScoringSettings(kvp=kvp))
    assert result.total["agatston"] == 0 and result.total["volume_mm3"] == 0 and not result.scored_mask.any()
