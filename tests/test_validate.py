"""validate(stepper, path) against an HDF5 reference, with analytic truth for the errors."""

import json
import math

import numpy as np
import pytest
import torch

import physres
from physres.steppers import Stepper
from physres.validation import validate


@pytest.fixture(scope="module")
def ho_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ho.h5"
    physres.data.generate("harmonic_oscillator", path, n_traj=4, t_end=5.0, progress=False)
    return path


def _amplification(name, h):
    """R(-i h): on w = q + i p the oscillator (ω = 1) is w' = -i w."""
    return complex(physres.steppers.stability_function(name, np.array(-1j * h)))


@pytest.mark.parametrize(
    ("name", "substeps"), [("rk4", 1), ("euler", 1), ("euler", 2), ("crank_nicolson", 1)]
)
def test_errors_match_the_analytic_amplification(ho_file, name, substeps):
    report = validate(name, ho_file, substeps=substeps, progress=False)
    m = report.metrics
    h = 0.05 / substeps
    k = np.arange(1, 101)  # scored frames: the initial state is never scored
    R = _amplification(name, h) ** (substeps * k)
    exact = np.exp(-1j * 0.05 * k)
    np.testing.assert_allclose(m["t"], 0.05 * k)
    # every trajectory has the same relative error |R^n - e^{-i t}| (the reference's own
    # error is ~1e-10)
    np.testing.assert_allclose(
        m["relative_l2"]["per_step_mean"], np.abs(R - exact), rtol=1e-4, atol=1e-9
    )
    energy = m["invariant_drift"]["energy"]
    assert energy["max_abs"] == pytest.approx(np.abs(np.abs(R) ** 2 - 1).max(), rel=1e-6, abs=1e-12)
    assert energy["reference_max_abs"] < 1e-8
    cost = m["cost"]
    assert cost["steps"] == 100 * substeps
    assert cost["nfev"] == {"rk4": 4, "euler": 1, "crank_nicolson": 1}[name] * 100 * substeps
    with physres.data.open(ho_file) as f:
        assert cost["reference"]["nfev"] == pytest.approx(f.stats["nfev"].sum())
    assert m["valid_prediction_time"]["mean"] == pytest.approx(5.0)  # never exceeds 0.5


def test_report_files_and_summary(ho_file, tmp_path):
    report = validate("rk4", ho_file, out=tmp_path / "val", n_traj=2, progress=False)
    out = tmp_path / "val"
    metrics = json.loads((out / "report.json").read_text())
    assert metrics["n_traj"] == 2 and metrics["trajectories"] == [0, 1]
    assert metrics["relative_l2"]["final_mean"] == pytest.approx(
        report.metrics["relative_l2"]["final_mean"]
    )
    md = (out / "report.md").read_text()
    assert "| quantity | rk4 | reference |" in md
    for name in ("error_vs_time", "trajectories", "invariant_drift"):
        assert (out / f"{name}.png").stat().st_size > 10_000
        assert f"({name}.png)" in md
    table = report.table()
    assert "wall time (s)" in table and "field evaluations" in table


def test_valid_prediction_time_in_lyapunov_times(ho_file):
    # euler's nRMSE grows past a small threshold; VPT scales with the given exponent
    plain = validate("euler", ho_file, threshold=0.05, progress=False).metrics
    lyap = validate("euler", ho_file, threshold=0.05, lyapunov_exponent=2.0, progress=False).metrics
    vpt = plain["valid_prediction_time"]["mean"]
    assert 0 < vpt < 5.0
    assert lyap["valid_prediction_time"]["mean_lyapunov_times"] == pytest.approx(2 * vpt)


class Exploding(Stepper):
    """Multiplies the state by 1e100 per step: non-finite after a few steps."""

    order = 1
    explicit = True

    def _step(self, x, t, dt):
        return x * 1e100


def test_a_diverging_stepper_is_reported_not_raised(ho_file, tmp_path):
    report = validate(Exploding(None, state_shape=(2,)), ho_file, progress=False)
    m = report.metrics
    assert m["failure"]["reason"].startswith("non-finite")
    assert m["failure"]["time"] == pytest.approx(0.2)  # (1e100)^4 overflows at step 4
    assert m["relative_l2"]["final_mean"] is None  # not a number: not scored
    report.save(tmp_path / "boom")  # figures and JSON still write
    assert "rollout failed" in (tmp_path / "boom" / "report.md").read_text()


def test_learned_map_steps_at_its_training_dt(ho_file):
    model = physres.models.get("resnet", state_shape=(2,), dt=0.1, width=8)
    m = validate(model, ho_file, progress=False).metrics
    np.testing.assert_allclose(m["t"], 0.1 * np.arange(1, 51))  # every second saved frame
    assert m["cost"]["steps"] == 50
    with pytest.raises(ValueError, match="not a whole number"):
        validate(
            physres.models.get("resnet", state_shape=(2,), dt=0.075, width=8),
            ho_file,
            progress=False,
        )
    with pytest.raises(ValueError, match="`substeps`"):
        validate(model, ho_file, substeps=2, progress=False)


def test_mismatched_model_and_dataset(ho_file, tmp_path):
    lorenz = physres.systems.get("lorenz63")
    with pytest.raises(ValueError, match=r"shape \(3,\).*shape \(2,\)"):
        validate(physres.steppers.get("rk4", lorenz.rhs), ho_file, progress=False)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        validate(physres.models.get("resnet", state_shape=(3,), dt=0.05), ho_file, progress=False)
    with pytest.raises(TypeError, match="complex"):
        validate(
            physres.models.get("resnet", state_shape=(2,), complex_state=True, dt=0.05),
            ho_file,
            progress=False,
        )
    pendulum = physres.systems.get("pendulum")  # same state shape, other physics
    with pytest.raises(ValueError, match="system mismatch.*'pendulum'.*'harmonic_oscillator'"):
        validate(physres.steppers.get("rk4", pendulum.rhs), ho_file, progress=False)
    with pytest.raises(ValueError, match="system mismatch"):
        validate("rk4", ho_file, system="pendulum", progress=False)
    other = physres.systems.get("harmonic_oscillator", omega=2.0)
    with pytest.raises(ValueError, match="parameters"):
        validate(physres.steppers.get("rk4", other.rhs), ho_file, progress=False)
    with pytest.raises(FileNotFoundError, match="no such file"):
        validate("rk4", tmp_path / "missing.h5", progress=False)
    with pytest.raises(ValueError, match="`split`"):
        validate("rk4", ho_file, split="holdout", progress=False)
    with pytest.raises(TypeError, match="`stepper`"):
        validate(lambda x, t, dt: x, ho_file, progress=False)


def test_split_selects_the_held_out_trajectories(ho_file):
    m = validate("rk4", ho_file, split="test", progress=False).metrics
    expected = physres.data.split_indices(4)["test"].tolist()
    assert m["trajectories"] == expected and m["n_traj"] == len(expected)
    assert math.isfinite(m["nrmse"]["final_mean"])


def test_torch_default_dtype_is_untouched(ho_file):
    validate("rk4", ho_file, n_traj=1, progress=False)
    assert torch.get_default_dtype() == torch.float64
