"""Every scenario's --quick mode end to end: report keys, finite numbers, figures written,
and the physics each one claims. Parametrised over list_scenarios(): a new scenario is tested
the day it lands."""

import json
import math
import re

import _scenario_runs
import pytest

from physres.runner import list_scenarios

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", params=list_scenarios())
def run(request, tmp_path_factory):
    return _scenario_runs.run(request.param, tmp_path_factory)  # once per session, shared


def _numbers(obj, where="report"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{where}[{k!r}]")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{where}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield where, obj


def test_report_written_complete_and_finite(run):
    name, out, report = run
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))  # report.json is the returned report
    assert report.get("quick") is True
    bad = [w for w, v in _numbers(report) if not math.isfinite(v)]
    assert not bad, f"non-finite numbers in {name}: {bad[:5]}"
    rows = report.get("summary")
    assert isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows)
    md = (out / "report.md").read_text()
    assert md.startswith("# ") and len(md) > 200


def test_figures_written(run):
    name, out, report = run
    pngs = sorted(out.glob("*.png"))
    assert pngs, f"{name} wrote no figure"
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5_000, png.name
    md = (out / "report.md").read_text()
    for ref in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md):
        assert (out / ref).exists(), f"report.md of {name} shows a missing figure {ref}"
    for ref in report.get("figures", []):
        assert (out / ref).exists()


def test_device_reaches_every_model(run, tmp_path_factory):
    # run with --device cpu: every training was built with device "cpu" (None would be "auto")
    # through ctx.fit / ctx.train, and every model and tensor placed through ctx is on the CPU
    name, _, report = run
    devices = _scenario_runs.train_devices(name, tmp_path_factory)
    assert all(d == "cpu" for d in devices), (name, devices)
    counts, placed_on = report["placement"]["counts"], report["placement"]["devices"]
    assert counts.get("trained model", 0) == len(devices), (name, counts, devices)
    assert sum(counts.values()) >= 1 and placed_on == ["cpu"], (name, report["placement"])
    assert report["device"] == "cpu"


def test_the_physics_each_scenario_claims(run):
    name, _, report = run
    check = CLAIMS.get(name)
    if check is None:
        pytest.skip(f"{name}: no scenario-specific claims registered here")
    check(report)


# --- claims, from independent truth (theory or the scipy reference) ---------------------------
def _at(rows, depth):
    return next(r for r in rows if r["depth"] == depth)


def check_depth(r):
    deepest = r["config"]["depths"][-1]
    g = r["gradients_at_init"]
    # plain tanh stacks lose the gradient geometrically; 1/√L-scaled residual stacks keep it O(1)
    assert (
        _at(g["plain"], deepest)["grad_first"]
        < 1e-10 * _at(g["residual, α=1/√L"], deepest)["grad_first"]
    )
    scaled = [row["grad_first"] for row in g["residual, α=1/√L"]]
    assert max(scaled) / min(scaled) < 10
    # the unscaled residual stack's gradient grows with depth; a constant β > 0 makes it vanish
    assert _at(g["residual, α=1"], deepest)["grad_first"] > g["residual, α=1"][0]["grad_first"]
    assert (
        _at(g["residual, α=1/√L, β=0.1"], deepest)["grad_first"]
        < 1e-2 * _at(g["residual, α=1/√L"], deepest)["grad_first"]
    )
    # training: the deepest plain network learns nothing, the scaled residual one does
    final = r["training"]["final"]
    assert _at(final["plain"], deepest)["train_rel_mse"] > 0.5
    assert _at(final["residual, α=1/√L"], deepest)["train_rel_mse"] < 0.05
    # weight-tied ResNet → Neural ODE at first order in 1/L
    assert -1.1 < r["ode_limit"]["slope"] < -0.9
    # deleting one block: the plain network breaks, residual ones degrade gracefully
    d = r["deletion"]
    assert d["plain"]["median_single_deleted"] > 0.5
    for label in ("residual, α=1/√L", "residual, α=1/L"):
        assert d[label]["median_single_deleted"] < 0.1 * d["plain"]["median_single_deleted"]


