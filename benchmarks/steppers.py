"""Stepper library vs torchdiffeq, torchode, diffrax and scipy, side by side in one process.

1. Lorenz-63, 1000 RK4 steps (dt = 0.002), batch 1, 256 and 4096: physres ``rollout`` eager and
   compiled (``compile=True``: the whole loop in one compiled ``while_loop``; and the older
   compiled chunks, ``compile={"driver": "chunks"}``, one Python call per chunk; compile time
   excluded and reported) vs torchdiffeq's fixed-grid
   ``rk4``, torchode (RK4 tableau, fixed step), a hand-written torch RK4 loop and diffrax
   (``jax.jit`` + ``vmap``, RK4 tableau, constant step; compile time excluded and reported), all
   on one thread, timed in interleaved rounds (best of the rounds), errors against DOP853 at
   rtol 1e-13. Targets: physres/diffrax ≤ 1.0 at batch 256 and ≤ 3 at batch 1; physres ≤ 0.6×
   torchdiffeq. At batch 256, also a scipy ``solve_ivp`` (RK45) loop at matching error.
``--parts loop_parts``: where one compiled Lorenz rollout call goes (the whole call, the loop
driver, the compiled graph alone, the graph behind dynamo's guards) against diffrax, per batch.

2. Robertson, batch 1024, to t = 1e5: physres implicit steppers under ``integrate`` vs scipy
   ``BDF``/``Radau`` per-trajectory loops at equal final error. Goal: ≥ 10× faster than scipy.

    python benchmarks/steppers.py [--quick] [--parts lorenz,robertson,loop_parts] [--chunk 20]
                                  [--loop-chunk 10] [--batches 1,256,4096] [--rounds 5]
                                  [--repeat 1]
                                  [--cpp-wrapper]
                                  [--json benchmarks/results/steppers.json]

A peer that is not installed is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import time

# one thread for XLA too, set before jax is imported anywhere
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import best_time, machine, table, write_json  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402
from torchdiffeq import odeint  # noqa: E402

import physres  # noqa: E402
from physres import _compile  # noqa: E402


def _max_rel_error(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(x - ref) / np.maximum(np.abs(ref), 1e-300)))


def _scipy_loop(system, x0: np.ndarray, t_end: float, method: str, rtol: float, atol: float):
    jac = system.numpy_jacobian if method in ("BDF", "Radau") and system.jacobian else None
    out = []
    for y0 in x0:
        sol = solve_ivp(
            system.numpy_rhs,
            (0.0, t_end),
            y0,
            method=method,
            rtol=rtol,
            atol=atol,
            t_eval=[t_end],
            jac=jac,
        )
        if not sol.success:
            raise RuntimeError(sol.message)
        out.append(sol.y[:, -1])
    return np.array(out)


def _calibrate_scipy(system, x0, t_end, method, target_error, reference, atol_ratio):
    """Loosest rtol (decades 1e-3 … 1e-12) whose max error on ``x0`` is ≤ ``target_error``."""
    for rtol in 10.0 ** -np.arange(3, 13, 0.5):
        x = _scipy_loop(system, x0, t_end, method, rtol, rtol * atol_ratio)
        err = _max_rel_error(x, reference)
        if err <= target_error:
            return float(rtol), err
    return float(rtol), err


RK4_C, RK4_B = (0.0, 0.5, 0.5, 1.0), (1 / 6, 1 / 3, 1 / 3, 1 / 6)


def _hand_rk4(f, x, dt, n_steps):
    """The RK4 loop one would write by hand in torch."""
    t = 0.0
    for _ in range(n_steps):
        k1 = f(t, x)
        k2 = f(t + dt / 2, x + dt / 2 * k1)
        k3 = f(t + dt / 2, x + dt / 2 * k2)
        k4 = f(t + dt, x + dt * k3)
        x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        t += dt
    return x


def _torchode_solver(system, dt):
    try:
        import torchode as to
        from torchode.single_step_methods.runge_kutta import ButcherTableau, ExplicitRungeKutta
    except ImportError as err:
        return None, f"torchode not installed ({err})"
    tableau = ButcherTableau.from_lists(
        c=list(RK4_C),
        a=[[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]],
        b=list(RK4_B),
        b_low_order=[1.0, 0.0, 0.0, 0.0],
    )
    from torchode.interpolation import ThirdOrderPolynomialInterpolation

    class RK4(ExplicitRungeKutta):
        def convergence_order(self):
            return 4

        def build_interpolation(self, data):
            return ThirdOrderPolynomialInterpolation.from_k(
                data.t0, data.dt, data.y0, data.y1, data.k
            )

    solver = to.AutoDiffAdjoint(RK4(to.ODETerm(system.rhs), tableau), to.FixedStepController())

    def run(x0, t_end):
        batch = x0.shape[0]
        problem = to.InitialValueProblem(
            y0=x0,
            t_start=torch.zeros(batch, dtype=x0.dtype),
            t_end=torch.full((batch,), t_end, dtype=x0.dtype),
        )
        sol = solver.solve(problem, dt0=torch.full((batch,), dt, dtype=x0.dtype))
        return sol.ys[:, -1]

    return run, None


def _diffrax_solver(system, dt, n_steps):
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
    except ImportError as err:
        return None, f"diffrax/jax not installed ({err})"
    jax.config.update("jax_enable_x64", True)
    sigma, rho, beta = system.sigma, system.rho, system.beta

    class RK4(diffrax.AbstractERK):
        tableau = diffrax.ButcherTableau(
            c=np.array(RK4_C[1:]),
            b_sol=np.array(RK4_B),
            b_error=np.zeros(4),
            a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
        )
        interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

        def order(self, terms):
            return 4

    def rhs(t, y, args):
        a, b, c = y[0], y[1], y[2]
        return jnp.stack([sigma * (b - a), a * (rho - c) - b, a * b - beta * c])

    term = diffrax.ODETerm(rhs)

    def one(y0):
        sol = diffrax.diffeqsolve(
            term,
            RK4(),
            t0=0.0,
            t1=n_steps * dt,
            dt0=dt,
            y0=y0,
            stepsize_controller=diffrax.ConstantStepSize(),
            saveat=diffrax.SaveAt(t1=True),
            max_steps=n_steps + 1,
        )
        return sol.ys[-1]

    fn = jax.jit(jax.vmap(one))

    def run(x0):
        return fn(x0).block_until_ready()

    return (fn, run), None


def _torch_methods(system, x0, dt, n_steps, chunk, loop_chunk, tode, cpp_wrapper=False) -> dict:
    """name -> callable returning the final states (batch, 3)."""
    step = physres.steppers.get("rk4", system.rhs)
    grid = torch.tensor([0.0, n_steps * dt], dtype=torch.float64)
    methods = {
        "physres rk4 eager": lambda: physres.rollout(
            step, x0, dt, n_steps, save_every=n_steps, compile=False
        )[:, -1],
        "physres rk4 compiled": lambda: physres.rollout(
            step, x0, dt, n_steps, save_every=n_steps, compile=True, chunk=loop_chunk
        )[:, -1],
        "physres rk4 compiled chunks": lambda: physres.rollout(
            step, x0, dt, n_steps, save_every=n_steps, compile={"driver": "chunks"}, chunk=chunk
        )[:, -1],
        "torchdiffeq rk4 (3/8 rule)": lambda: odeint(
            system.rhs, x0, grid, method="rk4", options={"step_size": dt}
        )[-1],
        "hand-written torch loop": lambda: _hand_rk4(system.rhs, x0, dt, n_steps),
    }
    if tode is not None:
        methods["torchode RK4 (fixed step)"] = lambda: tode(x0, n_steps * dt)
    if cpp_wrapper:  # inductor's C++ wrapper: no Python between the kernels of a chunk
        opts = {"driver": "chunks", "options": {"cpp_wrapper": True}}
        methods["physres rk4 compiled chunks (cpp_wrapper)"] = lambda: physres.rollout(
            step, x0, dt, n_steps, save_every=n_steps, compile=opts, chunk=chunk
        )[:, -1]
    return methods


def lorenz(
    quick: bool,
    chunk: int,
    batches=(1, 256, 4096),
    cpp_wrapper=False,
    loop_chunk=None,
    rounds=None,
    repeat=1,
) -> dict:
    system = physres.systems.get("lorenz63")
    n_steps, dt = 1000, 0.002
    t_end = n_steps * dt
    rounds = rounds or (3 if quick else 5)
    tode, tode_skip = _torchode_solver(system, dt)
    dfx, dfx_skip = _diffrax_solver(system, dt, n_steps)
    for skip in (tode_skip, dfx_skip):
        if skip:
            print(f"skipped: {skip}")
    results = {}
    for batch in batches:
        x0 = system.sample_initial(batch, seed=0)
        n_ref = min(batch, 16)
        reference = physres.reference.solve(
            system, x0[:n_ref], np.array([0.0, t_end]), method="DOP853", rtol=1e-13, atol=1e-13
        )[:, -1]
        methods = _torch_methods(system, x0, dt, n_steps, chunk, loop_chunk, tode, cpp_wrapper)
        compile_s = {}
        with torch.no_grad():
            start = time.perf_counter()
            for name in [m for m in methods if "compiled" in m]:
                methods[name]()  # compiles (timed apart)
                compile_s[name] = _compile.last_run["compile_s"]
                print(
                    f"batch {batch}: {name}: compile {compile_s[name]:.1f} s, driver "
                    f"{_compile.last_run['driver']}, chunk {_compile.last_run['chunk']}",
                    flush=True,
                )
            print(f"batch {batch}: first calls {time.perf_counter() - start:.1f} s", flush=True)
        if dfx is not None:
            fn, run = dfx
            xj = x0.numpy()
            start = time.perf_counter()
            fn.lower(xj).compile()
            run(xj)
            compile_s["diffrax RK4 (jit + vmap)"] = time.perf_counter() - start
            methods["diffrax RK4 (jit + vmap)"] = lambda run=run, xj=xj: np.asarray(run(xj))
        best = dict.fromkeys(methods, float("inf"))
        outs = {}
        with torch.no_grad():
            for _ in range(rounds):  # interleaved: load changes hit every method alike
                for name, fn_ in methods.items():
                    for _ in range(repeat):  # > 1: back-to-back calls, warm caches
                        start = time.perf_counter()
                        outs[name] = fn_()
                        best[name] = min(best[name], time.perf_counter() - start)
        rows = []
        t_phys = best["physres rk4 compiled"]
        for name in methods:
            out = np.asarray(outs[name])[:n_ref]
            rows.append(
                {
                    "method": name,
                    "wall_s": best[name],
                    "physres compiled / this": t_phys / best[name],
                    "max_rel_error": _max_rel_error(out, reference),
                    "compile_s": compile_s.get(name, ""),
                }
            )
        results[batch] = rows
    return results


def loop_parts(batches=(1,), rounds=100) -> dict:
    """Where one compiled ``rollout`` call at a batch goes, against diffrax (interleaved, best
    of ``rounds``): the whole call, the loop driver's ``run``, the compiled graph alone (1000
    steps and one body), and the same graph called through dynamo's guards."""
    system = physres.systems.get("lorenz63")
    step = physres.steppers.get("rk4", system.rhs)
    n_steps, dt = 1000, 0.002
    dfx, skip = _diffrax_solver(system, dt, n_steps)
    results = {}
    for batch in batches:
        x0 = system.sample_initial(batch, seed=0)
        with torch.no_grad():
            physres.rollout(step, x0, dt, n_steps, save_every=n_steps, compile=True)
            loop = next(v for k, v in reversed(_compile._CACHE.items()) if k[0] == "loop")
            k = loop.length
            out = x0.new_empty((3, *x0.shape))

            def inputs(n_end, loop=loop, k=k, x0=x0, out=out):
                # steps 1..n_end from step 0 at t = 0: (n0, nmax, x0, t0, out)
                args = (
                    torch.tensor(0),
                    torch.tensor(n_end - k + 1),
                    x0,
                    torch.tensor(0.0, dtype=torch.float64),
                    out,
                )
                return args, [args[i] if i >= 0 else out.shape[0] for i in loop._inputs]

            (args, full), (_, one) = inputs(n_steps), inputs(k)

            def guarded(loop=loop, args=args):
                torch._dynamo.mark_dynamic(args[-1], 0)
                with torch.compiler.set_stance("fail_on_recompile"):
                    loop.fn(*args)

            methods = {
                "rollout(compile=True)": lambda x0=x0: physres.rollout(
                    step, x0, dt, n_steps, save_every=n_steps, compile=True
                ),
                "loop driver run()": lambda loop=loop, x0=x0, out=out: loop.run(
                    0, n_steps, x0, 0.0, out
                ),
                f"compiled graph alone, {n_steps} steps": lambda loop=loop, a=full: loop._direct(
                    *a
                ),
                f"compiled graph alone, {k} steps": lambda loop=loop, a=one: loop._direct(*a),
                "the graph through dynamo's guards": guarded,
            }
            if dfx is not None:
                xj = x0.numpy()
                dfx[0].lower(xj).compile()
                dfx[1](xj)
                methods["diffrax RK4 (jit + vmap)"] = lambda run=dfx[1], xj=xj: run(xj)
            best = dict.fromkeys(methods, float("inf"))
            for _ in range(rounds):
                for name, fn_ in methods.items():
                    start = time.perf_counter()
                    fn_()
                    best[name] = min(best[name], time.perf_counter() - start)
        ref = best.get("diffrax RK4 (jit + vmap)", float("nan"))
        results[batch] = [
            {"method": name, "wall_ms": 1e3 * t, "over diffrax": t / ref}
            for name, t in best.items()
        ]
        print(f"\nbatch {batch}, {n_steps} RK4 steps, {k}-step bodies, best of {rounds}")
        print(table(results[batch], ["method", "wall_ms", "over diffrax"]))
    return results


