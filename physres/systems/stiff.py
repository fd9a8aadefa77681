"""Stiff test problems: Robertson, HIRES, the Oregonator, E5, POLLU and stiff van der Pol.

All are problems of the Bari test set for IVP solvers (Mazzia & Magherini, *Test Set for
Initial Value Problem Solvers*, release 2.4, Univ. of Bari, 2008; Hairer & Wanner, *Solving
ODEs II*, 1996, §IV.10). Each class carries ``REFERENCE``: the test set's initial state, final
time, its published reference solution there (computed by the test set's authors with RADAU5
in quadruple precision), and the ``atol`` its benchmarks here use. Their own references default
to ``Radau`` with the analytic Jacobian.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import _checks
from .base import System, register
from .classical import _count, _matrix, _rng, _tensor


def reference_atol(system, rtol: float) -> float:
    """The ``atol`` a test-set run at ``rtol`` uses: ``REFERENCE["atol"]``, or
    ``REFERENCE["atol_per_rtol"]·rtol``."""
    reference = system.REFERENCE
    return reference["atol"] if "atol" in reference else reference["atol_per_rtol"] * rtol


def scd(x, reference, floor: float = 0.0) -> float:
    """Significant correct digits, as the test set scores a run: ``−log10`` of the largest
    ``|x_i − ref_i| / (|ref_i| + floor)`` over components with ``ref_i ≠ 0``.

    ``floor = 0`` is the test set's scd (relative error); ``floor = atol/rtol`` its mixed
    "mescd", used for E5, whose published values are only meaningful to ~1e-25 absolute
    (they break the invariant ``y2 = y3 + y4`` by 1.3e-25). ``x``: one state, any shape.
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    x = np.asarray(
        x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64
    ).reshape(-1)
    mask = ref != 0
    err = np.abs(x[mask] - ref[mask]) / (np.abs(ref[mask]) + floor)
    return float(-np.log10(max(float(err.max()), 1e-300)))


@register("robertson")
class Robertson(System):
    """Robertson's autocatalytic reactions (Robertson 1966)::

        y1' = -k1 y1 + k3 y2 y3
        y2' =  k1 y1 - k3 y2 y3 - k2 y2²
        y3' =  k2 y2²

    with ``k1 = 0.04, k2 = 3e7, k3 = 1e4``. Total mass ``y1 + y2 + y3`` is conserved. ``y2``
    stays below ~4e-5, so the reference ``atol`` is 1e-14 (10⁻⁹ of it).
    ``sample_initial``: ``y1 ~ U[0.5, 1]``, ``y2 = 0``, ``y3 = 1 − y1`` (unit mass).
    """

    state_shape = (3,)
    t_end = 40.0
    dt_save = 0.1
    reference_method = "Radau"
    reference_rtol = 1e-10
    reference_atol = 1e-14
    linear_invariants = ((1.0, 1.0, 1.0),)  # total mass
    REFERENCE = {
        "source": "Bari IVP test set, problem ROBER",
        "t_end": 1e11,
        "x0": (1.0, 0.0, 0.0),
        "x_end": (0.2083340149701255e-07, 0.8333360770334713e-13, 0.9999999791665050e00),
        "atol": 1e-20,
    }

    def __init__(self, k1: float = 0.04, k2: float = 3e7, k3: float = 1e4):
        self.k1 = _checks.positive("k1", k1)
        self.k2 = _checks.positive("k2", k2)
        self.k3 = _checks.positive("k3", k3)
        super().__init__(k1=self.k1, k2=self.k2, k3=self.k3)

    def rhs(self, t, x):
        y1, y2, y3 = x[:, 0], x[:, 1], x[:, 2]
        r1, r2, r3 = self.k1 * y1, self.k2 * y2**2, self.k3 * y2 * y3
        return torch.stack([-r1 + r3, r1 - r3 - r2, r2], dim=1)

    def jacobian(self, t, x):
        y2, y3 = x[:, 1], x[:, 2]
        z = torch.zeros_like(y2)
        k1 = torch.full_like(y2, self.k1)
        return _matrix(
            [
                [-k1, self.k3 * y3, self.k3 * y2],
                [k1, -self.k3 * y3 - 2 * self.k2 * y2, -self.k3 * y2],
                [z, 2 * self.k2 * y2, z],
            ]
        )

    def numpy_rhs(self, t, y):
        y1, y2, y3 = y
        r1, r2, r3 = self.k1 * y1, self.k2 * y2 * y2, self.k3 * y2 * y3
        return np.array([-r1 + r3, r1 - r3 - r2, r2])

    def numpy_jacobian(self, t, y):
        _, y2, y3 = y
        return np.array(
            [
                [-self.k1, self.k3 * y3, self.k3 * y2],
                [self.k1, -self.k3 * y3 - 2 * self.k2 * y2, -self.k3 * y2],
                [0.0, 2 * self.k2 * y2, 0.0],
            ]
        )

    def sample_initial(self, n, seed=0):
        y1 = _rng(seed).uniform(0.5, 1.0, _count(n))
        return _tensor(np.stack([y1, np.zeros_like(y1), 1.0 - y1], axis=1))

    def invariants(self, x):
        return {"mass": x.sum(dim=1)}


