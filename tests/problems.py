"""Problems with exact (or tightly referenced) solutions, reused across the tests."""

from __future__ import annotations

import numpy as np
import torch
from scipy.integrate import solve_ivp

from physres.steppers import DenseOperator

F64 = torch.float64  # explicit: module-level tensors are built before any test fixture runs


class LinearProblem:
    """``x' = A x`` with a fixed non-normal, damped-oscillatory 3×3 ``A``; exact ``expm(tA) x0``."""

    state_shape = (3,)

    def __init__(self):
        self.A = torch.tensor([[-0.5, 2.0, 0.0], [-2.0, -0.5, 0.3], [0.1, 0.0, -1.0]], dtype=F64)
        self.x0 = torch.tensor([[1.0, 0.0, 0.5], [0.2, -0.7, 1.0]], dtype=F64)

    def rhs(self, t, x):
        return x @ self.A.T

    def jacobian(self, t, x):
        return self.A.expand(x.shape[0], 3, 3)

    def linear_operator(self, t):
        return DenseOperator(self.A)

    def exact(self, t: float) -> torch.Tensor:
        return self.x0 @ torch.linalg.matrix_exp(t * self.A).T


class NonlinearField:
    """A field with no declared structure (implicit steppers must use Newton): Lotka–Volterra
    with a time-dependent forcing. Reference from scipy DOP853 at rtol 1e-12."""

    def __call__(self, t, x):
        u, v = x[:, 0], x[:, 1]
        t = torch.as_tensor(t, dtype=x.dtype)
        return torch.stack([u - u * v + 0.1 * torch.sin(t), -v + u * v], dim=1)

    def numpy(self, t, y):
        u, v = y
        return [u - u * v + 0.1 * np.sin(t), -v + u * v]

    x0 = torch.tensor([[1.5, 0.8], [0.7, 1.3]], dtype=F64)

    def reference(self, t_end: float) -> torch.Tensor:
        out = [
            solve_ivp(
                self.numpy, (0.0, t_end), y.numpy(), method="DOP853", rtol=1e-12, atol=1e-14
            ).y[:, -1]
            for y in self.x0
        ]
        return torch.tensor(np.array(out), dtype=F64)


class HarmonicOscillator:
    """``q'' = -ω² q`` as a separable Hamiltonian state (q, p); exact rotation in phase space."""

    state_shape = (2,)

    def __init__(self, omega: float = 1.0):
        self.omega = omega

    def rhs(self, t, x):
        return torch.stack([x[:, 1], -(self.omega**2) * x[:, 0]], dim=1)

    def energy(self, x):
        return 0.5 * x[:, 1] ** 2 + 0.5 * self.omega**2 * x[:, 0] ** 2

    def exact(self, x0, t):
        w = self.omega
        q0, p0 = x0[:, 0], x0[:, 1]
        c, s = np.cos(w * t), np.sin(w * t)
        return torch.stack([q0 * c + p0 / w * s, -q0 * w * s + p0 * c], dim=1)


class Robertson:
    """Robertson's stiff kinetics (Robertson 1966) with its analytic Jacobian; no declared
    linear structure, so implicit steppers use Newton with this Jacobian."""

    state_shape = (3,)
    x0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)

    def rhs(self, t, x):
        y1, y2, y3 = x.unbind(-1)
        return torch.stack(
            [-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2**2, 3e7 * y2**2],
            dim=-1,
        )

    def jacobian(self, t, x):
        y1, y2, y3 = x.unbind(-1)
        z = torch.zeros_like(y1)
        c = torch.full_like(y1, 0.04)
        return torch.stack(
            [
                torch.stack([-c, 1e4 * y3, 1e4 * y2], -1),
                torch.stack([c, -1e4 * y3 - 6e7 * y2, -1e4 * y2], -1),
                torch.stack([z, 6e7 * y2, z], -1),
            ],
            -2,
        )

    def numpy(self, t, y):
        return self.rhs(t, torch.tensor(y)[None])[0].numpy()

    def reference(self, t_end: float) -> np.ndarray:
        sol = solve_ivp(
            self.numpy,
            (0.0, t_end),
            self.x0[0].numpy(),
            method="Radau",
            rtol=1e-11,
            atol=1e-15,
            jac=lambda t, y: self.jacobian(t, torch.tensor(y)[None])[0].numpy(),
        )
        return sol.y[:, -1]


def problem_for(name: str):
    """(field, x0) on which stepper ``name`` can run: any field for general steppers, the
    structure a structured stepper needs otherwise. A new structured stepper must add its
    problem here, or the registry-wide contract tests fail for it."""
    import physres

    cls = physres.steppers.REGISTRY.resolve(name)
    if cls.general:
        return NonlinearField(), NonlinearField.x0
    if name == "leapfrog":
        return HarmonicOscillator(omega=1.3).rhs, torch.tensor([[1.1, 0.4], [0.6, 1.2]], dtype=F64)
    if name == "exponential":
        problem = LinearProblem()
        return problem.rhs, problem.x0
    if name in ("split_operator", "exponential_midpoint", "etrs"):
        system = physres.systems.get(
            "schrodinger_1d", n=32, x_min=-8.0, x_max=8.0, potential="harmonic"
        )
        return system.rhs, system.sample_initial(2, seed=0)
    if name == "crank_nicolson_pc":  # nonlinear: gradients flow through the density
        system = physres.systems.get(
            "gross_pitaevskii_1d", n=32, x_min=-8.0, x_max=8.0, kinetic="fd3"
        )
        return system.rhs, system.sample_initial(2, seed=0)
    if name in ("euler_maruyama", "baoab"):
        dynamics = "underdamped" if name == "baoab" else "overdamped"
        system = physres.systems.get("bead_chain", n_beads=6, temperature=0.0, dynamics=dynamics)
        return system.rhs, system.sample_initial(2, seed=0)
    raise KeyError(
        f"no test problem for the structured stepper {name!r}: add one to "
        "tests/problems.py::problem_for"
    )
