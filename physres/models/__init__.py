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
from .chain import ChainGraphEmulator
from .fields import MLP, PeriodicConv1d, build_net
from .hybrid import HybridStepper
from .implicit import ImplicitResNet
from .node import NeuralODE
from .projection import ProjectedEmulator
from .quantum import UnitaryCayleyEmulator
from .resnet import ResNetEmulator
from .symplectic import SymplecticEmulator

__all__ = [
    "MLP",
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
    "get",
    "names",
    "register",
    "SymplecticEmulator",
    "ProjectedEmulator",
]