# HIRES rate constants (Schäfer 1975; Hairer & Wanner 1996, §IV.10).
_HIRES_LINEAR = np.array(
    [
        [-1.71, 0.43, 8.32, 0.0, 0.0, 0.0, 0.0, 0.0],
        [1.71, -8.75, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, -10.03, 0.43, 0.035, 0.0, 0.0, 0.0],
        [0.0, 8.32, 1.71, -1.12, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, -1.745, 0.43, 0.43, 0.0],
        [0.0, 0.0, 0.0, 0.69, 1.71, -0.43, 0.69, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.81, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.81, 0.0],
    ]
)
_HIRES_SOURCE = np.array([0.0007, 0, 0, 0, 0, 0, 0, 0])
_HIRES_BILINEAR = np.array([0, 0, 0, 0, 0, -1.0, 1.0, -1.0])  # times k·y6·y8
_HIRES_X0 = np.array([1.0, 0, 0, 0, 0, 0, 0, 0.0057])


@register("hires")
class Hires(System):
    """HIRES: 8 species of plant photomorphogenesis (Schäfer 1975), ``y' = L y + s + k y6 y8 e``
    with the linear rates ``L`` and source ``s`` of Hairer & Wanner and ``k = 280``
    (``e = (0,0,0,0,0,-1,1,-1)``). ``y7 + y8`` is conserved.

    The classic run is ``y(0) = (1, 0, 0, 0, 0, 0, 0, 0.0057)`` over ``[0, 321.8122]``; the
    default span here is ``[0, 320]`` saved every 0.5.
    ``sample_initial``: the classic ``y(0)`` with ``y1`` and ``y8`` each scaled by
    independent factors ``U[0.5, 1.5]``.
    """

    state_shape = (8,)
    t_end = 320.0
    dt_save = 0.5
    reference_method = "Radau"
    reference_rtol = 1e-10
    reference_atol = 1e-13
    linear_invariants = ((0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0),)  # y7 + y8
    REFERENCE = {
        "source": "Bari IVP test set, problem HIRES",
        "t_end": 321.8122,
        "x0": tuple(_HIRES_X0),
        "x_end": (
            0.7371312573325668e-3,
            0.1442485726316185e-3,
            0.5888729740967575e-4,
            0.1175651343283149e-2,
            0.2386356198831331e-2,
            0.6238968252742796e-2,
            0.2849998395185769e-2,
            0.2850001604814231e-2,
        ),
        "atol_per_rtol": 1e-4,
    }

    def __init__(self, k: float = 280.0):
        self.k = _checks.positive("k", k)
        super().__init__(k=self.k)
        self._L = torch.from_numpy(_HIRES_LINEAR.copy())
        self._s = torch.from_numpy(_HIRES_SOURCE.copy())
        self._e = torch.from_numpy(_HIRES_BILINEAR.copy())

    def rhs(self, t, x):
        L, s, e = (a.to(x.device) for a in (self._L, self._s, self._e))
        return x @ L.T + s + self.k * (x[:, 5] * x[:, 7])[:, None] * e

    def jacobian(self, t, x):
        J = self._L.to(x.device).expand(x.shape[0], 8, 8).clone()
        e = self._e.to(x.device)
        J[:, :, 5] += self.k * x[:, 7:8] * e
        J[:, :, 7] += self.k * x[:, 5:6] * e
        return J

    def numpy_rhs(self, t, y):
        return _HIRES_LINEAR @ y + _HIRES_SOURCE + self.k * y[5] * y[7] * _HIRES_BILINEAR

    def numpy_jacobian(self, t, y):
        J = _HIRES_LINEAR.copy()
        J[:, 5] += self.k * y[7] * _HIRES_BILINEAR
        J[:, 7] += self.k * y[5] * _HIRES_BILINEAR
        return J

    def sample_initial(self, n, seed=0):
        scale = _rng(seed).uniform(0.5, 1.5, (_count(n), 2))
        x = np.tile(_HIRES_X0, (scale.shape[0], 1))
        x[:, 0] *= scale[:, 0]
        x[:, 7] *= scale[:, 1]
        return _tensor(x)

    def invariants(self, x):
        return {"y7_plus_y8": x[:, 6] + x[:, 7]}


