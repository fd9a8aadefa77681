"""Validation and comparison of steppers, known physics or learned, against trusted references.

>>> report = physres.validation.validate(stepper, "lorenz.h5")
>>> report.metrics["nrmse_final"], report.save("runs/lorenz-validation")
>>> study = physres.validation.compare_steppers("harmonic_oscillator", ["euler", "rk4"])
>>> study.orders, study.largest_stable_dt
"""

from ._compare_figures import plot_stability_regions
from .compare import Comparison, RunResult, StepperResult, compare_steppers, fit_order
from .invariant import invariant_measure_w1, split_half_w1
from .lyapunov import lyapunov_exponent
from .metrics import (
    fidelity,
    invariant_drift,
    nrmse,
    relative_l2,
    valid_prediction_time,
    wasserstein1,
)
from .report import Report
from .validate import validate

__all__ = [
    "Comparison",
    "Report",
    "RunResult",
    "StepperResult",
    "compare_steppers",
    "fidelity",
    "fit_order",
    "invariant_drift",
    "lyapunov_exponent",
    "nrmse",
    "plot_stability_regions",
    "relative_l2",
    "valid_prediction_time",
    "validate",
    "wasserstein1",
    "invariant_measure_w1",
    "split_half_w1",
]
