"""Lumped-parameter elements and boundary conditions (docs/REFERENCE.md section 4), in CGS units (cm, g, s;
pressure dyn/cm^2, flow mL/s). Every constant is a documented default and a setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MMHG = 1333.22  # dyn/cm^2 per mmHg


@dataclass
class Blood:
    density: float = 1.06    # g/cm^3
    viscosity: float = 0.04  # P (g/(cm s))


DEFAULT_BLOOD = Blood()


def poiseuille_resistance(length_cm, radius_cm, blood: Blood = DEFAULT_BLOOD):
    """R = 8 mu L / (pi r^4), element-wise for arrays of pieces (sum them for a tube of varying radius)."""
    return 8.0 * blood.viscosity * length_cm / (math.pi * radius_cm ** 4)


@dataclass
class YoungTsai:
    """Stenosis pressure drop dP = R Q + S Q|Q| (Young & Tsai 1973).

    R = Kv mu / (D0 A0), Kv = 32 La / D0 (A0/As)^2, La = 0.83 Ls + 1.64 Ds; S = Kt rho / (2 A0^2) (A0/As - 1)^2.
    """

    area_normal_cm2: float
    area_stenosis_cm2: float
    length_cm: float
    kt: float = 1.52

    def coefficients(self, blood: Blood = DEFAULT_BLOOD) -> tuple[float, float]:
        a0, a_s = self.area_normal_cm2, self.area_stenosis_cm2
        d0 = math.sqrt(4 * a0 / math.pi)
        d_s = math.sqrt(4 * a_s / math.pi)
        la = 0.83 * self.length_cm + 1.64 * d_s
        kv = 32.0 * la / d0 * (a0 / a_s) ** 2
        linear = kv * blood.viscosity / (d0 * a0)
        quadratic = self.kt * blood.density / (2 * a0 ** 2) * (a0 / a_s - 1) ** 2
        return linear, quadratic

    def pressure_drop(self, flow: float, blood: Blood = DEFAULT_BLOOD) -> float:
        linear, quadratic = self.coefficients(blood)
        return linear * flow + quadratic * flow * abs(flow)


@dataclass
class BoundaryConditions:
    """Hyperemic boundary conditions (Coro0D-style defaults; all settings).

    Total coronary resistance at rest R_cor = 25 x MAP / CO (coronary flow ~4 % of cardiac output); hyperemia
    lowers microvascular resistance to `hyperemia_factor` x rest; the left tree takes `left_share` of the flow;
    outlets of a tree share its resistance by Murray's law with exponent m: R_i = R_tree x sum_j d_j^m / d_i^m.
    """

    aortic_pressure_mmhg: float = 93.0
    cardiac_output_l_min: float = 5.0
    hyperemia_factor: float = 0.24
    left_share: float = 0.7
    murray_exponent: float = 2.6
    venous_pressure_mmhg: float = 0.0

    def coronary_resistance_rest(self) -> float:
        co_ml_s = self.cardiac_output_l_min * 1000.0 / 60.0
        return 25.0 * self.aortic_pressure_mmhg * MMHG / co_ml_s

    def tree_resistance(self, side: str) -> float:
        share = self.left_share if side == "left" else 1.0 - self.left_share
        return self.coronary_resistance_rest() * self.hyperemia_factor / share

    def outlet_resistances(self, diameters_cm: list[float], side: str) -> list[float]:
        weights = [d ** self.murray_exponent for d in diameters_cm]
        total = sum(weights)
        return [self.tree_resistance(side) * total / w for w in weights]


def murray_share(diameters_cm: list[float], exponent: float) -> list[float]:
    weights = [d ** exponent for d in diameters_cm]
    return [w / sum(weights) for w in weights]