def _scaled_initial(x0, n, seed, low=0.5, high=1.5):
    """``x0`` with each nonzero component scaled by an independent factor ``U[low, high]``."""
    x0 = np.asarray(x0, dtype=np.float64)
    count = _count(n)
    scale = _rng(seed).uniform(low, high, (count, x0.size))
    return _tensor(np.where(x0 != 0, x0 * scale, 0.0))


@register("oregonator")
class Oregonator(System):
    """The Oregonator (Field & Noyes 1974), the Belousov–Zhabotinskii reaction, Bari OREGO::

        y1' = s (y2 − y1 y2 + y1 − q y1²)
        y2' = (−y2 − y1 y2 + y3) / s
        y3' = w (y1 − y3)

    with ``s = 77.27``, ``w = 0.161``, ``q = 8.375e-6``, ``y(0) = (1, 2, 3)`` on ``[0, 360]``.
    ``sample_initial``: ``y(0)`` with each component scaled by ``U[0.5, 1.5]``.
    """

    state_shape = (3,)
    t_end = 360.0
    dt_save = 0.5
    reference_method = "Radau"
    reference_rtol = 1e-10
    reference_atol = 1e-10
    REFERENCE = {
        "source": "Bari IVP test set, problem OREGO",
        "t_end": 360.0,
        "x0": (1.0, 2.0, 3.0),
        "x_end": (0.1000814870318523e1, 0.1228178521549917e4, 0.1320554942846706e3),
        "atol_per_rtol": 1.0,
    }

    def __init__(self, s: float = 77.27, w: float = 0.161, q: float = 8.375e-6):
        self.s = _checks.positive("s", s)
        self.w = _checks.positive("w", w)
        self.q = _checks.positive("q", q)
        super().__init__(s=self.s, w=self.w, q=self.q)

    def rhs(self, t, x):
        y1, y2, y3 = x[:, 0], x[:, 1], x[:, 2]
        return torch.stack(
            [
                self.s * (y2 - y1 * y2 + y1 - self.q * y1**2),
                (-y2 - y1 * y2 + y3) / self.s,
                self.w * (y1 - y3),
            ],
            dim=1,
        )

    def jacobian(self, t, x):
        y1, y2 = x[:, 0], x[:, 1]
        z = torch.zeros_like(y1)
        w = torch.full_like(y1, self.w)
        return _matrix(
            [
                [self.s * (1 - y2 - 2 * self.q * y1), self.s * (1 - y1), z],
                [-y2 / self.s, -(1 + y1) / self.s, torch.full_like(y1, 1 / self.s)],
                [w, z, -w],
            ]
        )

    def sample_initial(self, n, seed=0):
        return _scaled_initial(self.REFERENCE["x0"], n, seed)


