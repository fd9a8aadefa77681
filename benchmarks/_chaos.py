"""Chaotic emulators side by side on the same data: physres ResNet and Neural ODE (fit on its
defaults), an echo state network (reservoirpy matrices and ridge readout) and RK4 on the
true field, all stepping at the same dt.

Scores, on held-out initial conditions (predictions from t = 5 of each test trajectory):
valid prediction time (first time ‖x̂ − x‖ / ⟨‖x‖²⟩^½ > 0.4, in Lyapunov times), each
emulator's own λ1 (physres.validation.lyapunov_exponent on its map, Benettin from the 32
held-out states), the Wasserstein-1 distance of each coordinate, and training time.

W1 two ways. ``W1_*`` (the first measure): 100 time units from 8 held-out states against the
reference over the same span — at that size two samples of the *same* measure differ by ~0.27
in x (RK4 on the true field scores as much), so it mostly measures which lobe each short run
happened to visit. ``W1inv_*`` (Lorenz-63): the distance between invariant measures, scored by
the scenario's code (``scenarios/lorenz.py``, ``InvariantW1``): each emulator's closed loop from
N_INV fresh states (taken 5 time units along DOP853 runs; the echo state network is teacher
forced on those 5 time units) over T_INV time units after T_TRANSIENT, every 0.1 time units,
against N_INV DOP853 trajectories from other fresh states (solved stacked,
``physres.reference.solve(..., stack=True)``); the row "DOP853, N_INV other states" scores a
second such reference sample against the first: the noise floor, with its spread over random
halves of the 2·N_INV references (``physres.validation.split_half_w1``). ``W1sym_*``: the same on
(|x|, |y|, z), the coordinates folded by the system's symmetry (x, y, z) ↦ (−x, −y, z): blind to
a preference for one lobe (which ``W1inv_x`` sees), free of the lobe-occupancy noise that
dominates ``W1inv_x``.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import physres
from physres.errors import DivergenceError
from physres.validation import lyapunov_exponent, wasserstein1

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the scenarios package
from scenarios.lorenz import FULL, InvariantW1  # noqa: E402  (the scenario's invariant-measure W1)

THRESHOLD = 0.4
T_START = 5.0
N_LONG = 8  # initial conditions of the 100-time-unit runs (attractor statistics)
N_ESN = 12  # training trajectories of the echo state network (its states fill memory)
# invariant-measure W1: N_INV closed loops of T_INV time units after T_TRANSIENT, every EVERY-th
# step, against 2 × N_INV DOP853 trajectories from fresh states: the first half is the
# reference, the second half the noise floor (the scenario's FULL preset)
N_INV, T_TRANSIENT, T_INV, EVERY = FULL.n_inv, FULL.t_transient, FULL.t_inv, FULL.inv_every

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

    def _sparse(self):
        """``W`` (1 % filled) as a sparse CSR matrix: the same map to rounding, ~15× faster
        than dense at 1000 nodes."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            return self.W.to_sparse_csr()

    @torch.no_grad()
    def warm(self, context: np.ndarray) -> torch.Tensor:
        """Reservoir states after teacher forcing on ``context`` (batch, n_t, d)."""
        u = torch.from_numpy(context)
        w = self._sparse()
        r = torch.zeros(u.shape[0], self.W.shape[0], dtype=torch.float64)
        for k in range(u.shape[1]):
            pre = (w @ r.T).T + u[:, k] @ self.Win.T + self.b
            r = (1 - self.lr) * r + self.lr * torch.tanh(pre)
        return r

    def step(self, r, t=0.0, dt=None):
        return self._update(r, self._out(r))

    @torch.no_grad()
    def predict(self, r, n_steps, every=1):
        """Closed-loop outputs (batch, n_steps // every + 1, d), every ``every``-th step; the
        first is the readout of ``r``. ``W`` (1 % filled) is applied as a sparse CSR matrix
        here (as in ``warm``)."""
        w = self._sparse()
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
            return (  # eager: a compiled loop does not pay here (see scenarios/lorenz.py)
                physres.rollout(stepper, x0, dt=dt, n_steps=n, save_every=every, compile=False)
                .double()
                .numpy()
            )
    except DivergenceError:
        return None


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
    # λ1: every held-out state (32) over 5000 steps: the 160 000 steps of tangent growth of
    # 8 × 20 000, batched
    lam_steps = 500 if quick else 5000
    x_lyap = torch.from_numpy(test[:, i0].copy())
    rows = []
    inv = cfg.get("invariant", False)
    # quick: 64 loops of 10 + 10 time units (a smoke run; the floor is then far higher)
    n_inv, t_trans, t_inv = (64, 10.0, 10.0) if quick else (N_INV, T_TRANSIENT, T_INV)
    if inv:
        start = time.perf_counter()
        iw = InvariantW1(system, n_inv, t_trans, t_inv, dt, EVERY).solve()
        log(
            f"invariant-measure reference: {2 * n_inv} × {t_trans + t_inv:g} time units "
            f"(and the loops' starting states) in {time.perf_counter() - start:.0f} s"
        )
        splits = iw.splits()  # (n_splits, 2, 3)
        log(
            f"noise floor over {len(splits)} random halves of the {2 * n_inv} reference "
            f"trajectories: mean {splits.mean(0).round(4)}, max {splits.max(0).round(4)}"
        )

    def w1inv(long_inv):
        if not inv:
            return {}
        w = iw.score(long_inv)
        if w is None:
            return {f"W1{m}_{c}": None for m in ("inv", "sym") for c in "xyz"}
        return {
            f"W1{m}_{c}": float(w[i, k])
            for i, m in enumerate(("inv", "sym"))
            for k, c in enumerate("xyz")
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
        out = iw.loops(lambda x, n, every: _rollout(stepper, x, dt, n, every))
        log(
            f"  closed loop {n_inv} × {t_trans + t_inv:g} time units in "
            f"{time.perf_counter() - t:.0f} s"
        )
        return out

    if inv:
        row = {"system": name, "emulator": f"DOP853, {n_inv} other states", "dt": dt}
        for i, m in enumerate(("inv", "sym")):
            for k, c in enumerate("xyz"):
                row[f"W1{m}_{c}"] = float(iw.floor[i, k])
                row[f"W1{m}_{c}_split_mean"] = float(splits[:, i, k].mean())
                row[f"W1{m}_{c}_split_max"] = float(splits[:, i, k].max())
        rows.append(row)
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
            warm = net.warm(np.ascontiguousarray((iw.context[:, :-1] - mean) / std))
            long_inv, _ = net.predict(warm, iw.n_steps, every=EVERY)
            long_inv = long_inv.numpy() * std + mean
            log(
                f"  closed loop {n_inv} × {t_trans + t_inv:g} time units in "
                f"{time.perf_counter() - t:.0f} s"
            )
        esn_r0 = r.clone()
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
