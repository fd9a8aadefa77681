"""Every scenario's figures and report values lie in their valid range: a fidelity in [0, 1],
norms positive, errors non-negative (finite, or None for a flagged method), and — for the
wavepacket, kohn_sham and depth figures — the plotted lines are the quantity the axis names,
within its range, with a method that is not a propagator flagged rather than drawn as the
most accurate. Reuses the session's one --quick run of each scenario (tests/_scenario_runs.py);
the scenario list comes from `physres run --list`."""

import math
import re

import _scenario_runs
import numpy as np
import pytest

from physres.cli import main
from physres.runner import list_scenarios


def _listed(capsys) -> list[str]:
    assert main(["run", "--list"]) == 0
    return [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_every_listed_scenario_is_checked(capsys):
    assert _listed(capsys) == list_scenarios()


@pytest.fixture(scope="module", params=list_scenarios())
def run(request, tmp_path_factory):
    name, out, report = _scenario_runs.run(request.param, tmp_path_factory)
    return name, out, report, _scenario_runs.lines(request.param, tmp_path_factory)


def _leaves(obj, key=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, str(k))
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaves(v, key)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield key, obj


ERROR_KEY = re.compile(r"error|rmse|mse|drift|\|Δ|\|.*-.*\||^W1|wasserstein|deviation", re.I)


def test_report_values_in_range(run):
    name, _, report, _ = run
    for key, value in _leaves(report):
        assert math.isfinite(value), (name, key)
        if "fidelity" in key.lower():
            assert 0.0 <= value <= 1.0 + 1e-12, (name, key, value)
        elif re.search(r"\bnorm\b", key) and not re.search(r"[|Δ-]|err", key):
            assert value > 0, (name, key, value)
        elif ERROR_KEY.search(key) and not re.search(r"slope|order|ratio", key, re.I):
            assert value >= 0, (name, key, value)


def _axes_lines(lines, ylabel_part):
    return [ln for ln in lines if ylabel_part in ln.axes.get_ylabel()]


def _y(line) -> np.ndarray:
    y = np.asarray(line.get_ydata(), dtype=float)
    return y[np.isfinite(y)]


def check_wavepacket(report, lines):
    from physres.runner import load_scenario

    wp = load_scenario("wavepacket")
    infidelity = _axes_lines(lines, "infidelity")
    norm = _axes_lines(lines, r"\|\psi(t)\|^2 - 1")
    assert infidelity and norm
    for ln in infidelity:  # normalised: 1 − F ∈ [0, 1]; round-off drawn at the floor
        y = _y(ln)
        assert y.size and y.min() >= wp.FLOOR * (1 - 1e-12) and y.max() <= 1 + 1e-9, ln.get_label()
    for ln in norm:
        assert _y(ln).min() >= wp.FLOOR * (1 - 1e-12), ln.get_label()
    for ln in _axes_lines(lines, "|\\psi(x)|^2"):
        assert _y(ln).min() >= 0
    labels = {ln.get_label() for ln in infidelity}
    for row in report["summary"]:
        if row["stepper"] == "reference":
            continue
        ok = row["status"] == "ok"
        assert ok == (
            row["diverged at t"] is None
            and row["max |norm-1|"] is not None
            and row["max |norm-1|"] <= wp.NORM_TOLERANCE
        ), row
        if not ok:  # flagged in the legend, never drawn as if it were a propagator
            assert any(lab.startswith(f"{row['stepper']} (") for lab in labels), row
            assert row["stepper"] not in labels, row


def check_kohn_sham(report, lines):
    dipole = _axes_lines(lines, "dipole moment")
    spectrum = _axes_lines(lines, "|d(ω)|")
    assert dipole and spectrum
    for ln in dipole:
        assert np.abs(_y(ln)).max() <= 1.0, ln.get_label()
    for ln in spectrum:
        assert _y(ln).min() >= 1e-12 * (1 - 1e-12), ln.get_label()
    drawn = {ln.get_label() for ln in dipole}
    titles = " ".join({ln.axes.get_title() for ln in dipole})
    for row in report["summary"]:
        if row["diverged at t"] is not None:  # not drawn, and the title says so
            assert row["propagator"] not in drawn and row["propagator"] in titles, row


def check_depth(report, lines):
    for part in ("MSE", r"\partial"):
        axes_lines = _axes_lines(lines, part)
        assert axes_lines, part
        for ln in axes_lines:  # log axes: MSE ratios and gradient norms are positive
            y = _y(ln)
            assert y.size == 0 or y.min() > 0, ln.get_label()
    for ln in _axes_lines(lines, "RMS state error"):
        assert _y(ln).min() >= 0


def check_lorenz(report, lines):
    # invariant-measure W1 (per coordinate and folded) and its floor: finite and positive for
    # every stepper that did not diverge, and for the reference against itself
    floor = report["invariant_floor"]
    rows = [floor, *report["steppers"].values()]
    keys = [f"W1inv({c})" for c in "xyz"] + ["W1sym(|x|)", "W1sym(|y|)"]
    assert all(k in floor for k in keys), floor
    for row in rows:
        for k in keys:
            v = row[k]
            assert v is None or (math.isfinite(v) and v > 0), (row.get("stepper"), k, v)
    assert all(floor[k] is not None for k in keys)
    assert report["summary"][0]["stepper"] == "reference (other states)"
    for ln in _axes_lines(lines, r"\|\hat x - x\|"):  # error growth on a log axis: positive
        assert _y(ln).min() > 0, ln.get_label()


CHECKS = {"wavepacket": check_wavepacket, "kohn_sham": check_kohn_sham, "depth": check_depth}
CHECKS["lorenz"] = check_lorenz


def test_plotted_quantities_in_range(run):
    name, _, report, lines = run
    check = CHECKS.get(name)
    if check is None:
        pytest.skip(f"{name}: its report values are checked above; its figures by its own tests")
    assert lines, f"{name} drew no line"
    check(report, lines)
