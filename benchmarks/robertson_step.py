"""physres kvaerno5 (eager and compiled) against diffrax Kvaerno5 on Robertson at equal digits.

Two cases: batch 16 to t = 40 and batch 1024 to t = 1e5 (``robertson.sample_initial(batch,
seed=0)``). physres runs at rtol 1e-6 (``physres.integrate``, per-sample steps), once eagerly
(``compile=False``) and once compiled (``compile=True``: the whole per-sample loop with the
masked Newton in one inductor ``while_loop``; one stepper, compiled once per case, the compile
time reported, not timed). diffrax (``jax.jit(jax.vmap(...))``, PID controller, compile
excluded) runs at the loosest rtol of ``stiff.RTOL_LADDER`` that reaches each physres variant's
digits: the minimum over the first 16 samples of the significant correct digits against scipy
Radau at rtol 1e-11. Timed as CPU time (``time.process_time``, one thread on every side) in
interleaved runs in one process; reports totals, steps, per-step costs and the ratios physres /
diffrax (median and best runs).

    python benchmarks/robertson_step.py [--runs 9] [--runs-large 3] [--cases 16,1024]
                                        [--json benchmarks/results/robertson_step.json]
    python benchmarks/robertson_step.py --profile   # where one eager physres solve spends its time
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import physres  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import stiff  # noqa: E402
from _common import machine, write_json  # noqa: E402

CASES = {16: 40.0, 1024: 1e5}  # batch -> t_end


def _solve(step, x0, t_end, rtol, atol, compile):
    with torch.no_grad():
        sol = physres.integrate(
            step, x0, (0.0, t_end), rtol=rtol, atol=atol, t_eval=[t_end], compile=compile
        )
    acc, rej = (int(torch.as_tensor(sol.stats[k]).max()) for k in ("n_accepted", "n_rejected"))
    ok = bool((sol.status == 0).all())
    return sol.x[:, -1].numpy(), {"steps": acc + rej, "ok": ok, "compile": sol.stats["compile"]}


def case(batch, t_end, runs, peer):
    system = physres.systems.get("robertson")
    rtol, atol = 1e-6, stiff.reference_atol(system, 1e-6)
    x0 = system.sample_initial(batch, seed=0)
    refs = stiff.radau_final_states(system, x0[:16], t_end)

    def digits(x):
        return min(stiff.scd(x[i], refs[i]) for i in range(len(refs)))

    def stepper():
        return physres.steppers.get("kvaerno5", system.rhs, atol=1e-3 * atol)

    eager_step, compiled_step = stepper(), stepper()
    sides = {
        "eager": lambda: _solve(eager_step, x0, t_end, rtol, atol, False),
        "compiled": lambda: _solve(compiled_step, x0, t_end, rtol, atol, True),
    }
    start = time.perf_counter()
    first = {name: fn() for name, fn in sides.items()}
    compile_s = first["compiled"][1]["compile"]["compile_s"]
    assert first["compiled"][1]["compile"]["compiled"], first["compiled"][1]["compile"]
    first_s = time.perf_counter() - start
    print(f"batch {batch}: physres compile {compile_s:.1f} s (first calls {first_s:.1f} s)")
    scd = {name: digits(out[0]) for name, out in first.items()}
    chosen = {}
    if peer is not None:
        for name, ours in scd.items():
            chosen[name] = stiff.RTOL_LADDER[-1]
            for r in stiff.RTOL_LADDER:
                if digits(peer.run("robertson", x0[:16].numpy(), t_end, r, atol)[0]) >= ours:
                    chosen[name] = r
                    break
        for r in sorted(set(chosen.values()), reverse=True):
            sides[f"diffrax@{r:g}"] = lambda r=r: peer.run("robertson", x0.numpy(), t_end, r, atol)
    times = {name: [] for name in sides}
    last = {}
    for _ in range(runs):  # interleaved, CPU time
        for name, fn in sides.items():
            start = time.process_time()
            last[name] = fn()
            times[name].append(time.process_time() - start)
    row = {"batch": batch, "t_end": t_end, "physres_rtol": rtol, "compile_s": compile_s}
    for name in ("eager", "compiled"):
        x, st = last[name]
        med = float(np.median(times[name]))
        row[name] = {
            "s_median": med,
            "s_best": float(min(times[name])),
            "steps": st["steps"],
            "ms_per_step": med / st["steps"] * 1e3,
            "scd_min16": scd[name],
            "ok": st["ok"],
            "runs_s": times[name],
        }
    for r in sorted(set(chosen.values()), reverse=True):
        x, st = last[f"diffrax@{r:g}"]
        t = times[f"diffrax@{r:g}"]
        med = float(np.median(t))
        steps = st["accepted"] + st["rejected"]
        row[f"diffrax@{r:g}"] = {
            "rtol": r,
            "s_median": med,
            "s_best": float(min(t)),
            "steps": steps,
            "ms_per_step": med / steps * 1e3,
            "scd_min16": digits(x[:16]),
            "ok": st["ok"],
            "first_call_s": st["first_call_s"],
            "runs_s": t,
        }
    for name, r in chosen.items():
        peer_t = times[f"diffrax@{r:g}"]
        row[name].update(
            diffrax_rtol=r,
            ratio_median=float(np.median(times[name]) / np.median(peer_t)),
            ratio_best=float(min(times[name]) / min(peer_t)),
        )
    for k, v in row.items():
        if isinstance(v, dict):
            print(
                f"  {k:16s} "
                + ", ".join(
                    f"{a}={b:.4g}" if isinstance(b, float) else f"{a}={b}"
                    for a, b in v.items()
                    if a != "runs_s"
                )
            )
        else:
            print(f"  {k:16s} {v}")
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=9, help="interleaved runs at batch 16")
    p.add_argument("--runs-large", type=int, default=3, help="interleaved runs at batch 1024")
    p.add_argument("--cases", default="16,1024", help="batch sizes (16: t = 40, 1024: t = 1e5)")
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "robertson_step.json"))
    p.add_argument("--profile", action="store_true", help="profile one physres solve, then stop")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.profile:
        system = physres.systems.get("robertson")
        rtol = 1e-6
        return _profile(
            system,
            system.sample_initial(16, seed=0),
            40.0,
            rtol,
            stiff.reference_atol(system, rtol),
        )
    peer = stiff._diffrax_or_none()
    load_before = os.getloadavg()
    rows = {}
    for b in (int(v) for v in args.cases.split(",")):
        rows[f"robertson_batch{b}"] = case(
            b, CASES[b], args.runs if b <= 16 else args.runs_large, peer
        )
    write_json(
        args.json,
        {
            "command": "python benchmarks/robertson_step.py " + " ".join(argv or sys.argv[1:]),
            "machine": machine(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            **rows,
        },
    )
    return rows


def _profile(system, x0, t_end, rtol, atol):
    """cProfile of one solve (after a warm-up): the share of the Newton stage solves, the
    field, and the per-sample step control."""
    import cProfile
    import pstats

    stiff.run_physres(system, "kvaerno5", x0, t_end, rtol, atol)
    prof = cProfile.Profile()
    prof.enable()
    _, st = stiff.run_physres(system, "kvaerno5", x0, t_end, rtol, atol)
    prof.disable()
    print(st)
    stats = pstats.Stats(prof)
    total = stats.total_tt
    rows = {}
    for (file, _, name), (_, _, _, cum, _) in stats.stats.items():
        key = f"{Path(file).parent.name}/{Path(file).name}:{name}"
        if key in PROFILED:
            rows[PROFILED[key]] = cum / total
    for label, share in rows.items():
        print(f"{label:48s} {share:6.1%}")
    return rows


PROFILED = {  # cumulative share of one solve
    "_adaptive/per_sample.py:run": "per-sample loop (everything)",
    "steppers/esdirk.py:_step_with_error": "ESDIRK trial steps",
    "steppers/newton.py:simplified_newton": "simplified Newton (stage solves)",
    "stiff/__init__.py:rhs": "field evaluations",
    "systems/stiff.py:rhs": "field evaluations",
    "_adaptive/control.py:error_ratio": "error norm",
    "_adaptive/control.py:factors": "step-size control",
}


if __name__ == "__main__":
    main()
