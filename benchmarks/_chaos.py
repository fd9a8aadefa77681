"""Chaotic emulators side by side on the same data: physres ResNet and Neural ODE (fit on its
defaults), an echo state network (reservoirpy matrices and ridge readout) and RK4 on the
true field, all stepping at the same dt.

Scores, on held-out initial conditions (predictions from t = 5 of each test trajectory):
valid prediction time (first time ‖x̂ − x‖ / ⟨‖x‖²⟩^½ > 0.4, in Lyapunov times), each
emulator's own λ1 (physres.validation.lyapunov_exponent on its map), the Wasserstein-1
distance of each coordinate, and training time.

W1 two ways. ``W1_*`` (the first measure): 100 time units from 8 held-out states against the
reference over the same span — at that size two samples of the *same* measure differ by ~0.27
in x (RK4 on the true field scores as much), so it mostly measures which lobe each short run
happened to visit. ``W1inv_*`` (Lorenz-63): the distance between invariant measures,
:func:`physres.validation.invariant_measure_w1` between each emulator's closed loop from 16
held-out states over 1000 time units after a 100-time-unit transient (every 0.1 time units)
and DOP853 from 16 fresh states (another seed) over the same span; the row "DOP853, 16 other
states" scores a second such reference sample against the first: the noise floor.
``W1sym_*``: the same on (|x|, |y|, z), the coordinates folded by the system's symmetry
(x, y, z) ↦ (−x, −y, z): blind to a preference for one lobe (which ``W1inv_x`` sees), free of
the lobe-occupancy noise that dominates ``W1inv_x``, so it resolves a bias of the map on the
attractor ~8× finer.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import physres
from physres.errors import DivergenceError
from physres.validation import invariant_measure_w1, lyapunov_exponent, wasserstein1

THRESHOLD = 0.4
T_START = 5.0
N_LONG = 8  # initial conditions of the 100-time-unit runs (attractor statistics)
N_ESN = 12  # training trajectories of the echo state network (its states fill memory)
# invariant-measure W1: N_INV closed loops of T_INV time units after T_TRANSIENT, every EVERY-th
# step, against 2 × N_INV DOP853 trajectories from fresh states (REF_SEED): the first half is
# the reference, the second half the noise floor
N_INV, T_TRANSIENT, T_INV, EVERY, REF_SEED = 16, 100.0, 1000.0, 10, 777

# system -> settings; λ_ref: literature λ1 (Lorenz-63: Sprott 2003; Lorenz-96 N=40, F=8:
# Karimi & Paul 2010), used for the Lyapunov time
SETUPS = {
    "lorenz63": dict(
        params={},
        dt=0.01,
        n_train=64,
        t_train=40.0,
        n_test=32,
        t_test=105.0,
        lam_ref=0.9056,
        horizon=30.0,
        coords=(0, 1, 2),
        resnet=dict(net="poly", net_options={"degree": 6}),
        node=dict(net="poly", net_options={"degree": 2}, method="rk4", step_size=0.0025),
        esn=dict(
            units=1000,
            sr=1.1,
            lr=0.6,
            input_scaling=0.2,
            ridge=1e-7,
            rc_connectivity=0.01,
            bias=1.0,
        ),
        invariant=True,
    ),
    "lorenz96": dict(
        params={"N": 40, "F": 8.0},
        dt=0.01,
        n_train=40,
        t_train=20.0,
        n_test=32,
        t_test=105.0,
        lam_ref=1.68,
        horizon=10.0,
        coords=(0, 1, 2),
        resnet=dict(net="poly", net_options={"degree": 3, "stencil": (-4, 2)}),
        node=dict(
            net="poly",
            net_options={"degree": 2, "stencil": (-2, 1)},
            method="rk4",
            step_size=0.0025,
        ),
        esn=dict(
            units=1000,
            sr=0.9,
            lr=0.6,
            input_scaling=0.1,
            ridge=1e-6,
            rc_connectivity=0.01,
            bias=1.0,
        ),
    ),
}


class EchoStateNetwork:
    """Leaky ESN ``r ← (1 − a) r + a tanh(W r + W_in u + b)``, ``u ← W_out [1, r]`` in closed
    loop; ``W``, ``W_in`` from reservoirpy's Reservoir initialisers, ``W_out`` from its Ridge
    node, run batched in torch (float64). As a map on the reservoir state it has a Lyapunov
    exponent like any stepper (``step``)."""

    def __init__(self, units, sr, lr, input_scaling, ridge, rc_connectivity, bias=0.0, seed=0):
        from reservoirpy.mat_gen import uniform
        from reservoirpy.nodes import Reservoir, Ridge

        # a random bias U[-b, b] breaks the x ↦ −x symmetry of an unbiased tanh reservoir
        # (Lorenz-63 is symmetric only in (x, y)); without it the closed loop loses z
        self.res = Reservoir(
            units,
            lr=lr,
            sr=sr,
            input_scaling=input_scaling,
            rc_connectivity=rc_connectivity,
            seed=seed,
            bias=lambda n, **k: uniform(n, low=-bias, high=bias, **k),
        )
        self.readout = Ridge(ridge=ridge)
        self.lr = lr

    def _matrices(self, dim):
        self.res.initialize(np.zeros((1, dim)))
        w = self.res.W.toarray() if hasattr(self.res.W, "toarray") else np.asarray(self.res.W)
        win = (
            self.res.Win.toarray() if hasattr(self.res.Win, "toarray") else np.asarray(self.res.Win)
        )
        self.W, self.Win = torch.from_numpy(w), torch.from_numpy(win)
        self.b = torch.as_tensor(np.asarray(self.res.bias, dtype=np.float64))

    def _update(self, r, u):
        pre = r @ self.W.T + u @ self.Win.T + self.b
        return (1 - self.lr) * r + self.lr * torch.tanh(pre)

    def _out(self, r):
        return r @ self.Wout + self.bout

    def fit(self, series: np.ndarray, washout: int = 100):
        """``series`` (n_traj, n_t, d) in normalised units: teacher-forced states, then ridge."""
        n, t, d = series.shape
        self._matrices(d)
        u = torch.from_numpy(series)
        r = torch.zeros(n, self.W.shape[0], dtype=torch.float64)
        states = []
        for k in range(t - 1):
            r = self._update(r, u[:, k])
            if k >= washout:
                states.append(r)
        x = torch.stack(states, 1).reshape(-1, r.shape[1]).numpy()  # (n·(t−1−w), units)
        y = series[:, washout + 1 :].reshape(-1, d)
        self.readout.fit(x, y)
        self.Wout = torch.from_numpy(np.asarray(self.readout.Wout))
        self.bout = torch.from_numpy(np.asarray(self.readout.bias)).reshape(-1)
        return self

    @torch.no_grad()
    def warm(self, context: np.ndarray) -> torch.Tensor:
        """Reservoir states after teacher forcing on ``context`` (batch, n_t, d)."""
        u = torch.from_numpy(context)
        r = torch.zeros(u.shape[0], self.W.shape[0], dtype=torch.float64)
        for k in range(u.shape[1]):
            r = self._update(r, u[:, k])
        return r

    def step(self, r, t=0.0, dt=None):
        return self._update(r, self._out(r))

    @torch.no_grad()
    def predict(self, r, n_steps, every=1):
        """Closed-loop outputs (batch, n_steps // every + 1, d), every ``every``-th step; the
        first is the readout of ``r``. ``W`` (1 % filled) is applied as a sparse CSR matrix
        here: the same map to rounding, ~15× faster than dense at 1000 nodes."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            w = self.W.to_sparse_csr()
        out = [self._out(r)]
        for k in range(1, n_steps + 1):
            u = self._out(r)
            pre = (w @ r.T).T + u @ self.Win.T + self.b
            r = (1 - self.lr) * r + self.lr * torch.tanh(pre)
            if k % every == 0:
                out.append(self._out(r))
        return torch.stack(out, 1), r


def _vpt(pred, ref, scale, dt, lam):
    """Valid prediction times (batch,) in Lyapunov times."""
    err = np.linalg.norm((pred - ref).reshape(*ref.shape[:2], -1), axis=-1) / scale
    bad = ~(err <= THRESHOLD)
    first = np.where(bad.any(1), bad.argmax(1), ref.shape[1])
    return first * dt * lam


def _rollout(stepper, x0, dt, n, every=1):
    try:
        with torch.no_grad():
            return physres.rollout(stepper, x0, dt=dt, n_steps=n, save_every=every).double().numpy()
    except DivergenceError:
        return None


def invariant_reference(system, dt, t_total, log=print):
    """(2·N_INV, n_frames, *S) DOP853 states (system tolerances) from fresh initial states,
    every EVERY·dt over ``t_total`` time units."""
    n_frames = int(round(t_total / (dt * EVERY))) + 1
    t_eval = np.arange(n_frames) * dt * EVERY
    start = time.perf_counter()
    ref = physres.reference.solve(
        system, system.sample_initial(2 * N_INV, seed=REF_SEED), t_eval, workers=2
    )
    log(
        f"invariant-measure reference: {2 * N_INV} × {t_total:g} time units in "
        f"{time.perf_counter() - start:.0f} s"
    )
    return np.asarray(ref, dtype=np.float64)


def fold(x):
    """Lorenz-63 states (..., 3) as (|x|, |y|, z): the quotient by (x, y, z) ↦ (−x, −y, z)."""
    return np.concatenate([np.abs(x[..., :2]), x[..., 2:]], -1)


def split_floor(ref, transient, n_splits=20, seed=0):
    """(n_splits, *S) W1 between random halves of the reference trajectories: independent
    samples of the same measure, each the size of one emulator sample (the noise floor's
    spread; the fixed split is one draw of it)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_splits):
        p = rng.permutation(len(ref))
        half = len(ref) // 2
        out.append(invariant_measure_w1(ref[p[:half]], ref[p[half:]], transient=transient))
    return np.asarray(out)


def _lyap(stepper, x0, dt, steps):
    lam = lyapunov_exponent(stepper, x0, dt=dt, n_steps=steps, transient=500, method="benettin")
    return float(lam.detach().mean())


def run(
    name: str,
    workdir: Path,
    quick: bool = False,
    esn: bool = True,
    log=print,
    physres_models: bool = True,
) -> list:
    cfg = dict(SETUPS[name])
    dt = cfg["dt"]
    system = physres.systems.get(name, **cfg["params"])
    train_path, test_path = workdir / f"{name}_train.h5", workdir / f"{name}_test.h5"
    n_train = 16 if quick else cfg["n_train"]
    start = time.perf_counter()
    physres.data.generate(
        system,
        train_path,
        n_traj=n_train,
        t_end=cfg["t_train"],
        dt_save=dt,
        seed=0,
        workers=2,
        progress=False,
    )
    physres.data.generate(
        system,
        test_path,
        n_traj=cfg["n_test"],
        t_end=cfg["t_test"],
        dt_save=dt,
        seed=12345,
        workers=2,
        progress=False,
    )
    log(f"{name}: data generated in {time.perf_counter() - start:.0f} s")
    with physres.data.open(test_path) as f:
        test = np.asarray(f.states[:])  # (n_test, n_t, *S)
    with physres.data.open(train_path) as f:
        train = np.asarray(f.states[:])
    i0 = int(round(T_START / dt))
    n_pred = int(round(cfg["horizon"] / dt))
    n_long = int(round(100.0 / dt))
    ref = test[:, i0 : i0 + n_pred + 1]
    ref_long = test[:, i0 : i0 + n_long + 1]
    scale = float(np.sqrt(np.mean(np.sum(train[:, i0:].reshape(-1, system.n_state) ** 2, -1))))
    lam_steps = 2000 if quick else 20_000
    x_lyap = torch.from_numpy(test[:8, i0].copy())
    rows = []
    inv = cfg.get("invariant", False)
    # quick: 10 + 100 time units (a smoke run; the floor is then far higher)
    t_trans, t_inv = (10.0, 100.0) if quick else (T_TRANSIENT, T_INV)
    n_inv_steps = int(round((t_trans + t_inv) / dt))
    n_trans = int(round(t_trans / (dt * EVERY)))  # transient frames
    if inv:
        inv_ref = invariant_reference(system, dt, t_trans + t_inv, log)
        floor = invariant_measure_w1(inv_ref[N_INV:], inv_ref[:N_INV], transient=n_trans)
        splits = split_floor(inv_ref, n_trans)
        floor_sym = invariant_measure_w1(
            fold(inv_ref[N_INV:]), fold(inv_ref[:N_INV]), transient=n_trans
        )
        splits_sym = split_floor(fold(inv_ref), n_trans)
        log(
            f"noise floor over {len(splits)} random halves of the {2 * N_INV} reference "
            f"trajectories: mean {splits.mean(0).round(4)}, max {splits.max(0).round(4)}"
        )

    def w1inv(long_inv):
        if not inv:
            return {}
        if long_inv is None:
            return {f"W1{m}_{c}": None for m in ("inv", "sym") for c in "xyz"}
        w = invariant_measure_w1(long_inv, inv_ref[:N_INV], transient=n_trans)
        ws = invariant_measure_w1(fold(long_inv), fold(inv_ref[:N_INV]), transient=n_trans)
        return {
            **{f"W1inv_{c}": float(v) for c, v in zip("xyz", w, strict=True)},
            **{f"W1sym_{c}": float(v) for c, v in zip("xyz", ws, strict=True)},
        }

    def score(label, stepper, train_s, pred, long, long_inv=None):
        vpt = _vpt(pred, ref, scale, dt, cfg["lam_ref"]) if pred is not None else None
        lam = _lyap(stepper, x_lyap if esn_r0 is None else esn_r0, dt, lam_steps)
        long = None if long is None else long[:N_LONG]
        w1 = (
            {
                f"W1_{'xyz'[k] if name == 'lorenz63' else k}": wasserstein1(
                    long[:, :, k].reshape(-1), ref_long[:N_LONG, :, k].reshape(-1)
                )
                for k in cfg["coords"]
            }
            if long is not None
            else {}
        )
        row = {
            "system": name,
            "emulator": label,
            "dt": dt,
            "train_s": train_s,
            "vpt_median": None if vpt is None else float(np.median(vpt)),
            "vpt_min": None if vpt is None else float(vpt.min()),
            "lambda1": lam,
            "lambda1_rel_err": abs(lam - cfg["lam_ref"]) / cfg["lam_ref"],
            **w1,
            **w1inv(long_inv),
        }
        rows.append(row)
        log(
            " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        )

    esn_r0 = None
    x0 = torch.from_numpy(ref[:, 0].copy())
    rk4 = physres.steppers.get("rk4", system.rhs)

    def long_run(stepper):
        if not inv:
            return None
        t = time.perf_counter()
        out = _rollout(stepper, x0[:N_INV], dt, n_inv_steps, every=EVERY)
        log(
            f"  closed loop {N_INV} × {t_trans + t_inv:g} time units in "
            f"{time.perf_counter() - t:.0f} s"
        )
        return out

    if inv:
        rows.append(
            {
                "system": name,
                "emulator": f"DOP853, {N_INV} other states",
                "dt": dt,
                **{f"W1inv_{c}": float(v) for c, v in zip("xyz", floor, strict=True)},
                **{
                    f"W1inv_{c}_split_mean": float(v)
                    for c, v in zip("xyz", splits.mean(0), strict=True)
                },
                **{
                    f"W1inv_{c}_split_max": float(v)
                    for c, v in zip("xyz", splits.max(0), strict=True)
                },
                **{f"W1sym_{c}": float(v) for c, v in zip("xyz", floor_sym, strict=True)},
                **{
                    f"W1sym_{c}_split_mean": float(v)
                    for c, v in zip("xyz", splits_sym.mean(0), strict=True)
                },
                **{
                    f"W1sym_{c}_split_max": float(v)
                    for c, v in zip("xyz", splits_sym.max(0), strict=True)
                },
            }
        )
        log(f"noise floor (reference vs reference, another seed): {rows[-1]}")
    score(
        "rk4 (true field)",
        rk4,
        0.0,
        _rollout(rk4, x0, dt, n_pred),
        _rollout(rk4, x0[:N_LONG], dt, n_long),
        long_run(rk4),
    )
    for kind in ("resnet", "node") if physres_models else ():
        torch.manual_seed(0)
        model = physres.training.model_for(train_path, kind, **cfg[kind])
        t = time.perf_counter()
        physres.training.fit(
            model,
            train_path,
            physres.training.TrainConfig(
                device="cpu", progress=False, val_steps=int(round(cfg["horizon"] / dt))
            ),
        )
        train_s = time.perf_counter() - t
        model.eval()
        log(f"{kind}: {model.training_info['optimiser']}; polish {model.training_info['polish']}")
        score(
            f"physres {kind}",
            model,
            train_s,
            _rollout(model, x0, dt, n_pred),
            _rollout(model, x0[:N_LONG], dt, n_long),
            long_run(model),
        )
    if esn:
        try:
            import reservoirpy  # noqa: F401
        except ImportError:
            log("esn: skipped (reservoirpy is not installed)")
            return rows
        mean = train.reshape(-1, system.n_state).mean(0)
        std = train.reshape(-1, system.n_state).std(0)
        t = time.perf_counter()
        net = EchoStateNetwork(**cfg["esn"])
        series = (train[:N_ESN] - mean) / std
        if quick:
            series = series[:, :2000]
        net.fit(np.ascontiguousarray(series[:, int(round(1.0 / dt)) :]))
        train_s = time.perf_counter() - t
        context = np.ascontiguousarray((test[:, : i0 + 1] - mean) / std)
        r = net.warm(context[:, :-1])  # states after the frames before t = 5
        out, _ = net.predict(r, n_pred)
        pred = out.numpy() * std + mean  # (n_test, n + 1, *S); out[0] predicts t = 5
        long, _ = net.predict(r[:N_LONG], n_long)
        long_inv = None
        if inv:
            t = time.perf_counter()
            long_inv, _ = net.predict(r[:N_INV], n_inv_steps, every=EVERY)
            long_inv = long_inv.numpy() * std + mean
            log(
                f"  closed loop {N_INV} × {t_trans + t_inv:g} time units in "
                f"{time.perf_counter() - t:.0f} s"
            )
            if not np.isfinite(long_inv).all():
                long_inv = None
        esn_r0 = r[:8].clone()
        score("esn", net.step, train_s, pred, long.numpy() * std + mean, long_inv)
    return rows


def as_markdown(rows) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |")
    return "\n".join(lines)


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}" if math.isfinite(v) else "—"
    return "—" if v is None else str(v)
