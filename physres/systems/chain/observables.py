"""Chain observables, batched over conformations ``x`` of shape (batch, n_beads, 3).

Each accepts a torch tensor (or a numpy array, returned as numpy) and reduces over beads only.
"""

from __future__ import annotations

import numpy as np
import torch


def _torch(x):
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x), True
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`x` must be a torch.Tensor or numpy array, got {type(x).__name__}")
    return x, False


def _out(value, as_numpy):
    return value.detach().cpu().numpy() if as_numpy else value


def _check(x, name="x"):
    if x.dim() < 2 or x.shape[-1] != 3:
        raise ValueError(f"`{name}` must have shape (..., n_beads, 3), got {tuple(x.shape)}")


def radius_of_gyration(x):
    """``Rg = sqrt(mean_i |x_i − x̄|²)``, shape (...) for ``x`` of shape (..., n_beads, 3)."""
    x, np_ = _torch(x)
    _check(x)
    c = x - x.mean(-2, keepdim=True)
    return _out((c * c).sum(-1).mean(-1).sqrt(), np_)


def end_to_end(x):
    """End-to-end distance ``|x_{N−1} − x_0|``, shape (...)."""
    x, np_ = _torch(x)
    _check(x)
    return _out(torch.linalg.vector_norm(x[..., -1, :] - x[..., 0, :], dim=-1), np_)


def distances(x):
    """All pair distances, shape (..., n_beads, n_beads)."""
    x, np_ = _torch(x)
    _check(x)
    return _out(torch.linalg.vector_norm(x.unsqueeze(-2) - x.unsqueeze(-3), dim=-1), np_)


def contact_map(x, cutoff: float = 1.8, min_separation: int = 3):
    """Contacts ``d_ij < cutoff`` with ``|i − j| ≥ min_separation``: float 0/1, (..., N, N).

    Average over a batch for contact probabilities.
    """
    x, np_ = _torch(x)
    d = distances(x)
    n = x.shape[-2]
    idx = torch.arange(n, device=x.device)
    far = (idx[:, None] - idx[None, :]).abs() >= min_separation
    return _out(((d < cutoff) & far).to(x.dtype), np_)


def fraction_native_contacts(x, contacts, native_distances, tolerance: float = 1.2):
    """Fraction ``Q`` of native contacts formed: ``r_ij < tolerance · r0_ij``, shape (...).

    Parameters
    ----------
    x : (..., n_beads, 3)
    contacts : (n_c, 2) bead pairs
    native_distances : (n_c,) distances ``r0`` in the native structure
    tolerance : float, a contact counts as formed within ``tolerance·r0`` (a hard version of
        the switching function of Best, Hummer & Eaton 2013, PNAS 110, 17874)
    """
    x, np_ = _torch(x)
    _check(x)
    c = torch.as_tensor(np.asarray(contacts), dtype=torch.long, device=x.device).reshape(-1, 2)
    if c.shape[0] == 0:
        raise ValueError("`contacts` is empty: the target has no native contacts")
    r0 = torch.as_tensor(np.asarray(native_distances), dtype=x.dtype, device=x.device)
    r = torch.linalg.vector_norm(x[..., c[:, 1], :] - x[..., c[:, 0], :], dim=-1)
    return _out((r < tolerance * r0).to(x.dtype).mean(-1), np_)


def kabsch_rmsd(x, reference):
    """RMSD to ``reference`` after optimal rotation and translation (Kabsch 1976), shape (...).

    Parameters
    ----------
    x : (..., n_beads, 3)
    reference : (n_beads, 3) or broadcastable to ``x``
    """
    x, np_ = _torch(x)
    ref, _ = _torch(reference)
    _check(x)
    _check(ref, "reference")
    ref = ref.to(dtype=x.dtype, device=x.device)
    if ref.shape[-2] != x.shape[-2]:
        raise ValueError(f"`reference` has {ref.shape[-2]} beads but `x` has {x.shape[-2]}")
    p = x - x.mean(-2, keepdim=True)
    q = ref - ref.mean(-2, keepdim=True)
    h = p.transpose(-1, -2) @ q  # (..., 3, 3) covariance
    u, s, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(u @ vt))  # −1: a reflection; flip the smallest axis
    s = torch.cat([s[..., :2], (s[..., 2] * d).unsqueeze(-1)], dim=-1)
    sq = (p * p).sum((-1, -2)) + (q * q).sum((-1, -2)) - 2.0 * s.sum(-1)
    return _out((sq.clamp_min(0.0) / x.shape[-2]).sqrt(), np_)