def lorenz_scipy(quick: bool) -> dict:
    """The batch-256 scipy RK45 loop at physres's error (the earlier comparison)."""
    system = physres.systems.get("lorenz63")
    batch, n_steps, dt = 256, 1000, 0.002
    t_end = n_steps * dt
    x0 = system.sample_initial(batch, seed=0)
    reference = physres.reference.solve(
        system, x0[:8], np.array([0.0, t_end]), method="DOP853", rtol=1e-13, atol=1e-13
    )[:, -1]
    step = physres.steppers.get("rk4", system.rhs)
    with torch.no_grad():
        t_phys, traj = best_time(
            lambda: physres.rollout(step, x0, dt, n_steps, save_every=n_steps, compile=False)
        )
    err_phys = _max_rel_error(traj[:8, -1].numpy(), reference)
    rtol, _ = _calibrate_scipy(system, x0[:8].numpy(), t_end, "RK45", err_phys, reference, 1e-3)
    n_scipy = 32 if quick else batch
    start = time.perf_counter()
    xs = _scipy_loop(system, x0[:n_scipy].numpy(), t_end, "RK45", rtol, rtol * 1e-3)
    t_scipy = (time.perf_counter() - start) * batch / n_scipy
    return {
        "rtol": rtol,
        "wall_s": t_scipy,
        "physres_eager_s": t_phys,
        "max_rel_error": _max_rel_error(xs[:8], reference),
        "extrapolated": n_scipy != batch,
    }