def check_oscillator(r):
    dt, n = r["config"]["dt"], r["config"]["n_steps"]
    s = r["steppers"]
    # euler multiplies the energy of x' = Jx by |R(i·dt)|² = 1 + dt² every step, exactly
    assert s["euler"]["final |ΔH|/H0"] == pytest.approx((1 + dt**2) ** n - 1, rel=1e-6)
    # rk4: |R(iθ)|² = 1 − θ⁶/72 + θ⁸/576
    r2 = 1 - dt**6 / 72 + dt**8 / 576
    assert s["rk4"]["final |ΔH|/H0"] == pytest.approx(1 - r2**n, rel=1e-3)
    # leapfrog conserves a modified energy: H/H̃ stays within [1, 1/(1 − dt²/4)]
    bound = (dt**2 / 4) / (1 - dt**2 / 4)
    assert 0.5 * bound < s["leapfrog"]["max |ΔH|/H0"] <= bound * (1 + 1e-6)
    # the learned steppers are finite, trained, and far better than euler
    for name in ("resnet emulator", "neural ode"):
        assert s[name]["max |ΔH|/H0"] < 1e-2 * s["euler"]["max |ΔH|/H0"]
        assert s[name]["rel. error t=10"] < 0.5


def check_lorenz(r):
    # λ1 of the true field (rk4 at dt = 0.01) against the literature value 0.9056
    assert r["lambda1_true"] == pytest.approx(0.9056, rel=0.15)
    true = r["steppers"]["rk4 (true field)"]
    assert true["VPT (Lyapunov times)"] > 5  # only rk4's truncation error separates them
    assert true["W1 short mean"] < 1.0  # same attractor as scipy's
    # invariant measures: the true field's closed loop is a sample of scipy's measure, so it
    # scores about what a second scipy sample (the floor) does; a wrong attractor scores far more
    floor = r["invariant_floor"]
    spread = r["invariant_floor_splits"]  # the same W1 between random halves of the reference
    for c in ("x", "y", "z"):
        assert 0 < floor[f"W1inv({c})"] < 2.0  # x, y span ±20: a wrong measure is far off
        assert 0 < true[f"W1inv({c})"] < 5 * floor[f"W1inv({c})"] + 0.2, c
        assert 0 < spread["mean"][f"W1inv({c})"] <= spread["max"][f"W1inv({c})"] < 2.0, c
        assert true[f"W1inv({c})"] < 3 * spread["max"][f"W1inv({c})"], c
    for c in ("|x|", "|y|"):  # folded: the lobe-occupancy noise removed, a finer floor
        assert spread["mean"][f"W1sym({c})"] < spread["mean"]["W1inv(x)"], c
        assert true[f"W1sym({c})"] < 3 * spread["max"][f"W1sym({c})"], c
    for name, row in r["steppers"].items():
        assert row["VPT (Lyapunov times)"] >= 0
        # the emulators' one-step errors (least squares / LM in float64) are below rk4's
        assert row["VPT (Lyapunov times)"] >= 5, name


def check_stiff(r):
    for system in ("van_der_pol", "robertson"):
        for name, lim in r[system]["stability"].items():
            # measured on a grid of ratio 10^0.05 ≈ 1.12 around the linear prediction R/ρ(J)
            assert 0.7 * lim["predicted"] <= lim["measured"] <= 1.5 * lim["predicted"], name
    v = r["van_der_pol"]
    euler_limit = v["stability"]["euler"]["measured"]
    for name, rows in v["implicit"].items():
        for row in rows:  # adaptive implicit steps ≥ 1000× euler's stable dt, error < 30%
            assert row["dt"] > 1000 * euler_limit and row["error"] < 0.3, name
    be = r["robertson"]["implicit"]["backward_euler"]
    assert all(row["status"] == "ok" and row["error"] < 1e-2 for row in be)
    errs = [row["error"] for row in be]  # first order: error ∝ dt
    dts = [row["dt"] for row in be]
    order = math.log(errs[0] / errs[-1]) / math.log(dts[0] / dts[-1])
    assert 0.8 < order < 1.2
    assert all(s["final_error"] < 1.0 for s in r["learned"]["steppers"].values())


