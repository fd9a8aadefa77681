"""Bead-chain potential terms with analytic, batched forces.

Every term maps positions ``x`` of shape (batch, n_beads, 3) to ``(energy, force)`` with
``energy`` of shape (batch,) and ``force = −∇U`` of shape (batch, n_beads, 3). Index tensors
(long) select the beads a term acts on; parameters broadcast over them.

Terms
-----
* pair springs (bonds, staples): harmonic ``½k(r − r0)²`` or shifted FENE
  ``−½kR²·ln(1 − ((r − r0)/R)²)`` (same stiffness ``k`` near ``r0``, diverges at ``|r − r0| = R``;
  Kremer & Grest 1990 use the unshifted form);
* bending: ``½k(cos θ − cos θ0)²`` for the angle θ at the middle bead of each triple;
* torsion: ``k(1 − cos(φ − φ0))`` for the dihedral φ of each quadruple (IUPAC sign convention);
* WCA repulsion: ``4ε((σ/r)¹² − (σ/r)⁶) + ε`` for ``r < 2^(1/6)σ``
  (Weeks, Chandler & Andersen 1971);
* Gō native contacts: ``ε(5(r0/r)¹² − 6(r0/r)¹⁰)``, minimum ``−ε`` at the native distance ``r0``
  (Clementi, Nymeyer & Onuchic 2000).
"""

from __future__ import annotations

import math

import torch


def harmonic(r, k, r0):
    """``u(r) = ½k(r − r0)²`` and ``u'(r)``."""
    return 0.5 * k * (r - r0) ** 2, k * (r - r0)


def fene(r, k, r0, span):
    """Shifted FENE ``u(r) = −½k·span²·ln(1 − ((r − r0)/span)²)`` and ``u'(r)``."""
    s = (r - r0) / span
    return -0.5 * k * span**2 * torch.log1p(-(s * s)), k * (r - r0) / (1.0 - s * s)


def wca(r, epsilon, sigma):
    """WCA ``u(r)``: the Lennard-Jones core cut and shifted at 2^(1/6)σ, and ``u'(r)``."""
    inside = r < 2.0 ** (1.0 / 6.0) * sigma
    s6 = (sigma / r) ** 6
    u = torch.where(inside, 4.0 * epsilon * (s6 * s6 - s6) + epsilon, 0.0)
    return u, torch.where(inside, -24.0 * epsilon * (2.0 * s6 * s6 - s6) / r, 0.0)


def go(r, epsilon, r0):
    """Gō 12-10 ``u(r) = ε(5(r0/r)¹² − 6(r0/r)¹⁰)`` and ``u'(r)``."""
    s2 = (r0 / r) ** 2
    s10 = s2**5
    return epsilon * (5.0 * s10 * s2 - 6.0 * s10), 60.0 * epsilon * (s10 - s10 * s2) / r


def radial(x, i, j, terms):
    """Energy and force of radial pair terms in one gather and one scatter.

    ``terms`` is a list of ``(count, fn)``: the next ``count`` pairs of ``(i, j)`` get
    ``fn(r) -> (u, u')`` with ``r`` of shape (batch, count).
    """
    d = x[:, j] - x[:, i]  # (B, P, 3)
    r = torch.linalg.vector_norm(d, dim=-1)  # (B, P)
    us, gs, start = [], [], 0
    for count, fn in terms:
        u, g = fn(r[:, start : start + count])
        us.append(u)
        gs.append(g)
        start += count
    e, g = torch.cat(us, dim=1), torch.cat(gs, dim=1)
    f = (g / r).unsqueeze(-1) * d  # force on i; −f on j
    force = torch.zeros_like(x)
    force.index_add_(1, torch.cat([i, j]), torch.cat([f, -f], dim=1))
    return e.sum(-1), force


def harmonic_pairs(x, i, j, k, r0):
    """``½k(r − r0)²`` on pairs ``(i, j)``."""
    return radial(x, i, j, [(len(i), lambda r: harmonic(r, k, r0))])


def fene_pairs(x, i, j, k, r0, span):
    """Shifted FENE on pairs ``(i, j)``."""
    return radial(x, i, j, [(len(i), lambda r: fene(r, k, r0, span))])