def robertson(quick: bool) -> list[dict]:
    system = physres.systems.get("robertson")
    batch, t_end = 1024, 1e5
    x0 = system.sample_initial(batch, seed=0)
    n_ref = 8 if quick else 32
    reference = physres.reference.solve(
        system, x0[:n_ref], np.array([0.0, t_end]), method="Radau", rtol=1e-11, atol=1e-16
    )[:, -1]
    rows = []
    settings = [("crank_nicolson", 1e-5), ("backward_euler", 1e-4)]
    if not quick:
        settings.append(("implicit_midpoint", 1e-5))
    for name, rtol in settings:
        step = physres.steppers.get(name, system.rhs)
        with torch.no_grad():
            wall, sol = best_time(
                lambda step=step, rtol=rtol: physres.integrate(
                    step, x0, (0.0, t_end), rtol=rtol, atol=1e-10, t_eval=[0.0, t_end]
                ),
                repeat=1,
            )
        err = _max_rel_error(sol.x[:n_ref, -1].numpy(), reference)
        rows.append(
            {
                "method": f"physres {name} (rtol={rtol:.0e})",
                "wall_s": wall,
                "max_rel_error": err,
                "steps": sol.stats["n_accepted"],
            }
        )
    target = max(r["max_rel_error"] for r in rows if "crank_nicolson" in r["method"])
    t_physres = rows[0]["wall_s"]
    n_scipy = 32 if quick else 256
    for method in ["BDF", "Radau"]:
        rtol, _ = _calibrate_scipy(
            system, x0[:4].numpy(), t_end, method, target, reference[:4], 1e-6
        )
        start = time.perf_counter()
        xs = _scipy_loop(system, x0[:n_scipy].numpy(), t_end, method, rtol, 1e-10)
        wall = (time.perf_counter() - start) * batch / n_scipy
        rows.append(
            {
                "method": f"scipy {method} loop (rtol={rtol:.0e}, x{batch // n_scipy} "
                "extrapolated)",
                "wall_s": wall,
                "max_rel_error": _max_rel_error(xs[:n_ref], reference),
            }
        )
    for r in rows:
        r["vs physres CN"] = r["wall_s"] / t_physres
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and trajectories")
    parser.add_argument("--parts", default="lorenz,robertson")
    parser.add_argument(
        "--chunk", type=int, default=20, help="steps per graph of the compiled-chunks driver"
    )
    parser.add_argument(
        "--loop-chunk",
        type=int,
        default=None,
        help="steps per body of the whole-loop driver (default physres._compile.LOOP_CHUNK)",
    )
    parser.add_argument("--batches", default="1,256,4096")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3, 5)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="back-to-back calls of each method per round (best kept; 1: each call follows "
        "the other methods, with caches they left cold)",
    )
    parser.add_argument(
        "--cpp-wrapper",
        action="store_true",
        help="also time compiled chunks with inductor's C++ wrapper",
    )
    parser.add_argument("--json", default="benchmarks/results/steppers.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts = args.parts.split(",")
    info = machine()
    print("machine:", ", ".join(f"{k}={v}" for k, v in info.items()))
    payload = {
        "machine": info,
        "command": "python benchmarks/steppers.py " + " ".join(a for a in os.sys.argv[1:]),
    }
    if "lorenz" in parts:
        lor = lorenz(
            args.quick,
            args.chunk,
            tuple(int(b) for b in args.batches.split(",")),
            args.cpp_wrapper,
            args.loop_chunk,
            args.rounds,
            args.repeat,
        )
        summary = {}
        for batch, rows in lor.items():
            print(f"\nLorenz-63, batch {batch}, 1000 RK4 steps (dt = 0.002), one thread")
            print(
                table(
                    rows,
                    ["method", "wall_s", "physres compiled / this", "max_rel_error", "compile_s"],
                )
            )
            by = {r["method"]: r["wall_s"] for r in rows}
            comp = by["physres rk4 compiled"]
            chunks = by["physres rk4 compiled chunks"]
            s = {
                "physres_compiled_over_eager": comp / by["physres rk4 eager"],
                "physres_over_torchdiffeq": comp / by["torchdiffeq rk4 (3/8 rule)"],
                "chunks_over_torchdiffeq": chunks / by["torchdiffeq rk4 (3/8 rule)"],
            }
            if "diffrax RK4 (jit + vmap)" in by:
                s["physres_over_diffrax"] = comp / by["diffrax RK4 (jit + vmap)"]
                s["chunks_over_diffrax"] = chunks / by["diffrax RK4 (jit + vmap)"]
            summary[batch] = s
            print(", ".join(f"{k} {v:.3g}" for k, v in s.items()))
        print(
            "targets: physres/diffrax <= 1.0 (batch 256), <= 3 (batch 1); "
            "physres/torchdiffeq <= 0.6"
        )
        payload["lorenz"] = {str(b): rows for b, rows in lor.items()}
        payload["lorenz_summary"] = {str(b): s for b, s in summary.items()}
        if not args.quick:
            sc = lorenz_scipy(args.quick)
            print(
                f"\nscipy RK45 loop at physres's error (rtol {sc['rtol']:.0e}), batch 256: "
                f"{sc['wall_s']:.2f} s vs physres eager {sc['physres_eager_s']:.3f} s"
            )
            payload["lorenz_scipy"] = sc
    if "loop_parts" in parts:
        payload["loop_parts"] = loop_parts(
            tuple(int(b) for b in args.batches.split(",")), args.rounds or 100
        )
    if "robertson" in parts:
        rob = robertson(args.quick)
        print("\nRobertson, batch 1024, t in [0, 1e5], equal final error")
        print(table(rob, ["method", "wall_s", "vs physres CN", "max_rel_error", "steps"]))
        speedup = min(r["wall_s"] for r in rob if "scipy" in r["method"]) / rob[0]["wall_s"]
        print(f"fastest scipy loop / physres crank_nicolson: {speedup:.1f}x (goal >= 10x)")
        payload["robertson"] = rob
        payload["robertson_speedup_vs_scipy"] = speedup
    if os.path.exists(args.json):  # a run of some parts keeps the others' last figures
        with open(args.json) as f:
            payload = {**json.load(f), **payload}
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