@register("e5")
class E5(System):
    """E5, the chemical pyrolysis model of Enright, Hull & Lindberg (1975), Bari E5::

        y1' = −A y1 − B y1 y3
        y2' =  A y1 − M C y2 y3
        y3' =  A y1 − B y1 y3 − M C y2 y3 + C y4
        y4' =  B y1 y3 − C y4

    with ``A = 7.89e-10``, ``B = 1.1e7``, ``C = 1.13e3``, ``M = 1e6``, ``y(0) = (1.76e-3, 0, 0,
    0)`` on ``[0, 1e13]``. Concentrations fall to 1e-22 and below, so the test set's
    ``atol`` is 1.7e-24. ``y2 − y3 − y4`` is conserved.
    ``sample_initial``: ``y1(0) = 1.76e-3·U[0.5, 1.5]``, the rest 0.
    """

    state_shape = (4,)
    t_end = 1e13
    dt_save = 1e10
    reference_method = "Radau"
    reference_rtol = 1e-10
    reference_atol = 1e-30
    linear_invariants = ((0.0, 1.0, -1.0, -1.0),)  # y2 - y3 - y4
    REFERENCE = {
        "source": "Bari IVP test set, problem E5",
        "t_end": 1e13,
        "x0": (1.76e-3, 0.0, 0.0, 0.0),
        "x_end": (0.1152903278711829e-290, 0.8867655517642120e-22, 0.8854814626268838e-22, 0.0),
        "atol": 1.7e-24,
    }

    def __init__(self, A: float = 7.89e-10, B: float = 1.1e7, C: float = 1.13e3, M: float = 1e6):
        self.A = _checks.positive("A", A)
        self.B = _checks.positive("B", B)
        self.C = _checks.positive("C", C)
        self.M = _checks.positive("M", M)
        super().__init__(A=self.A, B=self.B, C=self.C, M=self.M)

    def rhs(self, t, x):
        y1, y2, y3, y4 = x.unbind(1)
        r1, r2, r3, r4 = self.A * y1, self.B * y1 * y3, self.M * self.C * y2 * y3, self.C * y4
        return torch.stack([-r1 - r2, r1 - r3, r1 - r2 - r3 + r4, r2 - r4], dim=1)

    def jacobian(self, t, x):
        y1, y2, y3, _ = x.unbind(1)
        z = torch.zeros_like(y1)
        A, C = torch.full_like(y1, self.A), torch.full_like(y1, self.C)
        B1, B3 = self.B * y1, self.B * y3
        MC2, MC3 = self.M * self.C * y2, self.M * self.C * y3
        return _matrix(
            [
                [-A - B3, z, -B1, z],
                [A, -MC3, -MC2, z],
                [A - B3, -MC3, -B1 - MC2, C],
                [B3, z, B1, -C],
            ]
        )

    def sample_initial(self, n, seed=0):
        return _scaled_initial(self.REFERENCE["x0"], n, seed)

    def invariants(self, x):
        return {"y2_minus_y3_minus_y4": x[:, 1] - x[:, 2] - x[:, 3]}


