"""Distance between invariant measures: Wasserstein-1 of each state component over long runs.

A chaotic emulator cannot follow a trajectory for long, but it should reproduce the attractor's
statistics. Pool each component over every trajectory and frame (after a transient, every
``every``-th frame) of a long emulator run and of a long reference run, and compare the two
1-D distributions by Wasserstein-1. Two finite samples of the same measure are not at distance
zero: score the reference against an independent reference sample of the same size (another
seed) to get the noise floor below which a difference means nothing.

>>> w1 = invariant_measure_w1(emulator_long, reference_long, transient=10_000, every=10)
>>> floor = invariant_measure_w1(reference_other_seed, reference_long, every=10)

:func:`split_half_w1` gives the spread of that floor: the same distance between random halves
of a reference sample.
"""

from __future__ import annotations

import numpy as np

from .metrics import as_numpy


def invariant_measure_w1(samples, reference, transient: int = 0, every: int = 1) -> np.ndarray:
    """Wasserstein-1 distance of each state component between two long-run samples.

    Parameters
    ----------
    samples : array or Tensor, shape (batch, n_t, *state_shape)
        Trajectories of the stepper being judged (e.g. an emulator's closed loop).
    reference : array or Tensor, shape (batch_ref, n_t_ref, *state_shape)
        Trajectories sampling the reference measure; batch and length may differ from
        ``samples``, the state shape may not.
    transient : int
        Frames dropped from the start of every trajectory of both (the approach to the
        attractor).
    every : int
        Keep every ``every``-th frame after the transient (consecutive frames are strongly
        correlated; subsampling costs little accuracy and makes the sort cheaper).

    Returns
    -------
    ndarray, shape state_shape: W1 of each component (the component's units), each computed
    by :func:`scipy.stats.wasserstein_distance` over all kept frames of all trajectories.
    """
    from scipy.stats import wasserstein_distance

    a, b = as_numpy(samples, "samples").real, as_numpy(reference, "reference").real
    for name, x in (("samples", a), ("reference", b)):
        if x.ndim < 3:
            raise ValueError(f"`{name}` must have shape (batch, n_t, *state_shape), got {x.shape}")
    if a.shape[2:] != b.shape[2:]:
        raise ValueError(
            f"`samples` and `reference` must have the same state shape, got "
            f"{a.shape[2:]} and {b.shape[2:]}"
        )
    for name, v in (("transient", transient), ("every", every)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"`{name}` must be an int, got {type(v).__name__}")
    if transient < 0:
        raise ValueError(f"`transient` must be >= 0, got {transient}")
    if every < 1:
        raise ValueError(f"`every` must be >= 1, got {every}")
    for name, x in (("samples", a), ("reference", b)):
        if transient >= x.shape[1]:
            raise ValueError(
                f"`transient` ({transient}) leaves no frame of `{name}` ({x.shape[1]} frames)"
            )
    shape = a.shape[2:]
    a = a[:, transient::every].reshape(-1, int(np.prod(shape, dtype=int)))
    b = b[:, transient::every].reshape(-1, a.shape[1])
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(
            "`samples` and `reference` must be finite (a diverged run has no invariant measure)"
        )
    w1 = [wasserstein_distance(a[:, k], b[:, k]) for k in range(a.shape[1])]
    return np.asarray(w1, dtype=np.float64).reshape(shape)


def split_half_w1(reference, transient: int = 0, every: int = 1, n_splits: int = 20, seed: int = 0):
    """:func:`invariant_measure_w1` between random halves of the reference trajectories.

    Each half is an independent sample of the same measure, the size of a sample judged
    against one half, so the result is the noise floor of that comparison and its spread
    (a fixed split, e.g. a second reference sample against the first, is one draw of it).

    Parameters
    ----------
    reference : array or Tensor, shape (batch, n_t, *state_shape), batch >= 2
    transient, every : as in :func:`invariant_measure_w1`
    n_splits : int, random halvings
    seed : int, seed of the permutations

    Returns
    -------
    ndarray, shape (n_splits, *state_shape).
    """
    ref = as_numpy(reference, "reference")
    if ref.ndim < 3 or ref.shape[0] < 2:
        raise ValueError(
            f"`reference` must have shape (batch >= 2, n_t, *state_shape), got {ref.shape}"
        )
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 1:
        raise ValueError(f"`n_splits` must be a positive int, got {n_splits!r}")
    rng = np.random.default_rng(seed)
    half = ref.shape[0] // 2
    out = []
    for _ in range(n_splits):
        p = rng.permutation(ref.shape[0])
        out.append(
            invariant_measure_w1(
                ref[p[:half]], ref[p[half : 2 * half]], transient=transient, every=every
            )
        )
    return np.asarray(out)
