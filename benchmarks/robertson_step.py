"""Per-step cost of physres kvaerno5 against diffrax Kvaerno5: Robertson, batch 16, t = 0 … 40.

Both integrate the same 16 initial states (``robertson.sample_initial(16, seed=0)``); physres at
rtol 1e-6 (``physres.integrate``, per-sample steps), diffrax (``jax.jit(jax.vmap(...))``, PID
controller) at the loosest rtol of ``stiff.RTOL_LADDER`` that reaches physres' digits (min over
the 16 samples of the significant correct digits against Radau at rtol 1e-11). Timed as CPU time
(``time.process_time``, one thread on both sides) in alternating runs in one process, compile
excluded; reports both totals, steps, per-step costs and the ratio (median and best runs).

    python benchmarks/robertson_step.py [--runs 9] [--json benchmarks/results/robertson_step.json]
    python benchmarks/robertson_step.py --profile   # where one physres solve spends its time
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=9)
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "robertson_step.json"))
    p.add_argument("--profile", action="store_true", help="profile one physres solve, then stop")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    system = physres.systems.get("robertson")
    rtol, atol, t_end = 1e-6, stiff.reference_atol(system, 1e-6), 40.0
    x0 = system.sample_initial(16, seed=0)
    refs = stiff.radau_final_states(system, x0, t_end)

    def digits(x):
        return min(stiff.scd(x[i], refs[i]) for i in range(len(refs)))

    if args.profile:
        return _profile(system, x0, t_end, rtol, atol)
    peer = stiff._diffrax_or_none()
    x, st = stiff.run_physres(system, "kvaerno5", x0, t_end, rtol, atol)
    ours = digits(x)
    chosen = None
    if peer is not None:
        chosen = stiff.RTOL_LADDER[-1]
        for r in stiff.RTOL_LADDER:
            if digits(peer.run("robertson", x0.numpy(), t_end, r, atol)[0]) >= ours:
                chosen = r
                break
    t_ours, t_peer = [], []
    for _ in range(args.runs):  # alternating, CPU time
        start = time.process_time()
        x, st = stiff.run_physres(system, "kvaerno5", x0, t_end, rtol, atol)
        t_ours.append(time.process_time() - start)
        if peer is not None:
            start = time.process_time()
            xd, sd = peer.run("robertson", x0.numpy(), t_end, chosen, atol)
            t_peer.append(time.process_time() - start)
    steps = st["accepted"] + st["rejected"]
    row = {
        "physres_s_median": float(np.median(t_ours)),
        "physres_steps": steps,
        "physres_ms_per_step": float(np.median(t_ours)) / steps * 1e3,
        "physres_scd_min16": ours,
        "physres_rtol": rtol,
        "physres_runs_s": t_ours,
    }
    if peer is not None:
        psteps = sd["accepted"] + sd["rejected"]
        row.update(
            {
                "diffrax_s_median": float(np.median(t_peer)),
                "diffrax_steps": psteps,
                "diffrax_ms_per_step": float(np.median(t_peer)) / psteps * 1e3,
                "diffrax_scd_min16": digits(xd),
                "diffrax_rtol": chosen,
                "diffrax_runs_s": t_peer,
                "ratio_median": float(np.median(t_ours) / np.median(t_peer)),
                "ratio_best": float(min(t_ours) / min(t_peer)),
            }
        )
    for k, v in row.items():
        if not k.endswith("runs_s"):
            print(f"{k:22s} {v}")
    write_json(
        args.json,
        {
            "command": "python benchmarks/robertson_step.py",
            "machine": machine(),
            "load_average": os.getloadavg(),
            "robertson_batch16": row,
        },
    )
    return row


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