def wca_pairs(x, i, j, epsilon, sigma):
    """WCA repulsion on pairs ``(i, j)``."""
    return radial(x, i, j, [(len(i), lambda r: wca(r, epsilon, sigma))])


def go_pairs(x, i, j, epsilon, r0):
    """Gō 12-10 attraction on native pairs ``(i, j)``."""
    return radial(x, i, j, [(len(i), lambda r: go(r, epsilon, r0))])


def bending(x, i, k, cos0):
    """``½k(cos θ − cos θ0)²`` with θ the angle at bead ``i`` between bonds to ``i−1``, ``i+1``.

    ``k`` and ``cos0`` broadcast against the triples, shape (A,) or scalars.
    """
    u = x[:, i - 1] - x[:, i]  # (B, A, 3)
    v = x[:, i + 1] - x[:, i]
    nu = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    nv = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    c = (u * v).sum(-1, keepdim=True) / (nu * nv)  # (B, A, 1)
    s = c.squeeze(-1) - cos0  # (B, A)
    g = (k * s).unsqueeze(-1)  # dU/dcos θ
    fa = -g * (v / (nu * nv) - c * u / nu**2)
    fc = -g * (u / (nu * nv) - c * v / nv**2)
    force = torch.zeros_like(x)
    force.index_add_(1, i - 1, fa)
    force.index_add_(1, i + 1, fc)
    force.index_add_(1, i, -(fa + fc))
    return (0.5 * k * s**2).sum(-1), force


def dihedral(x, i):
    """Dihedral angles φ of quadruples ``(i, i+1, i+2, i+3)``: (B, D), in (−π, π]."""
    b1, b2, b3 = (x[:, i + 1] - x[:, i], x[:, i + 2] - x[:, i + 1], x[:, i + 3] - x[:, i + 2])
    m, n = torch.linalg.cross(b1, b2), torch.linalg.cross(b2, b3)
    nb2 = torch.linalg.vector_norm(b2, dim=-1)
    return torch.atan2(nb2 * (b1 * n).sum(-1), (m * n).sum(-1))


def torsion(x, i, k, phi0):
    """``k(1 − cos(φ − φ0))`` on the dihedrals of quadruples ``(i, i+1, i+2, i+3)``.

    Gradient of φ after Blondel & Karplus (1996), J. Comput. Chem. 17, 1132.
    """
    b1, b2, b3 = (x[:, i + 1] - x[:, i], x[:, i + 2] - x[:, i + 1], x[:, i + 3] - x[:, i + 2])
    m, n = torch.linalg.cross(b1, b2), torch.linalg.cross(b2, b3)
    nb2 = torch.linalg.vector_norm(b2, dim=-1, keepdim=True)
    phi = torch.atan2(nb2.squeeze(-1) * (b1 * n).sum(-1), (m * n).sum(-1))
    dphi = k * torch.sin(phi - phi0)  # dU/dφ, (B, D)
    g0 = -nb2 * m / (m * m).sum(-1, keepdim=True)  # ∂φ/∂x_i
    g3 = nb2 * n / (n * n).sum(-1, keepdim=True)  # ∂φ/∂x_{i+3}
    p = (b1 * b2).sum(-1, keepdim=True) / nb2**2
    q = (b3 * b2).sum(-1, keepdim=True) / nb2**2
    g1 = q * g3 - (1.0 + p) * g0
    g2 = p * g0 - (1.0 + q) * g3
    w = -dphi.unsqueeze(-1)
    force = torch.zeros_like(x)
    force.index_add_(
        1, torch.cat([i, i + 1, i + 2, i + 3]), torch.cat([w * g0, w * g1, w * g2, w * g3], dim=1)
    )
    return (k * (1.0 - torch.cos(phi - phi0))).sum(-1), force


