"""Propagators of ``iħ ∂ψ/∂t = H[ρ](t) ψ`` for grid quantum systems (``H = T + v_eff``).

They need the field's owner to be a physres quantum system (``hamiltonian``, ``density``,
``effective_potential``; see :class:`physres.systems.quantum.QuantumSystem`), so they are
registered with ``general=False``.

- ``split_operator``: Strang splitting ``e^{-iV(t+Δt)Δt/2ħ} e^{-iTΔt/ħ} e^{-iV(t)Δt/2ħ}``
  with ``T`` diagonal in the grid's FFT/sine basis (Feit, Fleck & Steiger 1982). The
  potential half-steps leave ``|ψ|²`` unchanged, so the density-dependent potential of
  Gross–Pitaevskii or Kohn–Sham is evaluated exactly. Unitary; order 2.
- ``exponential_midpoint``: ``ψ' = exp(−iΔt H(t + Δt/2, ρ_mid)/ħ) ψ``, ``ρ_mid`` from a
  predictor for nonlinear ``H``. Order 2.
- ``crank_nicolson_pc``: Cayley step of the midpoint Hamiltonian with a density predictor;
  one O(N) band solve per step for finite-difference kinetics. Unitary; order 2.
- ``etrs``: enforced time-reversal symmetry,
  ``ψ' = exp(−iΔt H(t+Δt, ρ̃)/2ħ) exp(−iΔt H(t, ρ)/2ħ) ψ`` with ``ρ̃`` from the predictor
  ``exp(−iΔt H(t, ρ)/ħ) ψ`` (Castro, Marques & Rubio, J. Chem. Phys. 121, 3425 (2004)). Order 2.

Exponentials of the frozen ``H`` are applied by a batched Lanczos (Krylov) method with the
a-posteriori error estimate of Saad (SIAM J. Numer. Anal. 29, 209 (1992)); a step whose Krylov
space does not converge is split into substeps.
"""

from __future__ import annotations

import torch

from ..errors import ConvergenceError
from .banded import cayley_banded, expi
from .base import Stepper, register


def _quantum_owner(stepper):
    owner = stepper.structure
    if not all(hasattr(owner, a) for a in ("hamiltonian", "density", "effective_potential")):
        raise TypeError(
            f"`{stepper.name}` needs a physres quantum system's field (e.g. "
            "physres.systems.get('schrodinger_1d').rhs); got a field whose owner is "
            f"{type(owner).__name__}"
        )
    return owner


@register("split_operator")
class SplitOperator(Stepper):
    """Strang split-operator step (FFT or sine transform); unitary, order 2."""

    order = 2
    explicit = True
    general = False

    def _step(self, x, t, dt):
        sys = _quantum_owner(self)
        ham = sys.hamiltonian
        g, hb = ham.grid, ham.hbar
        dt = float(dt)
        ctype = x.dtype if x.is_complex() else torch.complex128
        key = (dt, id(ham), x.device, ctype)
        static = not (sys.nonlinear or sys.time_dependent)
        fresh = getattr(self, "_kinetic_key", None) != key
        if fresh or self._first_of_dt:  # the propagators, once per dt
            # a new Δt gets the plain transform pair; the image convolution (whose set-up
            # costs a few steps) only once the same Δt comes again, so changing steps stay cheap
            self._kinetic_key, self._first_of_dt = key, fresh
            kinetic = expi(-1j * dt / hb, ham.kinetic_symbol.to(x.device)).to(ctype)
            self._kinetic = g.diagonal_propagator(kinetic, images=not fresh)  # e^{-iTΔt/ħ}
            if static:  # e^{-iVΔt/2ħ} e^{-iTΔt/ħ} e^{-iVΔt/2ħ} as one operator
                half = expi(-0.5j * dt / hb, sys.effective_potential(t, None).to(x.device)).to(
                    ctype
                )
                self._static = g.diagonal_propagator(kinetic, pre=half, post=half, images=not fresh)
        if static:
            return self._static(x)
        x = expi(-0.5j * dt / hb, self._potential_at(sys, t, x)) * x
        x = self._kinetic(x)
        return expi(-0.5j * dt / hb, self._potential_at(sys, t + dt, x)) * x

    @staticmethod
    def _potential_at(sys, t, x):
        return sys.effective_potential(t, sys.density(x) if sys.nonlinear else None)


