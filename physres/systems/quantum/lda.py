"""LDA exchange of the 1-D spin-unpolarised electron gas with soft-Coulomb interaction.

For ``w(u) = 1/√(u² + 1)`` (Fourier transform ``2K₀(|q|)``) the exchange energy per length of
the homogeneous gas of density ``n`` (``k_F = πn/2``) is, with ``z = πn``,

    e_x(n) = −(1/π²)·[z·IK₀(z) − 1 + z·K₁(z)],   IK₀(z) = ∫₀^z K₀(q) dq,

and the exchange potential is ``v_x = de_x/dn = −IK₀(πn)/π``. This is the exact exchange of
the uniform soft-Coulomb gas used by the 1-D LDA of Helbig et al., Phys. Rev. A 83, 032503
(2011) (their correlation fit is not included: exchange only). ``v_x`` is tabulated once with
scipy's ``iti0k0`` and interpolated linearly; ``e_x`` is the exact integral of that
interpolant, so the functional and its potential are consistent to round-off (the discrete
Kohn–Sham energy is then conserved by exact propagation).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import iti0k0

_N_MAX = 12.0
_H = 5e-4


def _table():
    n = np.arange(0.0, _N_MAX + _H, _H)
    v = -iti0k0(np.pi * n)[1] / np.pi
    e = np.concatenate([[0.0], np.cumsum(0.5 * _H * (v[1:] + v[:-1]))])
    return torch.from_numpy(n), torch.from_numpy(v), torch.from_numpy(e)


_NODES, _V, _E = _table()


def _locate(rho: torch.Tensor):
    r = rho.clamp(0.0, float(_NODES[-2]))
    i = torch.clamp((r / _H).floor().long(), 0, _NODES.numel() - 2)
    return i, rho.clamp_min(0.0) - _NODES.to(rho.device)[i]


def exchange_potential(rho: torch.Tensor) -> torch.Tensor:
    """``v_x(n)`` (Hartree), same shape as ``rho`` (densities beyond 12 use the last slope)."""
    i, d = _locate(rho)
    V = _V.to(rho.device)
    return V[i] + (V[i + 1] - V[i]) / _H * d


def exchange_energy_density(rho: torch.Tensor) -> torch.Tensor:
    """``e_x(n)`` (Hartree per length), the exact integral of :func:`exchange_potential`."""
    i, d = _locate(rho)
    V, E = _V.to(rho.device), _E.to(rho.device)
    return E[i] + V[i] * d + 0.5 * (V[i + 1] - V[i]) / _H * d**2


def exchange_energy_density_exact(n) -> np.ndarray:
    """The closed form of ``e_x(n)`` (numpy), for checking the table."""
    from scipy.special import k1

    z = np.pi * np.asarray(n, dtype=np.float64)
    zk1 = np.where(z > 0, z * k1(np.where(z > 0, z, 1.0)), 1.0)
    return -(z * iti0k0(z)[1] - 1.0 + zk1) / np.pi**2
