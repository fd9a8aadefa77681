"""Training learned integrators: ``physres.training.fit(model, data_path, config)``.

>>> import physres
>>> model = physres.models.ResNetEmulator(state_shape=(2,))
>>> cfg = physres.training.TrainConfig(epochs=20, unroll=4, frame_step=10)
>>> result = physres.training.fit(model, "oscillator.h5", cfg)  # doctest: +SKIP
"""

from .budget import fit_for_steps
from .build import data_info, model_for
from .config import TrainConfig
from .loop import FitResult, fit
from .losses import rollout_error, unrolled_loss

__all__ = [
    "FitResult",
    "TrainConfig",
    "data_info",
    "fit",
    "model_for",
    "rollout_error",
    "unrolled_loss",
]
__all__ += ["fit_for_steps"]
