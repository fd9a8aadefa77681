"""Quantum systems on a uniform 1-D grid (atomic units by default).

>>> import physres
>>> qs = physres.systems.get("schrodinger_1d", n=128, potential="harmonic")
>>> energies, states = qs.eigenstates(3)
"""

from .base import QuantumSystem
from .grid import Grid1D
from .gross_pitaevskii import GrossPitaevskii1D
from .hamiltonian import KINETICS, Hamiltonian
from .imaginary_time import ground_state_imaginary_time
from .kohn_sham import KohnSham1D
from .lda import exchange_energy_density, exchange_potential
from .operators import SpectralOperator
from .potentials import FIELDS, POTENTIALS, dipole_field, potential_values
from .schrodinger import Schrodinger1D

__all__ = [
    "FIELDS",
    "KINETICS",
    "POTENTIALS",
    "Grid1D",
    "GrossPitaevskii1D",
    "Hamiltonian",
    "KohnSham1D",
    "QuantumSystem",
    "Schrodinger1D",
    "SpectralOperator",
    "dipole_field",
    "exchange_energy_density",
    "exchange_potential",
    "ground_state_imaginary_time",
    "potential_values",
]
