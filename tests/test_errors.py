"""Every exception and warning class of physres lives in physres.errors; old homes re-export.

Private control-flow exceptions of one module, never part of the API (``_Terminated``: SIGTERM
as an exit that runs every cleanup; ``_Unbounded``: a stability probe's early stop), stay with
that module."""

import importlib
import inspect
import pickle
import pkgutil

import physres
from physres import _compile, errors, reference


def _modules():
    yield physres
    for info in pkgutil.walk_packages(physres.__path__, "physres."):
        if not info.name.endswith("__main__"):  # importing it would run a command
            yield importlib.import_module(info.name)


def test_every_public_exception_class_is_defined_in_errors():
    stray = set()
    for module in _modules():
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__.startswith("physres")
                and not name.startswith("_")
                and obj.__module__ != "physres.errors"
            ):
                stray.add(f"{obj.__module__}.{name}")
    assert not stray, f"define these in physres/errors.py and re-export them: {sorted(stray)}"


def test_old_import_locations_are_the_same_classes():
    assert reference.ReferenceSolveError is errors.ReferenceSolveError
    assert _compile.CompileFallbackWarning is errors.CompileFallbackWarning
    assert issubclass(errors.ReferenceSolveError, errors.PhysresError)
    assert issubclass(errors.CompileFallbackWarning, RuntimeWarning)
    exc = pickle.loads(pickle.dumps(errors.ReferenceSolveError("trajectory 3 failed", 3)))
    assert exc.index == 3 and str(exc) == "trajectory 3 failed"
