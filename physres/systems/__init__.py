"""Known physics: classical ODEs, stiff kinetics, quantum grids, bead chains.

>>> import physres
>>> system = physres.systems.get("lorenz63", rho=28.0)
"""

from .base import REGISTRY, System, get, names, register

__all__ = ["REGISTRY", "System", "get", "names", "register"]
