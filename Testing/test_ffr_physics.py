"""CT-FFR reduced-order model: the verification cases of docs/REFERENCE.md section 4 (V1-V8 of the project brief) through the model builder and svZeroDSolver."""

import math

import pytest

from cardioquant.ffr.physics import (
    MMHG,
    Blood,
    BoundaryConditions,
    YoungTsai,
    murray_share,
    poiseuille_resistance,
)
from cardioquant.ffr.zerod import Network, Vessel, solve

REL = 1e-6


def test_v1_poiseuille_tube():
    radius = math.sqrt(1.0 / math.pi)  # A = 1 cm^2
    network = Network([Vessel("tube", poiseuille_resistance(10.0, radius))], inlet_flow=100.0, outlets={0: (100.0, 0.0)})
    solution = solve(network)
    assert solution.pressure_in[0] == pytest.approx(11005.30965, rel=REL)
    assert solution.pressure_out[0] == pytest.approx(10000.0, rel=REL)


def test_v2_young_tsai_drop():
    assert YoungTsai(10.0, 5.0, 10.0).pressure_drop(100.0, Blood(1.06, 0.04)) == pytest.approx(130.5759137, rel=REL)


def test_v3_stenosis_block():
    network = Network([Vessel("v", 100.0, 100.0)], inlet_flow=5.0, outlets={0: (100.0, 100.0)})
    solution = solve(network)
    assert solution.pressure_in[0] == pytest.approx(3600.0, rel=REL)
    assert solution.pressure_out[0] == pytest.approx(600.0, rel=REL)


def test_v4_bifurcation():
    network = Network([Vessel("root", 300.0), Vessel("a", 400.0), Vessel("b", 500.0)], children={0: [1, 2]},
                      inlet_flow=5.0, outlets={1: (100.0, 50.0), 2: (1000.0, 200.0)})
    solution = solve(network)
    assert solution.flow[1] == pytest.approx(3.825, rel=REL)
    assert solution.flow[2] == pytest.approx(1.175, rel=REL)
    assert solution.pressure_out[0] == pytest.approx(1962.5, rel=REL)
    assert solution.pressure_in[0] == pytest.approx(3462.5, rel=REL)


def test_v5_coronary_segment():
    resistance = poiseuille_resistance(5.0, 0.15)
    assert resistance == pytest.approx(1006.02, rel=1e-5)
    assert resistance * 2.0 / MMHG == pytest.approx(1.509, rel=1e-3)


def test_v6_stenosis_75_percent_area():
    area = math.pi * 0.15 ** 2
    drop = YoungTsai(area, 0.25 * area, 1.0).pressure_drop(2.0)
    assert drop / MMHG == pytest.approx(9.55, rel=1e-3)


def test_v7_ffr_of_vessel_plus_stenosis():
    area = math.pi * 0.15 ** 2
    linear, quadratic = YoungTsai(area, 0.25 * area, 1.0).coefficients()
    network = Network([Vessel("vessel", poiseuille_resistance(5.0, 0.15)), Vessel("stenosis", linear, quadratic)],
                      children={0: [1]}, inlet_pressure=100.0 * MMHG, outlets={1: (43434.7, 0.0)})
    solution = solve(network)
    assert solution.flow[1] == pytest.approx(2.5812, rel=1e-4)
    assert solution.pressure_out[1] / MMHG == pytest.approx(84.09, rel=1e-4)
    assert solution.pressure_out[1] / (100.0 * MMHG) == pytest.approx(0.8409, rel=1e-4)


@pytest.mark.parametrize(("exponent", "share"), [(3.0, 0.6614), (2.6, 0.6411)])
def test_v8_murray_split(exponent, share):
    assert murray_share([0.25, 0.20], exponent)[0] == pytest.approx(share, abs=5e-5)


def test_outlet_resistances_give_the_tree_its_share_of_flow():
    bc = BoundaryConditions(aortic_pressure_mmhg=90.0, cardiac_output_l_min=6.0)
    resistances = bc.outlet_resistances([0.3, 0.25, 0.2], "left")
    parallel = 1.0 / sum(1.0 / r for r in resistances)
    assert parallel == pytest.approx(bc.tree_resistance("left"))
    hyperemic_flow = 90.0 * MMHG / bc.coronary_resistance_rest() / 0.24
    assert 90.0 * MMHG / parallel == pytest.approx(0.7 * hyperemic_flow)
    assert bc.coronary_resistance_rest() == pytest.approx(25 * 90.0 * MMHG / 100.0)