# --- fused forms used by the bead_chain force -----------------------------------------------
# Coordinates-first layout: positions ``xs`` of shape (3, batch, N) (or (3, batch·N) flat), so
# per-pair arithmetic broadcasts over the leading axis and sums over it (fast on CPU), and each
# term takes a handful of ops. Pair terms return ``u`` and ``w = u'(r)/r`` from squared
# distances; the force on bead ``i`` of pair ``(i, j)`` is ``w·(x_j − x_i)``.
def backbone(xs, k_bond, r0, k_angle, cos0, span=None, energy=True):
    """Bonds ``(i, i+1)`` and bending at every inner bead, from the bond vectors
    ``d_k = x_{k+1} − x_k`` computed once.

    ``xs`` (3, batch, N); ``r0`` (N−1,) and ``cos0`` (N−2,) are the rest lengths and angle
    cosines; ``span`` selects the shifted FENE bond. Returns the energy (batch,) (``None``
    unless ``energy``) and the force (3, batch, N): ``G_j − G_{j−1}`` with ``G = ∂U/∂d``.
    """
    d = xs[..., 1:] - xs[..., :-1]
    r2 = (d * d).sum(0)  # (B, N−1)
    inv = r2.rsqrt()
    u = None
    if span is None:  # ∂U/∂d = k(r − r0)/r · d
        grad = (k_bond - (k_bond * r0) * inv) * d
        u = (0.5 * k_bond) * ((r2 * inv - r0) ** 2).sum(-1) if energy else None
    else:
        ub, g = fene(r2 * inv, k_bond, r0, span)
        grad = (g * inv) * d
        u = ub.sum(-1) if energy else None
    if k_angle > 0:
        e = d * inv
        a, b = e[..., :-1], e[..., 1:]
        m = (a * b).sum(0)  # −cos θ at the inner beads, (B, N−2)
        w = (m + cos0) * (-k_angle)  # dU/dcos θ = k(cos θ − cos θ0)
        # ∂cos θ/∂d_{i−1} = −(b + cos θ·a)/r_{i−1},  ∂cos θ/∂d_i = −(a + cos θ·b)/r_i
        grad[..., :-1] -= (w * inv[:, :-1]) * torch.addcmul(b, m, a, value=-1.0)
        grad[..., 1:] -= (w * inv[:, 1:]) * torch.addcmul(a, m, b, value=-1.0)
        if energy:
            u = u + (0.5 * k_angle) * ((m + cos0) ** 2).sum(-1)
    return u, torch.cat([grad[..., :1], grad[..., 1:] - grad[..., :-1], -grad[..., -1:]], -1)


def wca_r2(r2, epsilon, sigma, energy=True):
    """WCA on squared distances: ``u`` (``None`` unless ``energy``) and ``w = u'(r)/r``, zero
    beyond ``2^(1/6)σ``."""
    inside = r2 < 2.0 ** (1.0 / 3.0) * sigma**2
    inv = r2.reciprocal()
    s6 = (inv * sigma**2 if sigma != 1.0 else inv) ** 3
    w = torch.where(inside, (s6 - 0.5) * s6 * inv * (-48.0 * epsilon), 0.0)
    return (
        torch.where(inside, (s6 - 1.0) * s6 * (4.0 * epsilon) + epsilon, 0.0) if energy else None
    ), w


def go_r2(r2, epsilon, r0_squared, energy=True):
    """Gō 12-10 on squared distances: ``u`` (``None`` unless ``energy``) and ``w = u'(r)/r``."""
    inv = r2.reciprocal()
    s2 = r0_squared * inv
    s4 = s2 * s2
    s10 = s4 * s4 * s2
    w = (1.0 - s2) * s10 * inv * (60.0 * epsilon)
    return ((5.0 * s2 - 6.0) * s10 * epsilon if energy else None), w


def harmonic_r2(r2, k, r0, energy=True):
    """``½k(r − r0)²`` on squared distances: ``u`` (``None`` unless ``energy``) and
    ``w = u'(r)/r``."""
    inv = r2.rsqrt()
    return ((0.5 * k) * (r2 * inv - r0) ** 2 if energy else None), k - (k * r0) * inv


def pair_force(xs, fs, i, j, fn):
    """Add the pair term ``fn(r²) -> (u, w)`` on flat pairs ``(i, j)`` to ``fs``; return ``u``.

    ``xs`` and ``fs``: positions and the force being accumulated, (3, batch·N).
    """
    d = xs[:, j] - xs[:, i]  # (3, P)
    u, w = fn((d * d).sum(0))
    f = w * d
    fs.index_add_(1, i, f)
    fs.index_add_(1, j, -f)
    return u


