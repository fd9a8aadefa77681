"""The stepper study: fitted orders and largest stable dt against analytic values."""

import json
import math

import numpy as np
import pytest
import torch

import physres
from physres.systems import System
from physres.validation import compare_steppers, fit_order

STUDY = ["euler", "heun", "midpoint", "rk4", "leapfrog", "crank_nicolson", "backward_euler"]


@pytest.fixture(scope="module")
def oscillator_study():
    return compare_steppers(
        "harmonic_oscillator",
        STUDY,
        dts=[0.1, 0.05, 0.025, 0.0125, 0.00625],
        t_end=5.0,
        progress=False,
    )


def test_orders_on_the_harmonic_oscillator(oscillator_study):
    orders = oscillator_study.orders
    for name, p in {
        "euler": 1,
        "crank_nicolson": 2,
        "rk4": 4,
        "heun": 2,
        "leapfrog": 2,
        "backward_euler": 1,
    }.items():
        assert orders[name] == pytest.approx(p, abs=0.2), name
    # errors decrease with dt and are measured against the exact flow
    assert np.all(np.diff(oscillator_study.errors["rk4"]) < 0)


def test_largest_stable_dt_matches_linear_stability_theory(oscillator_study):
    # ω = 1: |R(iω dt)| ≤ 1 ⇔ dt ≤ 2√2 for rk4; leapfrog dt < 2; euler, heun and midpoint
    # have |R(iy)| > 1 for every y > 0 (unstable at every dt); A-stable implicit methods never
    # lose stability on the imaginary axis.
    dt = oscillator_study.largest_stable_dt
    assert dt["rk4"] == pytest.approx(2 * math.sqrt(2), rel=0.05)
    assert dt["leapfrog"] == pytest.approx(2.0, rel=0.05)
    for name in ("euler", "heun", "midpoint"):
        assert dt[name] == 0.0, name
        assert oscillator_study.stability[name]["status"] == "unstable at every dt tried"
    for name in ("crank_nicolson", "backward_euler"):
        assert dt[name] == math.inf, name


def test_stable_dt_scales_with_the_frequency():
    study = compare_steppers(
        "harmonic_oscillator",
        ["rk4", "leapfrog"],
        params={"omega": 4.0},
        dts=[0.01, 0.005],
        t_end=1.0,
        progress=False,
    )
    assert study.largest_stable_dt["rk4"] == pytest.approx(2 * math.sqrt(2) / 4, rel=0.05)
    assert study.largest_stable_dt["leapfrog"] == pytest.approx(0.5, rel=0.05)


class Decay(System):
    """``x' = -k x`` with no declared structure: linearity is detected from the field."""

    state_shape = (2,)
    t_end = 1.0
    dt_save = 0.05

    def __init__(self, k: float = 10.0):
        self.k = k
        super().__init__(k=k)

    def rhs(self, t, x):
        return -self.k * x

    def sample_initial(self, n, seed=0):
        return torch.ones(n, 2, dtype=torch.float64)

    def invariants(self, x):
        return {}


def test_dissipative_linear_system_real_axis_limits():
    # on the negative real axis: euler and heun stable for k·dt ≤ 2, rk4 for k·dt ≤ 2.7853
    study = compare_steppers(
        Decay(k=10.0), ["euler", "heun", "rk4"], dts=[0.01, 0.005], progress=False
    )
    dt = study.largest_stable_dt
    assert dt["euler"] == pytest.approx(0.2, rel=1e-4)
    assert dt["heun"] == pytest.approx(0.2, rel=1e-4)
    assert dt["rk4"] == pytest.approx(0.27853, rel=1e-3)
    assert "exact flow" in study.reference


def test_nonlinear_system_uses_scipy_and_the_growth_criterion():
    study = compare_steppers(
        "pendulum",
        ["euler", "rk4"],
        dts=[0.1, 0.05, 0.025],
        t_end=2.0,
        n_traj=2,
        stability_steps=400,
        progress=False,
    )
    assert "scipy" in study.reference
    assert study.orders["rk4"] == pytest.approx(4, abs=0.3)
    s = study.stability["rk4"]
    assert s["status"] == "bounded" and "nonlinear" in s["criterion"]
    # small oscillations are the linear case (2√2); finite amplitudes lower the frequency
    assert 2.0 < s["largest_stable_dt"] < 6.0


def test_report_files(oscillator_study, tmp_path):
    out = oscillator_study.save(tmp_path / "study")
    metrics = json.loads((out / "report.json").read_text())
    assert metrics["steppers"]["rk4"]["stability"]["largest_stable_dt"] == pytest.approx(
        2 * math.sqrt(2), rel=0.05
    )
    assert metrics["steppers"]["crank_nicolson"]["stability"]["largest_stable_dt"] is None
    md = (out / "report.md").read_text()
    assert "| stepper |" in md and "largest stable dt" in md
    for name in (
        "error_vs_dt",
        "work_precision",
        "invariant_drift",
        "amplification",
        "stability_regions",
    ):
        assert (out / f"{name}.png").stat().st_size > 10_000
        assert f"({name}.png)" in md
    table = oscillator_study.report().table()
    assert "rk4" in table and "2.828" in table and "0 (unstable)" in table


def test_fit_order_on_synthetic_errors():
    dts = np.array([0.1, 0.05, 0.025, 0.0125])
    order, span = fit_order(dts, 3.0 * dts**3)
    assert order == pytest.approx(3.0) and span == (0.0125, 0.1)
    # points above 0.1 (not asymptotic) and diverged runs are left out
    order, span = fit_order(dts, np.array([np.inf, 0.5, 2e-3, 1e-3]))
    assert order == pytest.approx(1.0) and span == (0.0125, 0.025)
    assert math.isnan(fit_order(dts, np.full(4, np.inf))[0])


def test_bad_input():
    with pytest.raises(ValueError, match="unknown stepper 'rk9'"):
        compare_steppers("harmonic_oscillator", ["rk9"], progress=False)
    with pytest.raises(ValueError, match="`dts`"):
        compare_steppers("harmonic_oscillator", ["rk4"], dts=[30.0], progress=False)
    with pytest.raises(ValueError, match="`dts`"):
        compare_steppers("harmonic_oscillator", ["rk4"], dts=[-0.1], progress=False)
    with pytest.raises(ValueError, match="duplicates"):
        compare_steppers("harmonic_oscillator", ["rk4", "rk4"], progress=False)
    with pytest.raises(ValueError, match="`params`"):
        compare_steppers(
            physres.systems.get("harmonic_oscillator"),
            ["rk4"],
            params={"omega": 2.0},
            progress=False,
        )
    with pytest.raises(ValueError, match="`growth`"):
        compare_steppers("harmonic_oscillator", ["rk4"], growth=0.5, progress=False)
    with pytest.raises(TypeError, match="`system`"):
        compare_steppers(3, ["rk4"], progress=False)
