"""Stiff test set: physres kvaerno5/kvaerno3 under ``integrate`` vs scipy Radau/BDF and diffrax
Kvaerno5, side by side in one process, one thread each.

1. Every problem of the stiff test set (ROBER, HIRES, OREGO, E5, POLLU, VDPOL; Bari IVP test
   set) at rtol 1e-4, 1e-6, 1e-8 with the test set's atol (``REFERENCE`` of each system):
   significant correct digits against the published reference (E5: mixed digits, see
   :func:`physres.systems.stiff.scd`), steps, Jacobian evaluations, wall time.
   Targets: ≥ 4 scd at rtol 1e-6 and ≥ 6 at 1e-8, in fewer steps than 3× scipy Radau's.
2. Robertson throughput at rtol 1e-6: batch 16 to t = 40 and batch 1024 to t = 1e5,
   physres (one batched per-sample solve) vs per-trajectory scipy BDF/Radau loops vs diffrax
   Kvaerno5 (vmap + jit, compilation excluded). Digits are scored on the first 16 samples
   against scipy Radau at rtol 1e-11.

    python benchmarks/stiff.py [--quick] [--parts testset,robertson]
                               [--json benchmarks/results/stiff.json]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import machine, table, write_json  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

import physres  # noqa: E402
from physres.systems import stiff  # noqa: E402
from physres.systems.stiff import reference_atol, scd  # noqa: E402

PROBLEMS = ["robertson", "hires", "oregonator", "e5", "pollu", "vdpol_stiff"]
RTOLS = [1e-4, 1e-6, 1e-8]
RTOL_LADDER = [1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7, 3e-8, 1e-8]


def _digits(name, system, x, rtol, atol) -> float:
    floor = atol / rtol if name == "e5" else 0.0
    return scd(x, system.REFERENCE["x_end"], floor)


def run_physres(system, method, x0, t_end, rtol, atol):
    step = physres.steppers.get(method, system.rhs, atol=1e-3 * atol)
    start = time.perf_counter()
    with torch.no_grad():
        sol = physres.integrate(step, x0, (0.0, t_end), rtol=rtol, atol=atol, t_eval=[t_end])
    wall = time.perf_counter() - start
    acc, rej = (int(torch.as_tensor(sol.stats[k]).max()) for k in ("n_accepted", "n_rejected"))
    return sol.x[:, -1].numpy(), {
        "wall_s": wall,
        "accepted": acc,
        "rejected": rej,
        "njev": step.njev,
        "nfev": step.nfev,
    }


def run_scipy(system, method, x0, t_end, rtol, atol):
    out, acc, njev, nlu, nfev = [], 0, 0, 0, 0
    start = time.perf_counter()
    for y0 in np.asarray(x0):
        sol = solve_ivp(
            system.numpy_rhs,
            (0.0, t_end),
            y0,
            method=method,
            rtol=rtol,
            atol=atol,
            jac=system.numpy_jacobian,
        )
        if not sol.success:
            raise RuntimeError(sol.message)
        out.append(sol.y[:, -1])
        acc, njev, nlu, nfev = (
            max(acc, sol.t.size - 1),
            njev + sol.njev,
            nlu + sol.nlu,
            nfev + sol.nfev,
        )
    return np.array(out), {
        "wall_s": time.perf_counter() - start,
        "accepted": acc,
        "njev": njev,
        "nlu": nlu,
        "nfev": nfev,
    }


# --- diffrax peer -------------------------------------------------------------------------
def _jax_fields():
    import jax.numpy as jnp

    S = jnp.asarray(stiff._pollu_stoichiometry())
    k = jnp.asarray(stiff._POLLU_RATES)
    ia = jnp.asarray([r[0] for r in stiff._POLLU_REACTANTS])
    ib = jnp.asarray([r[1] for r in stiff._POLLU_REACTANTS])
    L = jnp.asarray(stiff._HIRES_LINEAR)
    src, e = jnp.asarray(stiff._HIRES_SOURCE), jnp.asarray(stiff._HIRES_BILINEAR)

    def robertson(t, y, args):
        r1, r2, r3 = 0.04 * y[0], 3e7 * y[1] ** 2, 1e4 * y[1] * y[2]
        return jnp.stack([-r1 + r3, r1 - r3 - r2, r2])

    def hires(t, y, args):
        return L @ y + src + 280.0 * y[5] * y[7] * e

    def oregonator(t, y, args):
        s, w, q = 77.27, 0.161, 8.375e-6
        return jnp.stack(
            [
                s * (y[1] - y[0] * y[1] + y[0] - q * y[0] ** 2),
                (-y[1] - y[0] * y[1] + y[2]) / s,
                w * (y[0] - y[2]),
            ]
        )

    def e5(t, y, args):
        A, B, C, M = 7.89e-10, 1.1e7, 1.13e3, 1e6
        r1, r2, r3, r4 = A * y[0], B * y[0] * y[2], M * C * y[1] * y[2], C * y[3]
        return jnp.stack([-r1 - r2, r1 - r3, r1 - r2 - r3 + r4, r2 - r4])

    def pollu(t, y, args):
        yp = jnp.concatenate([y, jnp.ones(1)])
        return S @ (k * yp[ia] * yp[ib])

    def vdpol_stiff(t, y, args):
        return jnp.stack([y[1], ((1 - y[0] ** 2) * y[1] - y[0]) / 1e-6])

    return {
        "robertson": robertson,
        "hires": hires,
        "oregonator": oregonator,
        "e5": e5,
        "pollu": pollu,
        "vdpol_stiff": vdpol_stiff,
    }


class Diffrax:
    """diffrax Kvaerno5 with a PID controller; one compiled solve per (problem, batch shape),
    rtol/atol traced so tolerances do not recompile."""

    def __init__(self):
        import jax

        jax.config.update("jax_enable_x64", True)
        import diffrax

        self.jax, self.diffrax = jax, diffrax
        self.fields = _jax_fields()
        self.compiled = {}

    def _solver(self, name, t_end):
        jax, dfx = self.jax, self.diffrax

        def solve(y0, rtol, atol):
            sol = dfx.diffeqsolve(
                dfx.ODETerm(self.fields[name]),
                dfx.Kvaerno5(),
                0.0,
                t_end,
                None,
                y0,
                stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
                saveat=dfx.SaveAt(t1=True),
                max_steps=200_000,
                throw=False,
            )
            return (
                sol.ys[-1],
                sol.stats["num_accepted_steps"],
                sol.stats["num_rejected_steps"],
                sol.result._value,
            )

        return jax.jit(jax.vmap(solve, in_axes=(0, None, None)))

    def run(self, name, x0, t_end, rtol, atol):
        key = (name, t_end, x0.shape)
        jnp = self.jax.numpy
        y0 = jnp.asarray(np.asarray(x0))
        if key not in self.compiled:
            fn = self._solver(name, t_end)
            start = time.perf_counter()
            self.jax.block_until_ready(fn(y0, rtol, atol))
            self.compiled[key] = (fn, time.perf_counter() - start)
        fn, compile_s = self.compiled[key]
        start = time.perf_counter()
        ys, acc, rej, result = self.jax.block_until_ready(fn(y0, rtol, atol))
        wall = time.perf_counter() - start
        ok = bool((np.asarray(result) == 0).all())
        return np.asarray(ys), {
            "wall_s": wall,
            "accepted": int(np.max(acc)),
            "rejected": int(np.max(rej)),
            "first_call_s": compile_s,
            "ok": ok,
        }


def _diffrax_or_none():
    try:
        return Diffrax()
    except ImportError as exc:
        print(f"diffrax/jax not importable ({exc}): diffrax columns skipped")
        return None


# --- part 1: the test set ------------------------------------------------------------------
def _runs(name, system, x0, t_end, rtol, atol, quick, peer):
    """(label, thunk) of every method on one problem at one tolerance."""
    runs = [
        (m, lambda m=m: run_physres(system, m, x0, t_end, rtol, atol))
        for m in (["kvaerno5"] if quick else ["kvaerno5", "kvaerno3"])
    ]
    runs += [
        (f"scipy {m}", lambda m=m: run_scipy(system, m, x0.numpy(), t_end, rtol, atol))
        for m in ("Radau", "BDF")
    ]
    if peer is not None:
        runs.append(("diffrax Kvaerno5", lambda: peer.run(name, x0.numpy(), t_end, rtol, atol)))
    return runs


def testset(quick: bool, peer) -> list[dict]:
    rows = []
    rtols = [1e-4, 1e-6] if quick else RTOLS
    for name in PROBLEMS:
        system = physres.systems.get(name)
        ref = system.REFERENCE
        x0 = torch.tensor([ref["x0"]], dtype=torch.float64)
        for rtol in rtols:
            atol = reference_atol(system, rtol)
            runs = _runs(name, system, x0, ref["t_end"], rtol, atol, quick, peer)
            for method, fn in runs:
                row = {"problem": name, "rtol": rtol, "atol": atol, "method": method}
                try:
                    x, stats = fn()
                    row.update(stats, scd=_digits(name, system, x[0], rtol, atol))
                    row.setdefault("ok", True)
                except Exception as exc:  # a failed run is a result, reported as such
                    row.update(ok=False, error=f"{type(exc).__name__}: {str(exc)[:120]}")
                rows.append(row)
                print(
                    f"  {name} rtol={rtol:.0e} {method}: "
                    + ", ".join(
                        f"{k}={row[k]:.3g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                        for k in row
                        if k not in ("problem", "rtol", "method", "atol")
                    ),
                    flush=True,
                )
    return rows


def verdicts(rows) -> list[dict]:
    """The targets per problem: scd at 1e-6 and 1e-8, steps vs 3x scipy Radau, no failure."""
    out = []
    for name in PROBLEMS:
        for rtol, need in ((1e-6, 4.0), (1e-8, 6.0)):
            ours = [
                r
                for r in rows
                if r["problem"] == name and r["rtol"] == rtol and r["method"] == "kvaerno5"
            ]
            radau = [
                r
                for r in rows
                if r["problem"] == name and r["rtol"] == rtol and r["method"] == "scipy Radau"
            ]
            if not ours:
                continue
            r = ours[0]
            steps = r.get("accepted", 0) + r.get("rejected", 0)
            radau_steps = radau[0].get("accepted") if radau and radau[0].get("ok") else None
            out.append(
                {
                    "problem": name,
                    "rtol": rtol,
                    "scd": r.get("scd"),
                    "need": need,
                    "steps": steps,
                    "radau_steps": radau_steps,
                    "scd_met": bool(r.get("ok")) and r.get("scd", -1) >= need,
                    "steps_met": radau_steps is not None and steps < 3 * radau_steps,
                }
            )
    return out


# --- part 2: Robertson throughput -------------------------------------------------------------
def radau_final_states(system, x0, t_end: float) -> np.ndarray:
    """The reference: scipy Radau at rtol 1e-11, atol 1e-22 with the analytic Jacobian, one
    sample at a time; ``x0`` (batch, n) -> the states at ``t_end``, numpy (batch, n)."""
    return np.array(
        [
            solve_ivp(
                system.numpy_rhs,
                (0.0, t_end),
                y0,
                method="Radau",
                rtol=1e-11,
                atol=1e-22,
                jac=system.numpy_jacobian,
            ).y[:, -1]
            for y0 in x0.numpy()
        ]
    )


def robertson(quick: bool, peer) -> list[dict]:
    system = physres.systems.get("robertson")
    rtol, atol = 1e-6, reference_atol(system, 1e-6)
    rows = []
    for batch, t_end in ((16, 40.0), (1024, 1e5)):
        x0 = system.sample_initial(batch, seed=0)
        n_ref = 16
        refs = radau_final_states(system, x0[:n_ref], t_end)

        def digits(x, refs=refs):
            return min(scd(x[i], refs[i]) for i in range(len(refs)))

        x_ours, stats = run_physres(system, "kvaerno5", x0, t_end, rtol, atol)
        ours = digits(x_ours[:n_ref])
        case = f"batch {batch}, t={t_end:g}"
        rows.append(
            {
                "case": case,
                "method": "physres kvaerno5",
                "rtol": rtol,
                "wall_s": stats["wall_s"],
                "scd_min16": ours,
                "steps_max": stats["accepted"] + stats["rejected"],
                "ok": True,
            }
        )
        print(f"  {rows[-1]}", flush=True)
        n_loop = min(batch, 16 if quick else 128)
        peers = [
            (
                f"scipy {m} loop",
                n_loop,
                lambda x, r, m=m, t_end=t_end: run_scipy(system, m, x, t_end, r, atol),
            )
            for m in ("BDF", "Radau")
        ]
        if peer is not None:
            peers.insert(
                0,
                (
                    "diffrax Kvaerno5 (vmap+jit)",
                    batch,
                    lambda x, r, t_end=t_end: peer.run("robertson", x, t_end, r, atol),
                ),
            )
        for method, n_run, fn in peers:
            # the peer's loosest rtol (of a ladder) that reaches our digits on the scored
            # samples, and the peer at our rtol
            chosen = RTOL_LADDER[-1]
            for r in RTOL_LADDER:
                if digits(fn(x0[:n_ref].numpy(), r)[0]) >= ours:
                    chosen = r
                    break
            for r in sorted({chosen, rtol}, reverse=True):
                x, st = fn(x0[:n_run].numpy(), r)
                row = {
                    "case": case,
                    "method": method,
                    "rtol": r,
                    "wall_s": st["wall_s"] * batch / n_run,
                    "scd_min16": digits(x[:n_ref]),
                    "steps_max": st.get("accepted"),
                    "equal_scd": r == chosen,
                    "ok": st.get("ok", True),
                }
                if n_run < batch:
                    row["method"] += f" (x{batch // n_run} extrapolated)"
                rows.append(row)
                print(f"  {row}", flush=True)
        base = [r for r in rows if r["case"] == case]
        for r in base:
            r["vs physres"] = r["wall_s"] / base[0]["wall_s"]
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default="testset,robertson")
    parser.add_argument("--json", default="benchmarks/results/stiff.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    info = machine()
    print("machine:", ", ".join(f"{k}={v}" for k, v in info.items()))
    peer = _diffrax_or_none()
    payload = {
        "machine": info,
        "command": "python benchmarks/stiff.py "
        + ("--quick " if args.quick else "")
        + f"--parts {args.parts}",
    }
    parts = args.parts.split(",")
    if "testset" in parts:
        rows = testset(args.quick, peer)
        print("\nStiff test set")
        print(
            table(
                rows,
                [
                    "problem",
                    "rtol",
                    "method",
                    "scd",
                    "accepted",
                    "rejected",
                    "njev",
                    "wall_s",
                    "ok",
                ],
            )
        )
        v = verdicts(rows)
        print(
            table(
                v,
                ["problem", "rtol", "scd", "need", "steps", "radau_steps", "scd_met", "steps_met"],
            )
        )
        payload.update(testset=rows, targets=v)
    if "robertson" in parts:
        rows = robertson(args.quick, peer)
        print("\nRobertson throughput, rtol 1e-6")
        print(
            table(
                rows,
                [
                    "case",
                    "method",
                    "rtol",
                    "equal_scd",
                    "wall_s",
                    "vs physres",
                    "scd_min16",
                    "steps_max",
                    "ok",
                ],
            )
        )
        payload["robertson"] = rows
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
