"""One ``--quick`` run of each scenario per test session, shared by the test modules that
check scenarios (tests/test_scenarios.py, tests/test_scenario_figures.py), with every line
the scenario drew recorded (``Axes.plot`` is what ``semilogy`` and ``loglog`` call), so the
figures can be checked against what their captions say without running anything twice, and
the ``device`` of every ``TrainConfig`` the run built (every training goes through one)."""

import pytest
from matplotlib.axes import Axes

import physres.training
from physres.runner import run_scenario

_RUNS: dict = {}


def run(name: str, tmp_path_factory):
    """``(name, out, report)`` of the scenario's quick run (run on first request)."""
    return _get(name, tmp_path_factory)[:3]


def lines(name: str, tmp_path_factory) -> list:
    """The ``Line2D`` objects the scenario drew (their axes keep labels, scales, titles)."""
    return _get(name, tmp_path_factory)[3]


def train_devices(name: str, tmp_path_factory) -> list:
    """``TrainConfig.device`` of every training in the scenario's quick run, in order."""
    return _get(name, tmp_path_factory)[4]


def _get(name, tmp_path_factory):
    if name not in _RUNS:
        out = tmp_path_factory.mktemp(name)
        drawn: list = []
        devices: list = []
        original = Axes.plot
        check = physres.training.TrainConfig.__post_init__

        def recording(self, *args, **kwargs):
            made = original(self, *args, **kwargs)
            drawn.extend(made)
            return made

        def post_init(self):
            devices.append(self.device)
            check(self)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Axes, "plot", recording)
            mp.setattr(physres.training.TrainConfig, "__post_init__", post_init)
            report = run_scenario(name, out, quick=True, device="cpu", progress=False)
        _RUNS[name] = (name, out, report, drawn, devices)
    return _RUNS[name]
