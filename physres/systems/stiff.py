"""Stiff chemical kinetics: Robertson's reactions and the HIRES photomorphogenesis model.

Both are standard stiff test problems (Hairer & Wanner, *Solving ODEs II*, 1996, §IV.10);
their references default to ``Radau`` with the analytic Jacobian.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import _checks
from .base import System, register
from .classical import _count, _matrix, _rng, _tensor


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
        return _matrix([[-k1, self.k3 * y3, self.k3 * y2],
                        [k1, -self.k3 * y3 - 2 * self.k2 * y2, -self.k3 * y2],
                        [z, 2 * self.k2 * y2, z]])

    def numpy_rhs(self, t, y):
        y1, y2, y3 = y
        r1, r2, r3 = self.k1 * y1, self.k2 * y2 * y2, self.k3 * y2 * y3
        return np.array([-r1 + r3, r1 - r3 - r2, r2])

    def numpy_jacobian(self, t, y):
        _, y2, y3 = y
        return np.array([[-self.k1, self.k3 * y3, self.k3 * y2],
                         [self.k1, -self.k3 * y3 - 2 * self.k2 * y2, -self.k3 * y2],
                         [0.0, 2 * self.k2 * y2, 0.0]])

    def sample_initial(self, n, seed=0):
        y1 = _rng(seed).uniform(0.5, 1.0, _count(n))
        return _tensor(np.stack([y1, np.zeros_like(y1), 1.0 - y1], axis=1))

    def invariants(self, x):
        return {"mass": x.sum(dim=1)}


# HIRES rate constants (Schäfer 1975; Hairer & Wanner 1996, §IV.10).
_HIRES_LINEAR = np.array([
    [-1.71, 0.43, 8.32, 0.0, 0.0, 0.0, 0.0, 0.0],
    [1.71, -8.75, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, -10.03, 0.43, 0.035, 0.0, 0.0, 0.0],
    [0.0, 8.32, 1.71, -1.12, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, -1.745, 0.43, 0.43, 0.0],
    [0.0, 0.0, 0.0, 0.69, 1.71, -0.43, 0.69, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.81, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.81, 0.0],
])
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
