"""Error metrics of a predicted trajectory against a reference.

Every function takes numpy arrays or torch tensors (converted to numpy, float64 or
complex128) and returns numpy. Trajectories are ``(batch, n_t, *state_shape)``. The first
``context`` frames of a prediction are the inputs it was given (the initial state of a
rollout), so they are dropped before scoring, never averaged in.
"""

from __future__ import annotations

import math

import numpy as np


def as_numpy(x, name: str = "x") -> np.ndarray:
    """``x`` as a float64 or complex128 numpy array (torch tensors are detached and copied)."""
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number)):
        raise TypeError(f"`{name}` must be a numeric array or tensor, got dtype {a.dtype}")
    return a.astype(np.complex128 if np.iscomplexobj(a) else np.float64, copy=False)


def _pair(pred, ref, context: int) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = as_numpy(pred, "pred"), as_numpy(ref, "ref")
    if pred.shape != ref.shape:
        raise ValueError(
            f"`pred` and `ref` must have the same shape (batch, n_t, *state_shape), "
            f"got {pred.shape} and {ref.shape}"
        )
    if pred.ndim < 2:
        raise ValueError(f"`pred` must have shape (batch, n_t, *state_shape), got {pred.shape}")
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise ValueError(f"`context` must be an int >= 0, got {context!r}")
    if context >= pred.shape[1]:
        raise ValueError(f"`context` = {context} leaves no frame to score (n_t = {pred.shape[1]})")
    return pred[:, context:], ref[:, context:]


def _sq_norm(a: np.ndarray) -> np.ndarray:
    """Squared L2 norm over the state axes: (batch, n_t, *state) → (batch, n_t)."""
    return (np.abs(a) ** 2).reshape(a.shape[0], a.shape[1], -1).sum(-1)


def relative_l2(pred, ref, context: int = 1) -> np.ndarray:
    """Relative L2 error per step, ``‖pred_t − ref_t‖ / ‖ref_t‖``.

    Parameters
    ----------
    pred, ref : array, shape (batch, n_t, *state_shape)
    context : int
        Leading frames that were inputs (1 for a rollout from the initial state); dropped.

    Returns
    -------
    ndarray, shape (batch, n_t - context)
    """
    pred, ref = _pair(pred, ref, context)
    den = _sq_norm(ref)
    if np.any(den == 0):
        raise ValueError(
            "`ref` has a zero state, where the relative error is undefined; use `nrmse` instead"
        )
    return np.sqrt(_sq_norm(pred - ref) / den)


def nrmse(pred, ref, context: int = 1, scale=None) -> np.ndarray:
    """Normalised root-mean-square error per step, ``RMS_t(pred − ref) / σ``.

    ``σ`` is the reference's standard deviation pooled over the batch, the scored frames and
    the state components (the attractor's spread for a chaotic system; Vlachas et al. 2020),
    unless ``scale`` gives it. Unlike :func:`relative_l2` it stays defined when a reference
    state passes through zero.

    Returns
    -------
    ndarray, shape (batch, n_t - context)
    """
    pred, ref = _pair(pred, ref, context)
    if scale is None:
        flat = ref.reshape(-1, int(np.prod(ref.shape[2:], dtype=int)))
        scale = math.sqrt(float(np.mean(np.var(flat, axis=0))))
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(
            f"`scale` must be finite and > 0, got {scale!r} (a constant reference "
            "has no spread: pass `scale`)"
        )
    n = int(np.prod(pred.shape[2:], dtype=int))
    return np.sqrt(_sq_norm(pred - ref) / n) / scale


