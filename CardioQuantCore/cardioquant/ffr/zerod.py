"""svZeroDSolver wrapper: a small network description -> svZeroD JSON -> steady pressures and flows.

Only the blocks CardioQuant uses: BloodVessel (R_poiseuille, stenosis_coefficient), NORMAL_JUNCTION, and the
PRESSURE / FLOW / RESISTANCE boundary conditions. Steady inflow conditions give steady solutions; the solver is run
for two "cycles" of constant conditions and the last time point is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ProcessingError


@dataclass
class Vessel:
    name: str
    resistance: float                  # dyn s / cm^5 (linear: Poiseuille + stenosis viscous term)
    stenosis_coefficient: float = 0.0  # dyn s^2 / cm^8 (quadratic term)
    length_cm: float = 1.0


@dataclass
class Network:
    vessels: list[Vessel] = field(default_factory=list)
    children: dict[int, list[int]] = field(default_factory=dict)   # vessel index -> downstream vessel indices
    inlet_pressure: float | None = None                             # dyn/cm^2 at the root vessel
    inlet_flow: float | None = None                                 # mL/s into the root vessel
    outlets: dict[int, tuple[float, float]] = field(default_factory=dict)  # vessel -> (R, distal pressure)

    def roots(self) -> list[int]:
        downstream = {c for cs in self.children.values() for c in cs}
        return [i for i in range(len(self.vessels)) if i not in downstream]

    def to_config(self) -> dict:
        roots = self.roots()
        if len(roots) != 1:
            raise ProcessingError(f"the flow network must have exactly one inlet vessel (found {len(roots)})")
        if (self.inlet_pressure is None) == (self.inlet_flow is None):
            raise ProcessingError("give exactly one inlet condition: pressure or flow")
        bcs = []
        if self.inlet_pressure is not None:
            bcs.append({"bc_name": "INLET", "bc_type": "PRESSURE",
                        "bc_values": {"P": [self.inlet_pressure] * 2, "t": [0.0, 1.0]}})
        else:
            bcs.append({"bc_name": "INLET", "bc_type": "FLOW", "bc_values": {"Q": [self.inlet_flow] * 2, "t": [0.0, 1.0]}})
        vessels = []
        for index, vessel in enumerate(self.vessels):
            entry = {"vessel_id": index, "vessel_name": vessel.name, "vessel_length": vessel.length_cm,
                     "zero_d_element_type": "BloodVessel",
                     "zero_d_element_values": {"R_poiseuille": vessel.resistance,
                                               "stenosis_coefficient": vessel.stenosis_coefficient}}
            conditions = {}
            if index == roots[0]:
                conditions["inlet"] = "INLET"
            if index in self.outlets:
                name = f"OUT{index}"
                resistance, distal = self.outlets[index]
                bcs.append({"bc_name": name, "bc_type": "RESISTANCE", "bc_values": {"R": resistance, "Pd": distal}})
                conditions["outlet"] = name
            elif not self.children.get(index):
                raise ProcessingError(f"vessel {vessel.name} has no outlet condition and no children")
            if conditions:
                entry["boundary_conditions"] = conditions
            vessels.append(entry)
        junctions = [{"junction_name": f"J{parent}", "junction_type": "NORMAL_JUNCTION", "inlet_vessels": [parent],
                      "outlet_vessels": list(kids)} for parent, kids in self.children.items() if kids]
        return {"simulation_parameters": {"number_of_cardiac_cycles": 2, "number_of_time_pts_per_cardiac_cycle": 3,
                                          "absolute_tolerance": 1e-10, "maximum_nonlinear_iterations": 50},
                "boundary_conditions": bcs, "junctions": junctions, "vessels": vessels}


@dataclass
class Solution:
    pressure_in: list[float]
    pressure_out: list[float]
    flow: list[float]


def run_config(config: dict):
    """Run any svZeroD configuration; returns the solver's result table (pandas DataFrame)."""
    import svzerod

    try:
        return svzerod.simulate(config)
    except RuntimeError as exc:
        raise ProcessingError(f"svZeroDSolver failed: {exc}") from exc


def solve(network: Network) -> Solution:
    table = run_config(network.to_config())
    last = table.groupby("name").tail(1).set_index("name")
    names = [v.name for v in network.vessels]
    return Solution(pressure_in=[float(last.loc[n, "pressure_in"]) for n in names],
                    pressure_out=[float(last.loc[n, "pressure_out"]) for n in names],
                    flow=[float(last.loc[n, "flow_in"]) for n in names])
