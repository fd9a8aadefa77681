"""Bead chains: Gō-like folding with long-range staples (system ``bead_chain``).

>>> import physres
>>> chain = physres.systems.get("bead_chain", n_beads=32, staples=[(3, 28)])
"""

from . import potential
from .observables import (
    contact_map,
    distances,
    end_to_end,
    fraction_native_contacts,
    kabsch_rmsd,
    radius_of_gyration,
)
from .simulate import Trajectories, trajectories
from .system import MIN_STAPLE_SEPARATION, BeadChain
from .targets import hairpin, helix, native_contacts

__all__ = [
    "MIN_STAPLE_SEPARATION",
    "BeadChain",
    "Trajectories",
    "contact_map",
    "distances",
    "end_to_end",
    "fraction_native_contacts",
    "hairpin",
    "helix",
    "kabsch_rmsd",
    "native_contacts",
    "potential",
    "radius_of_gyration",
    "trajectories",
]