# POLLU (Verwer 1994): 25 reactions r_j = k_j·y_a·y_b (y_b = 1 for first-order ones) among 20
# species; species are 0-based here, the test set's y1..y20 are 1-based.
_POLLU_RATES = (
    0.35,
    26.6,
    1.23e4,
    8.6e-4,
    8.2e-4,
    1.5e4,
    1.3e-4,
    2.4e4,
    1.65e4,
    9e3,
    0.022,
    1.2e4,
    1.88,
    1.63e4,
    4.8e6,
    3.5e-4,
    0.0175,
    1e8,
    4.44e11,
    1240.0,
    2.1,
    5.78,
    0.0474,
    1780.0,
    3.12,
)
_NONE = 20  # index of the constant 1 appended to the state
_POLLU_REACTANTS = (
    (0, _NONE),
    (1, 3),
    (4, 1),
    (6, _NONE),
    (6, _NONE),
    (6, 5),
    (8, _NONE),
    (8, 5),
    (10, 1),
    (10, 0),
    (12, _NONE),
    (9, 1),
    (13, _NONE),
    (0, 5),
    (2, _NONE),
    (3, _NONE),
    (3, _NONE),
    (15, _NONE),
    (15, _NONE),
    (16, 5),
    (18, _NONE),
    (18, _NONE),
    (0, 3),
    (18, 0),
    (19, _NONE),
)
# y_i' = Σ_j S[i][j] r_j, written as the test set writes each equation (reaction: coefficient).
_POLLU_EQUATIONS = (
    {1: -1, 10: -1, 14: -1, 23: -1, 24: -1, 2: 1, 3: 1, 9: 1, 11: 1, 12: 1, 22: 1, 25: 1},
    {2: -1, 3: -1, 9: -1, 12: -1, 1: 1, 21: 1},
    {15: -1, 1: 1, 17: 1, 19: 1, 22: 1},
    {2: -1, 16: -1, 17: -1, 23: -1, 15: 1},
    {3: -1, 4: 2, 6: 1, 7: 1, 13: 1, 20: 1},
    {6: -1, 8: -1, 14: -1, 20: -1, 3: 1, 18: 2},
    {4: -1, 5: -1, 6: -1, 13: 1},
    {4: 1, 5: 1, 6: 1, 7: 1},
    {7: -1, 8: -1},
    {12: -1, 7: 1, 9: 1},
    {9: -1, 10: -1, 8: 1, 11: 1},
    {9: 1},
    {11: -1, 10: 1},
    {13: -1, 12: 1},
    {14: 1},
    {18: -1, 19: -1, 16: 1},
    {20: -1},
    {20: 1},
    {21: -1, 22: -1, 24: -1, 23: 1, 25: 1},
    {25: -1, 24: 1},
)
_POLLU_X0 = (
    0.0,
    0.2,
    0.0,
    0.04,
    0.0,
    0.0,
    0.1,
    0.3,
    0.01,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    0.007,
    0.0,
    0.0,
    0.0,
)


def _pollu_stoichiometry() -> np.ndarray:
    S = np.zeros((20, 25))
    for i, equation in enumerate(_POLLU_EQUATIONS):
        for j, coefficient in equation.items():
            S[i, j - 1] = coefficient
    return S


