"""One ``--quick`` run of each scenario per test session, shared by the test modules that
check scenarios (tests/test_scenarios.py, tests/test_scenario_figures.py), with every line
the scenario drew recorded (``Axes.plot`` is what ``semilogy`` and ``loglog`` call), so the
figures can be checked against what their captions say without running anything twice."""

import pytest
from matplotlib.axes import Axes

from physres.scenarios import run_scenario

_RUNS: dict = {}


def run(name: str, tmp_path_factory):
    """``(name, out, report)`` of the scenario's quick run (run on first request)."""
    return _get(name, tmp_path_factory)[:3]


def lines(name: str, tmp_path_factory) -> list:
    """The ``Line2D`` objects the scenario drew (their axes keep labels, scales, titles)."""
    return _get(name, tmp_path_factory)[3]


def _get(name, tmp_path_factory):
    if name not in _RUNS:
        out = tmp_path_factory.mktemp(name)
        drawn: list = []
        original = Axes.plot

        def recording(self, *args, **kwargs):
            made = original(self, *args, **kwargs)
            drawn.extend(made)
            return made

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Axes, "plot", recording)
            report = run_scenario(name, out, quick=True, device="cpu", progress=False)
        _RUNS[name] = (name, out, report, drawn)
    return _RUNS[name]