class _MagnusStepper(Stepper):
    """Exponential steps of frozen Hamiltonians, applied by Lanczos.

    Options: ``krylov_tol`` (error per exponential relative to ``‖ψ‖``, default 1e-12),
    ``krylov_dim`` (largest Krylov space, default 40), ``n_corrector`` (corrector passes for
    density-dependent ``H``, default 1).
    """

    order = 2
    explicit = True
    general = False

    def __init__(
        self,
        field=None,
        *,
        state_shape=None,
        krylov_tol: float = 1e-12,
        krylov_dim: int = 40,
        n_corrector: int = 1,
    ):
        super().__init__(field, state_shape=state_shape)
        from .. import _checks

        self.krylov_tol = _checks.positive("krylov_tol", krylov_tol)
        self.krylov_dim = _checks.positive_int("krylov_dim", krylov_dim)
        self.n_corrector = _checks.positive_int("n_corrector", n_corrector)

    def _expm(self, sys, v, x, tau):
        """``exp(−iτ(T + v)/ħ) x``."""
        ham = sys.hamiltonian
        return krylov_expm(
            lambda y: ham.apply(y, potential=v),
            x,
            tau / ham.hbar,
            tol=self.krylov_tol,
            max_dim=self.krylov_dim,
        )


@register("exponential_midpoint")
class ExponentialMidpoint(_MagnusStepper):
    """``ψ' = exp(−iΔt H(t + Δt/2, ρ_mid)/ħ) ψ`` (second-order Magnus); for nonlinear ``H``,
    ``ρ_mid = (ρ(ψ) + ρ(ψ̃))/2`` with the predictor ``ψ̃`` the same step with ``ρ(ψ)``."""

    def _step(self, x, t, dt):
        sys = _quantum_owner(self)
        tm = t + dt / 2
        rho = sys.density(x)
        v = sys.effective_potential(tm, rho)
        if not sys.nonlinear:
            return self._expm(sys, v, x, dt)
        for _ in range(self.n_corrector):
            pred = self._expm(sys, v, x, dt)
            v = sys.effective_potential(tm, 0.5 * (rho + sys.density(pred)))
        return self._expm(sys, v, x, dt)


@register("etrs")
class ETRS(_MagnusStepper):
    """Enforced time-reversal symmetry: ``ψ' = e^{−iΔtH(t+Δt, ρ̃)/2ħ} e^{−iΔtH(t, ρ)/2ħ} ψ``,
    ``ρ̃`` the density of the predictor ``e^{−iΔtH(t, ρ)/ħ} ψ`` (corrector passes refine it)."""

    def _step(self, x, t, dt):
        sys = _quantum_owner(self)
        v0 = sys.effective_potential(t, sys.density(x))
        half = self._expm(sys, v0, x, dt / 2)
        if not sys.nonlinear:
            return self._expm(sys, sys.effective_potential(t + dt, None), half, dt / 2)
        pred = self._expm(sys, v0, half, dt / 2)  # = exp(−iΔt H(t, ρ)/ħ) ψ
        for _ in range(self.n_corrector):
            v1 = sys.effective_potential(t + dt, sys.density(pred))
            pred = self._expm(sys, v1, half, dt / 2)
        return pred


@register("crank_nicolson_pc")
class CrankNicolsonPC(Stepper):
    """Cayley (Crank–Nicolson) step of a frozen midpoint Hamiltonian, for any grid quantum
    system: ``ψ' = (I + iΔtH̄/2ħ)⁻¹(I − iΔtH̄/2ħ)ψ``, ``H̄ = T + v_eff(t + Δt/2, ρ̄)``.

    For linear ``H``, ``ρ̄`` plays no part and this is the Crank–Nicolson step of the midpoint
    Hamiltonian. For density-dependent ``H`` (Gross–Pitaevskii, Kohn–Sham), ``ρ̄ = (ρ(ψ) + ρ(ψ̃))/2``
    with the predictor ``ψ̃`` the same step with ``ρ(ψ)`` (``n_corrector`` passes). Unitary for
    any ``ρ̄``; order 2. With a finite-difference kinetic energy every Cayley step is one O(N)
    band solve per sample, differentiable in ``ψ`` through ``ρ̄`` too; a spectral kinetic energy
    is solved by preconditioned GMRES. The generic ``crank_nicolson`` solves the nonlinear
    implicit trapezoidal rule by Newton–Krylov instead (exact, but far costlier).
    """

    order = 2
    explicit = False
    general = False

    def __init__(self, field=None, *, state_shape=None, n_corrector: int = 1):
        super().__init__(field, state_shape=state_shape)
        from .. import _checks

        self.n_corrector = _checks.positive_int("n_corrector", n_corrector)

    def _step(self, x, t, dt):
        sys = _quantum_owner(self)
        tm = t + dt / 2
        if not sys.nonlinear:
            return self._cayley(sys, sys.effective_potential(tm, None), x, dt)
        rho = sys.density(x)
        v = sys.effective_potential(tm, rho)
        for _ in range(self.n_corrector):
            pred = self._cayley(sys, v, x, dt)
            v = sys.effective_potential(tm, 0.5 * (rho + sys.density(pred)))
        return self._cayley(sys, v, x, dt)

    def _cayley(self, sys, v, x, dt):
        """``(I + iΔt(T + v)/2ħ)⁻¹(I − iΔt(T + v)/2ħ) x`` per sample (``v`` per sample or
        shared)."""
        ham = sys.hamiltonian
        n, batch = x.shape[-1], x.shape[0]
        flat = x.reshape(batch, -1, n)
        v = torch.as_tensor(v, device=x.device)
        per_sample = v.dim() > 1 and v.shape[0] == batch and batch > 1
        v = v.reshape(-1, n) if per_sample else v.reshape(-1, n)[0]
        periodic = ham.grid.boundary == "periodic"
        c = -0.5j * float(dt) / ham.hbar  # I - c·H = I + iΔtH/2ħ
        if ham.kinetic != "spectral":
            kinetic = torch.from_numpy(ham.kinetic_bands()).to(v)
            if per_sample:
                out = cayley_banded(kinetic, c, flat, v, periodic=periodic)
            else:
                out = cayley_banded(
                    torch.cat([kinetic[:1] + v, kinetic[1:]]), c, flat, periodic=periodic
                )
            return out.reshape(x.shape).to(x.dtype)
        out = []  # spectral kinetic energy: no band form, GMRES per potential
        for b in range(batch if per_sample else 1):
            rows = flat[b : b + 1] if per_sample else flat
            op = ham.operator(scale=1.0, potential=(v[b] if per_sample else v).detach())
            y = op.solve_shifted(c, rows.reshape(-1, n)).reshape(rows.shape)
            out.append(2 * y - rows)
        return torch.cat(out).reshape(x.shape).to(x.dtype)