@register("pollu")
class Pollu(System):
    """POLLU, the chemistry of the RIVM air-pollution model (Verwer 1994), Bari POLLU: 20
    species, 25 mass-action reactions with rates from 3.5e-4 to 4.4e11, ``y(0)`` with
    ``y2 = 0.2, y4 = 0.04, y7 = 0.1, y8 = 0.3, y9 = 0.01, y17 = 0.007`` on ``[0, 60]``.
    Concentrations stay non-negative. ``sample_initial``: ``y(0)`` with each nonzero component
    scaled by ``U[0.5, 1.5]``.
    """

    state_shape = (20,)
    t_end = 60.0
    dt_save = 0.5
    reference_method = "Radau"
    reference_rtol = 1e-10
    reference_atol = 1e-14
    REFERENCE = {
        "source": "Bari IVP test set, problem POLLU",
        "t_end": 60.0,
        "x0": _POLLU_X0,
        "x_end": (
            0.5646255480022769e-1,
            0.1342484130422339e0,
            0.4139734331099427e-8,
            0.5523140207484359e-2,
            0.2018977262302196e-6,
            0.1464541863493966e-6,
            0.7784249118997964e-1,
            0.3245075353396018e0,
            0.7494013383880406e-2,
            0.1622293157301561e-7,
            0.1135863833257075e-7,
            0.2230505975721359e-2,
            0.2087162882798630e-3,
            0.1396921016840158e-4,
            0.8964884856898295e-2,
            0.4352846369330103e-17,
            0.6899219696263405e-2,
            0.1007803037365946e-3,
            0.1772146513969984e-5,
            0.5682943292316392e-4,
        ),
        "atol": 1e-10,
    }

    def __init__(self):
        super().__init__()
        self._S = torch.from_numpy(_pollu_stoichiometry())
        self._k = torch.tensor(_POLLU_RATES, dtype=torch.float64)
        index = torch.tensor(_POLLU_REACTANTS)
        self._ia, self._ib = index[:, 0], index[:, 1]

    def _padded(self, x):
        return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # (B, 21)

    def rhs(self, t, x):
        y = self._padded(x)
        r = self._k.to(x) * y[:, self._ia] * y[:, self._ib]  # (B, 25)
        return r @ self._S.to(x).T

    def jacobian(self, t, x):
        y = self._padded(x)
        k = self._k.to(x)
        dr = torch.zeros(x.shape[0], 25, 21, dtype=x.dtype, device=x.device)  # dr_j/dy_i
        rows = torch.arange(25)
        dr[:, rows, self._ia] += k * y[:, self._ib]
        dr[:, rows, self._ib] += k * y[:, self._ia]
        return self._S.to(x) @ dr[:, :, :20]

    def sample_initial(self, n, seed=0):
        return _scaled_initial(_POLLU_X0, n, seed)


@register("vdpol_stiff")
class VanDerPolStiff(System):
    """Van der Pol in the test set's scaled form (Bari VDPOL), ``ε = 1e-6``::

        y1' = y2
        y2' = ((1 − y1²) y2 − y1) / ε

    on ``[0, 2]`` from ``y(0) = (2, 0)``. ``van_der_pol`` (``q'' = μ(1 − q²)q' − q``) is the
    same oscillator in unscaled time: ``ε = 1/μ²`` with ``t → t/μ``, ``y2 = μ q'``.
    ``sample_initial``: ``y1 ~ U[1.5, 2.5]``, ``y2 = 0``.
    """

    state_shape = (2,)
    t_end = 2.0
    dt_save = 0.01
    reference_method = "Radau"
    reference_rtol = 1e-10
    reference_atol = 1e-10
    REFERENCE = {
        "source": "Bari IVP test set, problem VDPOL",
        "t_end": 2.0,
        "x0": (2.0, 0.0),
        "x_end": (0.1706167732170483e1, -0.8928097010247975e0),
        "atol_per_rtol": 1.0,
    }

    def __init__(self, eps: float = 1e-6):
        self.eps = _checks.positive("eps", eps)
        super().__init__(eps=self.eps)

    def rhs(self, t, x):
        y1, y2 = x[:, 0], x[:, 1]
        return torch.stack([y2, ((1 - y1**2) * y2 - y1) / self.eps], dim=1)

    def jacobian(self, t, x):
        y1, y2 = x[:, 0], x[:, 1]
        z, one = torch.zeros_like(y1), torch.ones_like(y1)
        return _matrix([[z, one], [(-2 * y1 * y2 - 1) / self.eps, (1 - y1**2) / self.eps]])

    def sample_initial(self, n, seed=0):
        y1 = _rng(seed).uniform(1.5, 2.5, _count(n))
        return _tensor(np.stack([y1, np.zeros_like(y1)], axis=1))
