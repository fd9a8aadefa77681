"""Learned integrators. Every model is a :class:`~physres.steppers.Stepper`: ``model(x, t, dt)``.

>>> import physres
>>> model = physres.models.get("resnet", state_shape=(2,), width=32, dt=0.1)
>>> physres.models.names(physres.models.LearnedStepper)
['hybrid', 'implicit', 'node', 'resnet']

New models subclass :class:`LearnedStepper` (new networks :class:`LearnedField`) and register
with ``@physres.models.register("name")`` so :func:`physres.save` / :func:`physres.load` can
rebuild them.
"""

from .base import (
    REGISTRY,
    Configurable,
    LearnedField,
    LearnedStepper,
    get,
    names,
    register,
)
from .chain import ChainForceEmulator, ChainGraphEmulator
from .fields import MLP, PeriodicConv1d, build_net
from .hybrid import HybridStepper
from .implicit import ImplicitResNet
from .node import NeuralODE
from .polynomial import PolynomialField
from .projection import ProjectedEmulator
from .quantum import UnitaryCayleyEmulator
from .resnet import ResNetEmulator
from .symplectic import SymplecticEmulator

__all__ = [
    "MLP",
    "ChainForceEmulator",
    "ChainGraphEmulator",
    "REGISTRY",
    "Configurable",
    "HybridStepper",
    "ImplicitResNet",
    "LearnedField",
    "LearnedStepper",
    "NeuralODE",
    "PeriodicConv1d",
    "ResNetEmulator",
    "UnitaryCayleyEmulator",
    "build_net",
    "PolynomialField",
    "get",
    "names",
    "register",
    "SymplecticEmulator",
    "ProjectedEmulator",
]