# --- the force alone, in fewer ops (what Langevin steppers read) ------------------------------
def pair_coefficients(kind: str, count: int, dtype, **p) -> torch.Tensor:
    """Per-pair coefficients ``(c0, c1, c8, c12, c14, cap)`` (6, count) of the unified radial
    term ``w = u'(r)/r = min(c0 + c1/r + (c8 + (c12 + c14/r²)/r⁴)/r⁸, cap)``.

    ``kind``: ``"harmonic"`` (``k``, ``r0``; per-pair tensors or floats), ``"go"``
    (``epsilon``, ``r0``) or ``"wca"`` (``epsilon``, ``sigma``).
    """
    c = torch.zeros(6, count, dtype=dtype)
    c[5] = math.inf
    if kind == "harmonic":  # k − k·r0/r
        c[0], c[1] = p["k"], -p["k"] * p["r0"]
    elif kind == "go":  # 60ε(r0¹⁰/r¹² − r0¹²/r¹⁴)
        r0 = torch.as_tensor(p["r0"], dtype=dtype)
        c[3], c[4] = 60.0 * p["epsilon"] * r0**10, -60.0 * p["epsilon"] * r0**12
    elif kind == "wca":  # −48ε(σ¹²/r¹⁴ − ½σ⁶/r⁸) inside 2^(1/6)σ
        eps, sigma = p["epsilon"], p["sigma"]
        c[2], c[4] = 24.0 * eps * sigma**6, -48.0 * eps * sigma**12
        c[5] = 0.0  # the cut at 2^(1/6)σ, where the LJ force changes sign
    else:
        raise ValueError(f"`kind` must be 'harmonic', 'go' or 'wca', got {kind!r}")
    return c


def unified_pair_w(r2, c, staples=True, cutoff=True):
    """``w = u'(r)/r`` of :func:`pair_coefficients` ``c`` (6, P) on squared distances (P,)."""
    inv = r2.reciprocal()
    inv4 = inv * inv
    t = torch.addcmul(c[3], c[4], inv)
    t = torch.addcmul(c[2], t, inv4)
    inv4.square_()  # r⁻⁸
    w = torch.addcmul(c[0], c[1], inv.sqrt()) if staples else c[0].clone()
    w.addcmul_(t, inv4)
    # WCA's LJ force is attractive (w > 0) exactly beyond its cutoff 2^(1/6)σ, so the cut is
    # min(w, 0) there: c[5] = 0 on WCA pairs, +inf on the others
    return torch.minimum(w, c[5]) if cutoff else w


def backbone_grad(xs, k_bond, k_r0, k_angle, cos0k):
    """``G = ∂U/∂d`` (3, batch, N−1) of harmonic bonds and bending on the bond vectors
    ``d_k = x_{k+1} − x_k`` of ``xs`` (3, batch, N); the force is ``G_j − G_{j−1}`` on bead j.

    ``k_bond`` a 0-d tensor, ``k_r0`` = k_bond·r0 (N−1,), ``cos0k`` = −k_angle·cos θ0 (N−2,).
    """
    d = xs[..., 1:] - xs[..., :-1]
    inv = (d * d).sum(0).rsqrt_()  # (B, N−1)
    grad = torch.addcmul(k_bond, k_r0, inv, value=-1.0) * d
    if k_angle > 0:
        e = d * inv
        a, b = e[..., :-1], e[..., 1:]
        m = (a * b).sum(0)  # −cos θ at the inner beads, (B, N−2)
        w = torch.add(cos0k, m, alpha=-k_angle)  # dU/dcos θ = k(cos θ − cos θ0)
        grad[..., :-1].addcmul_(w * inv[:, :-1], torch.addcmul(b, m, a, value=-1.0), value=-1.0)
        grad[..., 1:].addcmul_(w * inv[:, 1:], torch.addcmul(a, m, b, value=-1.0), value=-1.0)
    return grad
