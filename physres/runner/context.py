"""What a scenario's ``run(cfg, ctx)`` receives: the device, the output directory, progress,
figure saving, and training that lands on the device.

Every model and tensor a scenario hands to ``ctx`` (:meth:`Context.model`,
:meth:`Context.tensor`, :meth:`Context.fit`, :meth:`Context.train`) is moved to ``--device``
and its device recorded; the runner checks the record and puts it in the report
(``"placement"``).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import _output

DEVICES = ("auto", "cpu", "cuda")
DPI = 110  # the scenario figures' resolution


def resolve_device(device) -> str:
    """``auto`` (or ``None``) → ``cuda`` when available, else ``cpu``; ``cuda`` is checked.

    >>> resolve_device("cpu")
    'cpu'
    """
    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in DEVICES:
        raise ValueError(f"`--device` must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "`--device cuda` was requested but CUDA is not available; use --device cpu (or auto)"
        )
    return device


@contextlib.contextmanager
def cpu_threads(device, n: int = 1):
    """Run the block with ``n`` torch threads when ``device`` is the CPU, then restore.

    Small networks and batches gain nothing from intra-op threads, and on a busy machine
    the threads' spin-waiting makes them many times slower.
    """
    previous = torch.get_num_threads()
    if str(device) == "cpu":
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def cpu_time_ratio(reference, candidate, repeat: int = 3) -> float:
    """CPU time of ``reference()`` over that of ``candidate()``: the best of ``repeat``
    interleaved runs of each, in this process (a speed-up when above 1)."""
    best = {"reference": float("inf"), "candidate": float("inf")}
    for _ in range(repeat):
        for label, fn in (("reference", reference), ("candidate", candidate)):
            t0 = time.process_time()
            fn()
            best[label] = min(best[label], time.process_time() - t0)
    return best["reference"] / max(best["candidate"], 1e-9)


def devices_of(obj) -> set[str]:
    """Device types holding a module's parameters and buffers, or a tensor."""
    if isinstance(obj, torch.Tensor):
        return {obj.device.type}
    if isinstance(obj, torch.nn.Module):
        return {t.device.type for t in itertools.chain(obj.parameters(), obj.buffers())}
    raise TypeError(f"expected a torch module or tensor, got {type(obj).__name__}")


@dataclass
class Context:
    """The run of one scenario: where it writes, on which device, at which preset.

    Attributes
    ----------
    name : str
        Scenario name.
    out : Path
        Output directory (created); data, models and figures go here.
    device : str
        ``"cpu"`` or ``"cuda"`` (resolved from ``--device``).
    preset : str
        ``"quick"`` or ``"full"``: which preset the config started from.
    progress : bool
        Show progress bars.
    figures : list of str
        File names saved by :meth:`save_figure`, in order.
    placement : list of dict
        ``{"kind", "type", "devices"}`` of every module and tensor placed through ``ctx``.
    phases : dict
        Wall seconds of each block timed by :meth:`phase`, by name (the report's ``phase_s``).
    """

    name: str
    out: Path
    device: str = "cpu"
    preset: str = "quick"
    progress: bool = True
    figures: list[str] = field(default_factory=list)
    placement: list[dict] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        """Whether the config started from ``QUICK`` (``--quick``)."""
        return self.preset == "quick"

    @contextlib.contextmanager
    def phase(self, name: str):
        """``with ctx.phase(name):`` adds the block's wall time to ``phases[name]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start

    # --- the device ---------------------------------------------------------------------------
    def _record(self, kind: str, obj) -> None:
        self.placement.append(
            {"kind": kind, "type": type(obj).__name__, "devices": sorted(devices_of(obj))}
        )

    def model(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` moved to the device (in place, returned)."""
        module = module.to(self.device)
        self._record("model", module)
        return module

    def tensor(self, x, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``x`` (tensor or array) as a tensor on the device, optionally cast to ``dtype``."""
        x = torch.as_tensor(x).to(self.device, dtype)
        self._record("tensor", x)
        return x

    def fit(self, model, data, steps: int, **options):
        """:func:`physres.training.fit_for_steps` on the device with the run's progress
        setting; returns the ``FitResult`` (the model stays on the device)."""
        from .. import training

        result = training.fit_for_steps(
            model, data, steps, device=self.device, progress=self.progress, **options
        )
        self._record("trained model", model)
        return result

    def train(self, model, data, **config):
        """:func:`physres.training.fit` with ``TrainConfig(**config)`` on the device, with the
        run's progress setting; returns the ``FitResult`` (the model stays on the device)."""
        from .. import training

        cfg = training.TrainConfig(device=self.device, progress=self.progress, **config)
        result = training.fit(model, data, cfg)
        self._record("trained model", model)
        return result

    def misplaced(self) -> list[dict]:
        """Records of modules or tensors that were not (only) on the device."""
        return [r for r in self.placement if r["devices"] and r["devices"] != [self.device]]

    # --- outputs -----------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """``out / name``."""
        return self.out / name

    @staticmethod
    def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
        """``(fig, axes)`` on a bare ``matplotlib.figure.Figure`` (no pyplot, no backend
        switch); arguments as ``pyplot.subplots``."""
        return _output.subplots(nrows, ncols, **kwargs)

    def save_figure(self, fig, name: str, dpi: int = DPI) -> str:
        """Lay out and write ``fig`` as ``out / name`` (PNG, atomically); returns ``name``."""
        if not isinstance(name, str) or not name.endswith(".png") or "/" in name:
            raise ValueError(f"`name` must be a file name ending in .png, got {name!r}")
        _output.save_figure(fig, self.out / name, dpi=dpi)
        if name not in self.figures:
            self.figures.append(name)
        return name

    def bar(self, total: int, desc: str, unit: str = "step"):
        """A tqdm progress bar (hidden unless ``progress``)."""
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, disable=not self.progress)
