"""CT-FFR tree and model on synthetic centerlines with exactly known geometry."""

import math

import numpy as np
import pytest

from cardioquant.ffr.model import solve_tree
from cardioquant.ffr.physics import MMHG, BoundaryConditions, YoungTsai, poiseuille_resistance
from cardioquant.ffr.tree import Path, build_segments, find_lesions
from cardioquant.ffr.zerod import Network, Vessel, solve


def straight(name, length=50.0, radius=1.5, step=0.5, start=(0, 0, 0), direction=(0, 0, -1), stenosis=None):
    s = np.arange(0, length + 1e-9, step)
    points = np.array(start) + s[:, None] * np.array(direction, float)
    radii = np.full(s.size, radius)
    if stenosis:  # (centre mm, half length mm, area fraction at the throat)
        centre, half, fraction = stenosis
        inside = np.abs(s - centre) <= half
        radii[inside] = radius * np.sqrt(fraction)
    return Path(name, points, radii)


def test_segments_of_a_bifurcation():
    trunk = straight("trunk", 20)
    a = Path("a", np.vstack([trunk.points, trunk.points[-1] + np.outer(np.arange(1, 41) * 0.5, [1, 0, 0])]),
             np.r_[trunk.radii, np.full(40, 1.2)])
    b = Path("b", np.vstack([trunk.points, trunk.points[-1] + np.outer(np.arange(1, 31) * 0.5, [-1, 0, 0])]),
             np.r_[trunk.radii, np.full(30, 1.0)])
    segments = build_segments([a, b])
    assert len(segments) == 3 and segments[0].children == [1, 2]
    assert segments[0].stop == len(trunk.points) - 1 and sorted(segments[1].paths + segments[2].paths) == [0, 1]


def test_lesion_detection_on_a_known_stenosis():
    path = straight("LAD", 60, 1.5, stenosis=(30.0, 4.0, 0.25))  # 75 % area stenosis, 8 mm long
    lesions = find_lesions(path)
    assert len(lesions) == 1
    lesion = lesions[0]
    assert lesion.area_stenosis_percent == pytest.approx(75.0, abs=0.5)
    assert lesion.diameter_stenosis_percent == pytest.approx(50.0, abs=0.5)
    assert lesion.throat_mm == pytest.approx(30.0, abs=4.0) and 8.0 <= lesion.length_mm <= 9.5


def test_healthy_vessel_reads_near_one():
    bc = BoundaryConditions()
    result = solve_tree([straight("RCA", 80, 1.6)], bc, side="right")
    assert result.ffr[0][-1] >= 0.95 and np.all(np.diff(result.ffr[0]) <= 1e-12)


def test_single_vessel_matches_hand_built_network():
    """The tree model of a uniform tube with one stenosis equals the hand-built V7-style network."""
    bc = BoundaryConditions(aortic_pressure_mmhg=100.0)
    path = straight("LAD", 60, 1.5, stenosis=(30.0, 5.0, 0.25))
    result = solve_tree([path], bc, side="left")
    lesion = find_lesions(path)[0]
    healthy = 60.0 - lesion.length_mm
    area, throat = math.pi * 0.15 ** 2, math.pi * 0.15 ** 2 * 0.25
    linear, quadratic = YoungTsai(area, throat, lesion.length_mm / 10).coefficients()
    network = Network([Vessel("healthy", poiseuille_resistance(healthy / 10, 0.15)), Vessel("lesion", linear, quadratic)],
                      children={0: [1]}, inlet_pressure=100.0 * MMHG,
                      outlets={1: (bc.outlet_resistances([0.3], "left")[0], 0.0)})
    expected = solve(network).pressure_out[1] / (100.0 * MMHG)
    assert result.ffr[0][-1] == pytest.approx(expected, abs=2e-3)
    assert result.lesions[0]["delta_ffr"] > 0.05


def test_flow_splits_and_pressure_is_continuous_at_the_bifurcation():
    trunk = straight("trunk", 20, 2.0)
    big = Path("big", np.vstack([trunk.points, trunk.points[-1] + np.outer(np.arange(1, 81) * 0.5, [1, 0, -1]) / 1.414]),
               np.r_[trunk.radii, np.full(80, 1.5)])
    small = Path("small", np.vstack([trunk.points, trunk.points[-1] + np.outer(np.arange(1, 81) * 0.5, [-1, 0, -1]) / 1.414]),
                 np.r_[trunk.radii, np.full(80, 1.1)])
    bc = BoundaryConditions(murray_exponent=3.0)
    result = solve_tree([big, small], bc)
    assert result.outlet_flow_ml_s[0] + result.outlet_flow_ml_s[1] == pytest.approx(result.inlet_flow_ml_s, rel=1e-6)
    assert result.outlet_flow_ml_s[0] > result.outlet_flow_ml_s[1]
    junction = len(trunk.points) - 1
    assert result.ffr[0][junction] == pytest.approx(result.ffr[1][junction], abs=1e-9)


def test_paths_parting_at_the_inlet_still_form_one_tree():
    """Centerlines that split at their very first point (inlet on a junction) give a zero-length root segment;
    the flow still enters through one inlet and each branch reads as on its own (Poiseuille, exact)."""
    a = straight("a", 30, radius=1.5, direction=(1, 0, 0))
    b = straight("b", 30, radius=1.5, direction=(-1, 0, 0))
    result = solve_tree([a, b], BoundaryConditions())
    assert result.ffr[0][0] == pytest.approx(1.0) and result.ffr[1][0] == pytest.approx(1.0)
    assert result.ffr[0][-1] == pytest.approx(result.ffr[1][-1], abs=1e-9)  # symmetric branches
    assert sum(result.outlet_flow_ml_s) == pytest.approx(result.inlet_flow_ml_s, rel=1e-9)