def check_wavepacket(r):
    rows = {(row["case"], row["stepper"]): row for row in r["summary"]}
    # unitary steps, learned or not, keep the norm to round-off; fidelity against scipy expm
    for case in ("harmonic", "barrier"):
        for stepper in ("crank_nicolson", "split_operator", "unitary_cayley"):
            assert rows[case, stepper]["max |norm-1|"] < 1e-12, (case, stepper)
        # the learned H does at least as well as the Cayley step of the exact H
        cayley, cn = rows[case, "unitary_cayley"], rows[case, "crank_nicolson"]
        assert cayley["final fidelity"] > cn["final fidelity"] - 0.01, case
    assert rows["harmonic", "unitary_cayley"]["final fidelity"] > 0.9
    assert rows["barrier", "unitary_cayley"]["final fidelity"] > 0.99
    assert rows["harmonic", "unitary_cayley"]["max |<x>-<x>_ref|"] < 0.5


def check_kohn_sham(r):
    rows = {row["propagator"]: row for row in r["summary"]}
    amplitude = r["dipole_amplitude"]
    assert 1e-3 < amplitude < 0.1  # a weak kick: linear response
    for name in ("split_operator", "crank_nicolson_pc", "exponential_midpoint", "etrs"):
        assert rows[name]["max |d - d_ref|"] < 1e-3 * amplitude, name  # vs scipy DOP853
        assert rows[name]["max |norm - 1|"] < 1e-12, name
    assert rows["euler"]["diverged at t"] is not None  # the residual step blows up
    static, kernel = rows["emulator (static v)"], rows["emulator (density kernel)"]
    assert max(static["max |norm - 1|"], kernel["max |norm - 1|"]) < 1e-12  # unitary
    # the learned density kernel follows the dipole; a frozen potential cannot
    assert kernel["max |d - d_ref|"] < 0.1 * amplitude
    assert kernel["max |d - d_ref|"] < 0.1 * static["max |d - d_ref|"]


def check_chain_fold(r):
    fold = r["folding"]
    # the staple folds the hairpin and narrows its size distribution
    assert fold["stapled"]["final_q"] > fold["unstapled"]["final_q"] + 0.4
    assert fold["stapled"]["rg_std"] < fold["unstapled"]["rg_std"]
    emu = {row["emulator"]: row for row in r["emulators"]["rows"]}
    ref_q, staples = r["emulators"]["reference_final_q"], emu["graph_staples"]
    # against the rk4 gradient flow the graph emulator with staple edges meets the scenario's
    # targets (quick training, seeds 0-2: rollout error 0.025-0.027, worst coil 0.057; Q off by
    # 0.013; W1(Rg) 0.3 % of the mean) ...
    assert staples["rollout_rel_l2"] < 0.05
    assert abs(staples["final_q"] - ref_q) < 0.05
    assert staples["rg_w1_rel"] < 0.02
    # ... and removing the staple edges makes the error far larger (24x here)
    assert emu["graph_no_staples"]["rollout_rel_l2"] > 5 * staples["rollout_rel_l2"]


CLAIMS = {
    "depth": check_depth,
    "kohn_sham": check_kohn_sham,
    "oscillator": check_oscillator,
    "lorenz": check_lorenz,
    "stiff": check_stiff,
    "wavepacket": check_wavepacket,
}
CLAIMS["chain_fold"] = check_chain_fold
