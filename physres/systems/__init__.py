"""Known physics: classical ODEs, stiff kinetics, quantum grids, bead chains.

>>> import physres
>>> system = physres.systems.get("lorenz63", rho=28.0)
"""

# importing a module registers its systems
from . import chain, classical, quantum, stiff  # noqa: F401
from .base import REGISTRY, System, get, names, register

__all__ = ["REGISTRY", "System", "get", "names", "register"]
