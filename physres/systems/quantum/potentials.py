"""External potentials by name and time-dependent dipole fields ``E(t)`` (atomic units)."""

from __future__ import annotations

import math

import numpy as np

#: name → (function of (x, mass, **params), default params)
_POTENTIALS = {
    "free": (lambda x, m: np.zeros_like(x), {}),
    "harmonic": (
        lambda x, m, omega, center: 0.5 * m * omega**2 * (x - center) ** 2,
        {"omega": 1.0, "center": 0.0},
    ),
    "barrier": (
        lambda x, m, height, width, center: np.where(np.abs(x - center) < width / 2, height, 0.0),
        {"height": 1.0, "width": 1.0, "center": 0.0},
    ),
    "double_well": (
        lambda x, m, depth, separation: depth * ((x / (separation / 2)) ** 2 - 1.0) ** 2,
        {"depth": 1.0, "separation": 4.0},
    ),
    "soft_coulomb": (
        lambda x, m, charge, softening, center: -charge / np.sqrt((x - center) ** 2 + softening**2),
        {"charge": 1.0, "softening": 1.0, "center": 0.0},
    ),
}

POTENTIALS = tuple(_POTENTIALS)


def potential_values(
    potential, x: np.ndarray, mass: float = 1.0, params: dict | None = None
) -> np.ndarray:
    """``V(x)`` on the grid points ``x`` (float64, shape (n,)).

    ``potential`` is a name — ``free``; ``harmonic`` ½mω²(x − center)² (``omega``, ``center``);
    ``barrier`` of ``height`` for |x − center| < ``width``/2; ``double_well``
    ``depth``·((2x/``separation``)² − 1)² (minima at ±separation/2); ``soft_coulomb``
    −``charge``/√((x − center)² + ``softening``²) — or any callable ``V(x)`` on a numpy array.
    ``params`` overrides the named potential's defaults.
    """
    params = dict(params or {})
    if callable(potential):
        if params:
            raise ValueError("`potential_params` is only used with a named potential")
        V = np.asarray(potential(np.asarray(x)), dtype=np.float64)
        if V.shape != x.shape:
            V = np.broadcast_to(V, x.shape).copy()
    elif isinstance(potential, str) and potential in _POTENTIALS:
        fn, defaults = _POTENTIALS[potential]
        unknown = set(params) - set(defaults)
        if unknown:
            raise ValueError(
                f"`potential_params`: unknown parameter(s) {sorted(unknown)} for "
                f"{potential!r}; valid: {sorted(defaults)}"
            )
        kw = {**defaults, **{k: float(v) for k, v in params.items()}}
        V = fn(x, mass, **kw)
    else:
        raise ValueError(
            f"`potential` must be one of {POTENTIALS} or a callable V(x), got {potential!r}"
        )
    if not np.all(np.isfinite(V)):
        raise ValueError("`potential` must be finite on every grid point")
    return np.asarray(V, dtype=np.float64)


FIELDS = ("none", "cw", "pulse")


def dipole_field(
    kind: str = "none", amplitude: float = 0.0, omega: float = 1.0, duration: float = 10.0
):
    """The field ``E(t)`` of the coupling ``E(t)·x`` (length gauge), or ``None``.

    ``cw``: ``E0·sin(ωt)``. ``pulse``: ``E0·sin²(πt/T)·sin(ωt)`` for ``0 ≤ t ≤ T``, zero after.
    """
    if kind not in FIELDS:
        raise ValueError(f"`field` must be one of {FIELDS}, got {kind!r}")
    if kind == "none" or amplitude == 0.0:
        return None
    E0, w, T = float(amplitude), float(omega), float(duration)
    if not (math.isfinite(E0) and math.isfinite(w) and T > 0):
        raise ValueError(
            f"`field_*`: finite amplitude/omega and duration > 0 required, got "
            f"{amplitude!r}, {omega!r}, {duration!r}"
        )
    if kind == "cw":
        return lambda t: E0 * math.sin(w * float(t))

    def pulse(t):
        t = float(t)
        return E0 * math.sin(math.pi * t / T) ** 2 * math.sin(w * t) if 0.0 <= t <= T else 0.0

    return pulse