def krylov_expm(
    apply_h, x: torch.Tensor, tau: float, *, tol: float = 1e-12, max_dim: int = 40, _depth: int = 0
) -> torch.Tensor:
    """``exp(−iτH) x`` for Hermitian ``H`` by Lanczos with full reorthogonalisation.

    Parameters
    ----------
    apply_h : callable, ``H y`` for ``y`` of the shape of ``x``
    x : Tensor (..., n) complex; every leading index is an independent vector
    tau : float
    tol : error estimate per vector relative to ``‖x‖``
    max_dim : largest Krylov dimension; beyond it the step is split in two (recursively)
    """
    beta0 = x.norm(dim=-1, keepdim=True)  # (..., 1)
    m = min(max_dim, x.shape[-1])
    V = [x / beta0.clamp_min(1e-300)]  # Lanczos vectors (a list: autograd-safe, no in-place)
    alphas, betas = [], []
    small = 1e-13 * beta0[..., 0]
    for j in range(m):
        v = V[j]
        w = apply_h(v)
        alphas.append((v.conj() * w).sum(-1).real)
        w = w - alphas[-1].unsqueeze(-1) * v
        if j:
            w = w - betas[-1].unsqueeze(-1) * V[j - 1]
        basis = torch.stack(V, dim=-2)  # (..., j+1, n)
        coeff = torch.einsum("...jn,...n->...j", basis.conj(), w)  # full reorthogonalisation
        w = w - torch.einsum("...j,...jn->...n", coeff, basis)
        beta = w.norm(dim=-1)
        breakdown = bool((beta <= small).all())
        if j >= 1 and (j % 4 == 3 or j == m - 1 or breakdown):
            c = _small_expm(alphas, betas, tau)  # (..., j+1)
            if breakdown or float((beta * c[..., -1].abs()).detach().max()) <= tol:
                return beta0 * torch.einsum("...j,...jn->...n", c, basis)
        betas.append(beta)
        V.append(w / beta.clamp_min(1e-300).unsqueeze(-1))
    if _depth >= 8:
        raise ConvergenceError(
            f"Krylov exponential did not converge with {max_dim} vectors even after "
            f"{2**_depth} substeps; reduce `dt` or raise `krylov_dim`",
            residual=float("nan"),
            iterations=max_dim,
        )
    half = krylov_expm(apply_h, x, tau / 2, tol=tol / 2, max_dim=max_dim, _depth=_depth + 1)
    return krylov_expm(apply_h, half, tau / 2, tol=tol / 2, max_dim=max_dim, _depth=_depth + 1)


def _small_expm(alphas, betas, tau):
    """``exp(−iτ T_k) e₁`` for the Lanczos tridiagonal ``T_k`` (batched), shape (..., k)."""
    a = torch.stack(alphas, dim=-1)  # (..., k)
    k = a.shape[-1]
    T = torch.diag_embed(a)
    if k > 1:
        b = torch.stack(betas[: k - 1], dim=-1)
        T = T + torch.diag_embed(b, 1) + torch.diag_embed(b, -1)
    w, Q = torch.linalg.eigh(T)
    return (Q * expi(-1j * tau, w).unsqueeze(-2) * Q[..., :1, :]).sum(-1)
