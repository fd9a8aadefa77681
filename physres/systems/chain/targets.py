"""Target (native) structures for Gō-like chains: built-in folds and user coordinates.

Lengths are in units of the bond length (1 = one bead-to-bead distance). The built-in folds
are generated procedurally with every bond exactly one unit long:

* ``"helix"``: an α-helix-like coil, 100° per bead and 0.4 rise per bead (the Cα trace of an
  α-helix, 3.8 Å → 1), so beads ``i, i+3`` and ``i, i+4`` are in contact;
* ``"hairpin"``: a β-hairpin, two antiparallel pleated strands 1.4 apart joined by a one-bead
  turn at the middle of the chain.
"""

from __future__ import annotations

import math

import numpy as np
import torch

BUILTIN = ("helix", "hairpin")


def helix(n_beads: int) -> np.ndarray:
    """α-helix-like coil, shape (n_beads, 3), unit bonds, axis along z, centred."""
    turn = math.radians(100.0)
    radius, rise = 2.3 / 3.8, 1.5 / 3.8
    i = np.arange(n_beads)
    x = np.stack([radius * np.cos(turn * i), radius * np.sin(turn * i), rise * i], axis=1)
    x /= np.linalg.norm(x[1] - x[0])  # every bond equal by symmetry; make it exactly 1
    return x - x.mean(axis=0)


def hairpin(n_beads: int, half_gap: float = 0.7, pleat: float = 0.25) -> np.ndarray:
    """β-hairpin, shape (n_beads, 3): strands along −x at y = ∓``half_gap``, pleated in z.

    The turn bead ``(n_beads - 1) // 2`` sits at ``(c, 0, 0)``; bead ``turn − k`` faces bead
    ``turn + k`` across the strands at distance ``2·half_gap``.
    """
    step = math.sqrt(1.0 - (2 * pleat) ** 2)  # pleated strand: unit bonds
    c = math.sqrt(1.0 - half_gap**2 - pleat**2)  # turn bead one unit from both strand ends
    turn = (n_beads - 1) // 2
    x = np.zeros((n_beads, 3))
    x[turn] = (c, 0.0, 0.0)
    for i in range(n_beads):
        if i == turn:
            continue
        k = abs(i - turn) - 1  # 0 for the beads next to the turn
        side = -1.0 if i < turn else 1.0
        x[i] = (-step * k, side * half_gap, pleat * (-1.0) ** k)
    return x - x.mean(axis=0)


def resolve(target, n_beads: int) -> np.ndarray | None:
    """The target coordinates, shape (n_beads, 3), from a name, an array or ``None``."""
    if target is None:
        return None
    if isinstance(target, str):
        if target not in BUILTIN:
            raise ValueError(
                f"`target` must be one of {BUILTIN}, coordinates of shape "
                f"(n_beads, 3), or None; got {target!r}"
            )
        return {"helix": helix, "hairpin": hairpin}[target](n_beads)
    if isinstance(target, torch.Tensor):
        target = target.detach().cpu().numpy()
    try:
        x = np.asarray(target, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"`target` must be a name, an array of shape (n_beads, 3) or None; "
            f"got {type(target).__name__}"
        ) from None
    if x.shape != (n_beads, 3):
        raise ValueError(
            f"`target` coordinates must have shape (n_beads, 3) = ({n_beads}, 3), got {x.shape}"
        )
    if not np.isfinite(x).all():
        raise ValueError("`target` coordinates contain non-finite values")
    bonds = np.linalg.norm(np.diff(x, axis=0), axis=1)
    if (bonds < 1e-6).any():
        raise ValueError(
            f"`target` has coincident consecutive beads (bond {int(bonds.argmin())} "
            f"has length {bonds.min():.3g}); consecutive beads must be distinct"
        )
    return x


def native_contacts(x: np.ndarray, cutoff: float, min_separation: int = 3) -> np.ndarray:
    """Pairs ``(i, j)``, ``j − i ≥ min_separation``, closer than ``cutoff`` in ``x``: (n_c, 2)."""
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    i, j = np.triu_indices(len(x), k=min_separation)
    keep = d[i, j] < cutoff
    return np.stack([i[keep], j[keep]], axis=1)