def valid_prediction_time(
    error, t, threshold: float = 0.5, lyapunov_exponent=None, t0: float | None = None
) -> np.ndarray:
    """The longest time over which the error stays at or below ``threshold``.

    ``VPT = t_f − t0`` with ``t_f`` the last time such that ``error(t) ≤ threshold`` for every
    scored ``t ≤ t_f`` (Vlachas et al. 2020, Neural Networks 126); 0 when the first scored
    frame already exceeds it, ``t[-1] − t0`` (a lower bound) when it never does.

    Parameters
    ----------
    error : array, shape (batch, n) or (n,)
        Scored errors, e.g. :func:`nrmse`.
    t : array, shape (n,)
        Times of the scored frames.
    threshold : float
    lyapunov_exponent : float, optional
        The largest Lyapunov exponent ``λ_max`` of the true system: the result is then in
        Lyapunov times, ``λ_max · VPT``.
    t0 : float, optional
        Time at which the prediction starts (default: the frame before ``t[0]``,
        ``t[0] − (t[1] − t[0])``, i.e. the last context frame of an evenly spaced grid).

    Returns
    -------
    ndarray, shape (batch,) (or a 0-d array for 1-D ``error``)
    """
    err = as_numpy(error, "error").real
    t = as_numpy(t, "t").real.reshape(-1)
    single = err.ndim == 1
    err = err.reshape(1, -1) if single else err
    if err.ndim != 2 or err.shape[1] != t.shape[0]:
        raise ValueError(
            f"`error` must have shape (batch, n) with n = len(t) = {t.shape[0]}, "
            f"got {as_numpy(error).shape}"
        )
    if not (isinstance(threshold, (int, float)) and threshold > 0):
        raise ValueError(f"`threshold` must be a number > 0, got {threshold!r}")
    if t0 is None:
        if t.shape[0] < 2:
            raise ValueError("`t0` is required when only one frame is scored")
        t0 = t[0] - (t[1] - t[0])
    exceeded = ~(err <= threshold)  # nan counts as exceeded
    first = np.where(exceeded.any(1), exceeded.argmax(1), t.shape[0])  # (batch,)
    t_last = np.concatenate([[t0], t])[first]  # time of the last frame before the first excess
    vpt = t_last - t0
    if lyapunov_exponent is not None:
        lam = float(lyapunov_exponent)
        if not (math.isfinite(lam) and lam > 0):
            raise ValueError(f"`lyapunov_exponent` must be finite and > 0, got {lam!r}")
        vpt = vpt * lam
    return vpt[0] if single else vpt


def invariant_drift(values, relative: bool = True) -> np.ndarray:
    """Drift of a conserved quantity from its initial value, ``(I_t − I_0) / |I_0|``.

    Parameters
    ----------
    values : array, shape (batch, n_t)
        The invariant along each trajectory (energy, norm, momentum...).
    relative : bool
        Divide by ``|I_0|``; ``False`` gives ``I_t − I_0`` (for invariants that start at 0).

    Returns
    -------
    ndarray, shape (batch, n_t), signed (take ``abs().max()`` for the worst drift).
    """
    v = as_numpy(values, "values").real
    if v.ndim != 2:
        raise ValueError(f"`values` must have shape (batch, n_t), got {v.shape}")
    drift = v - v[:, :1]
    if relative:
        scale = np.abs(v[:, :1])
        if np.any(scale == 0):
            raise ValueError(
                "`values` starts at 0 for some trajectory, so a relative drift is "
                "undefined: pass relative=False"
            )
        drift = drift / scale
    return drift


def fidelity(psi, phi, dx: float, normalize: bool = False) -> np.ndarray:
    """Fidelity of wavefunctions on a grid, ``|⟨ψ|φ⟩|²`` with ``⟨ψ|φ⟩ = Σ ψ̄ φ · dx``.

    Parameters
    ----------
    psi, phi : array, shape (..., n)
        Wavefunctions on the same uniform grid (last axis); leading axes broadcast.
    dx : float
        Grid spacing.
    normalize : bool
        Divide by ``⟨ψ|ψ⟩⟨φ|φ⟩`` (then the result is in [0, 1] even when a stepper does not
        conserve the norm; by default a norm error shows up in the fidelity).

    Returns
    -------
    ndarray, shape (...)
    """
    psi, phi = as_numpy(psi, "psi"), as_numpy(phi, "phi")
    if psi.shape[-1] != phi.shape[-1]:
        raise ValueError(
            f"`psi` and `phi` must share the grid axis (last), got {psi.shape} and {phi.shape}"
        )
    if not (isinstance(dx, (int, float)) and math.isfinite(dx) and dx > 0):
        raise ValueError(f"`dx` must be a finite number > 0, got {dx!r}")
    overlap = np.abs(np.sum(np.conj(psi) * phi, axis=-1) * dx) ** 2
    if normalize:
        norms = (np.sum(np.abs(psi) ** 2, -1) * dx) * (np.sum(np.abs(phi) ** 2, -1) * dx)
        overlap = overlap / norms
    return overlap


def wasserstein1(samples, reference_samples) -> float:
    """Wasserstein-1 (earth mover's) distance between two 1-D empirical distributions.

    Both inputs are flattened to samples of one observable (e.g. ``x(t)`` over a long
    trajectory, or the radius of gyration over an ensemble); the distance has the
    observable's units. Computed by :func:`scipy.stats.wasserstein_distance`.
    """
    from scipy.stats import wasserstein_distance

    a = as_numpy(samples, "samples").real.reshape(-1)
    b = as_numpy(reference_samples, "reference_samples").real.reshape(-1)
    if a.size == 0 or b.size == 0:
        raise ValueError("`samples` and `reference_samples` must not be empty")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("`samples` and `reference_samples` must be finite")
    return float(wasserstein_distance(a, b))
