"""Learned models: each is a Stepper that fits the exact harmonic-oscillator flow, and the
structure each one claims (residual forms, implicit solve, ODE solve, coarse step) holds."""

import math

import numpy as np
import pytest
import scipy.integrate
import torch
import torchdiffeq

import physres
from physres.models import (
    MLP,
    HybridStepper,
    ImplicitResNet,
    NeuralODE,
    PeriodicConv1d,
    ResNetEmulator,
)

DT = 0.5


def exact_flow(x, dt):
    """Harmonic oscillator (ω = 1): rotation of (q, p) by angle dt."""
    c, s = math.cos(dt), math.sin(dt)
    return torch.stack([c * x[:, 0] + s * x[:, 1], -s * x[:, 0] + c * x[:, 1]], dim=1)


def ho_pairs(n, seed):
    g = torch.Generator().manual_seed(seed)
    amp = 0.2 + 1.3 * torch.rand(n, generator=g)
    phase = 2 * math.pi * torch.rand(n, generator=g)
    x = torch.stack([amp * torch.cos(phase), -amp * torch.sin(phase)], dim=1)
    return x, exact_flow(x, DT)


def train(model, steps=300, lr=1e-2):
    x, y = ho_pairs(256, seed=1)
    model.set_normalization(torch.zeros(2), torch.full((2,), 0.6))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = physres.training.unrolled_loss(model, x[:, None], y[:, None], DT, 1)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


MODELS = {
    "resnet": lambda: ResNetEmulator(state_shape=(2,), width=32, dt=DT),
    "resnet-euler-tied": lambda: ResNetEmulator(
        state_shape=(2,), width=32, depth=4, tie_weights=True, form="euler", dt=DT
    ),
    "node": lambda: NeuralODE(state_shape=(2,), width=32, method="rk4", step_size=DT / 2),
    "implicit": lambda: ImplicitResNet(state_shape=(2,), width=32),
    "hybrid": lambda: HybridStepper(
        state_shape=(2,), system="harmonic_oscillator", coarse="euler", width=32, dt=DT
    ),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_each_model_fits_the_exact_flow(kind):
    model = MODELS[kind]()
    assert isinstance(model, physres.steppers.Stepper)
    losses = train(model)
    assert losses[-1] < losses[0] / 100, (losses[0], losses[-1])
    # held-out initial states, 10 steps, against the exact rotation
    x0, _ = ho_pairs(16, seed=7)
    with torch.no_grad():
        traj = physres.rollout(model, x0, DT, 10)
        exact = torch.stack([exact_flow(x0, DT * n) for n in range(11)], dim=1)
    rel = (traj - exact).norm() / exact.norm()
    assert rel < 0.05


def test_models_keep_the_callers_dtype_with_float32_networks():
    model = ResNetEmulator(state_shape=(2,), width=8, dtype=torch.float32)
    x = torch.randn(3, 2, dtype=torch.float64)
    assert model(x, 0.0, DT).dtype == torch.float64
    assert next(model.parameters()).dtype == torch.float32


def test_residual_and_scaled_forms():
    torch.manual_seed(1)
    model = ResNetEmulator(state_shape=(2,), width=8, alpha=0.7, beta=0.2, dtype=torch.float64)
    model.set_normalization(torch.tensor([0.1, -0.2]), torch.tensor([2.0, 0.5]))
    x = torch.randn(5, 2)
    z = (x - torch.tensor([0.1, -0.2])) / torch.tensor([2.0, 0.5])
    g = model.blocks[0](0.0, z)
    expected = ((1 - 0.2) * z + 0.7 * g) * torch.tensor([2.0, 0.5]) + torch.tensor([0.1, -0.2])
    torch.testing.assert_close(model(x, 0.0, 1.0), expected, rtol=1e-14, atol=1e-14)


def test_tied_euler_form_is_euler_substeps_of_its_field():
    model = ResNetEmulator(
        state_shape=(2,),
        width=8,
        depth=3,
        tie_weights=True,
        form="euler",
        dtype=torch.float64,
        net_options={"init_scale": 1.0},
    )
    model.set_normalization(torch.tensor([0.3, 0.0]), torch.tensor([1.5, 0.7]))
    assert len(model.blocks) == 1
    x = torch.randn(4, 2)
    euler = physres.steppers.get("euler", model.rhs)
    expected = physres.rollout(euler, x, 0.1, 3)[:, -1]
    torch.testing.assert_close(model(x, 0.0, 0.3), expected, rtol=1e-12, atol=1e-12)


def test_untied_blocks_have_their_own_weights():
    model = ResNetEmulator(state_shape=(2,), width=8, depth=3)
    assert len(model.blocks) == 3
    w = [b.net[0].weight for b in model.blocks]
    assert not torch.equal(w[0], w[1])


def test_stochastic_depth_is_unbiased_and_off_in_eval():
    model = ResNetEmulator(
        state_shape=(2,),
        width=8,
        stochastic_depth=0.5,
        dtype=torch.float64,
        net_options={"init_scale": 1.0},
    )
    x = torch.randn(1, 2).expand(40_000, 2)
    model.eval()
    ref = model(x[:1], 0.0, 1.0)
    assert torch.equal(model(x[:1], 0.0, 1.0), ref)
    model.train()
    with torch.no_grad():
        out = model(x, 0.0, 1.0)
    kept = ~torch.isclose(out, x).all(1)
    # about half the samples skip the block (identity); the mean equals the eval output
    assert 0.45 < kept.double().mean() < 0.55
    g = (ref - x[:1]).norm()
    assert (out.mean(0) - ref[0]).norm() < 0.05 * g


def test_residual_maps_step_only_at_their_training_dt():
    model = ResNetEmulator(state_shape=(2,), dt=0.5)
    with pytest.raises(ValueError, match="`dt` = 0.25 differs from the step 0.5"):
        model(torch.zeros(1, 2), 0.0, 0.25)
    node = NeuralODE(state_shape=(2,), dt=0.5, method="rk4")
    node(torch.zeros(1, 2), 0.0, 0.25)  # a field model steps at any dt


def test_implicit_resnet_solves_its_stage_equation_and_reports_stats():
    model = ImplicitResNet(state_shape=(2,), width=16, dtype=torch.float64)
    model.set_normalization(torch.zeros(2), torch.full((2,), 0.5))
    x = torch.randn(6, 2)
    x1 = model(x, 0.0, 0.3)
    residual = x1 - x - 0.3 * model.rhs(0.3, x1)
    assert residual.abs().max() < 1e-11
    stats = model.solver_stats()
    assert stats["steps"] == 1 and stats["njev"] >= 1 and stats["nfev"] >= stats["njev"]
    assert not model.explicit


def test_implicit_resnet_gradients_match_finite_differences():
    model = ImplicitResNet(
        state_shape=(2,), width=6, dtype=torch.float64, net_options={"init_scale": 1.0}
    )
    model.set_normalization(torch.zeros(2), torch.full((2,), 0.8))
    name, weight = "net.net.0.weight", model.net.net[0].weight

    def step(x, w):
        return torch.func.functional_call(model, {name: w}, (x, 0.0, 0.4))

    x = torch.randn(3, 2, requires_grad=True)
    w = weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(step, (x, w), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_neural_ode_adjoint_and_direct_gradients_match():
    kwargs = dict(
        state_shape=(2,), width=8, method="dopri5", rtol=1e-10, atol=1e-12, dtype=torch.float64
    )
    torch.manual_seed(3)
    direct = NeuralODE(**kwargs)
    adjoint = NeuralODE(**kwargs, adjoint=True)
    adjoint.load_state_dict(direct.state_dict())
    x = torch.randn(4, 2)
    grads = []
    for model in (direct, adjoint):
        model.zero_grad()
        model(x, 0.0, 1.5).pow(2).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-9)
    assert grads[0].abs().max() > 0


@pytest.mark.parametrize(
    "method,step_size", [("rk38", None), ("rk38", 0.2), ("midpoint", 0.15), ("euler", 0.3)]
)
def test_neural_ode_fixed_grid_steps_are_torchdiffeqs_and_vmap(method, step_size):
    torch.manual_seed(4)
    model = NeuralODE(
        state_shape=(2,), width=8, method=method, step_size=step_size, dtype=torch.float64
    )
    x = torch.randn(5, 2, dtype=torch.float64)
    td = {"rk38": "rk4"}.get(method, method)  # torchdiffeq's fixed-grid "rk4" is the 3/8 rule
    options = None if step_size is None else {"step_size": step_size}
    with torch.no_grad():
        ref = torchdiffeq.odeint(
            model.rhs, x, torch.tensor([0.3, 0.8], dtype=torch.float64), method=td, options=options
        )[-1]
    torch.testing.assert_close(model(x, 0.3, 0.5), ref, rtol=0, atol=1e-15)
    torch.testing.assert_close(model._functional_step(x, 0.3, 0.5), ref, rtol=0, atol=1e-15)
    per_sample = torch.func.vmap(lambda xi: model._functional_step(xi[None], 0.3, 0.5)[0])
    torch.testing.assert_close(per_sample(x), ref, rtol=0, atol=1e-15)


def _classical_rk4(f, x, t, h):
    k1 = f(t, x)
    k2 = f(t + h / 2, x + h / 2 * k1)
    k3 = f(t + h / 2, x + h / 2 * k2)
    k4 = f(t + h, x + h * k3)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def _three_eighths(f, x, t, h):
    k1 = f(t, x)
    k2 = f(t + h / 3, x + h / 3 * k1)
    k3 = f(t + 2 * h / 3, x + h * (k2 - k1 / 3))
    k4 = f(t + h, x + h * (k1 - k2 + k3))
    return x + h / 8 * (k1 + 3 * k2 + 3 * k3 + k4)


@pytest.mark.parametrize("step_size", [None, 0.25])
def test_neural_ode_rk4_is_classical_rk4_and_rk38_the_three_eighths_rule(step_size):
    torch.manual_seed(5)
    kw = dict(
        state_shape=(2,),
        width=16,
        step_size=step_size,
        dtype=torch.float64,
        net_options={"init_scale": 3.0},
    )
    rk4 = NeuralODE(method="rk4", **kw)
    rk38 = NeuralODE(method="rk38", **kw)
    rk38.load_state_dict(rk4.state_dict())
    for m in (rk4, rk38):
        m.set_normalization(torch.tensor([0.2, -0.1]), torch.tensor([1.5, 0.5]))
    x = torch.randn(6, 2, dtype=torch.float64)
    f = rk4.rhs  # the known field, in physical units
    n = 1 if step_size is None else 4  # substeps of step_size in dt = 1
    h = 1.0 / n
    classical, three_eighths, stepper = x, x, physres.steppers.get("rk4", f)
    with torch.no_grad():
        for i in range(n):
            t = 0.3 + i * h
            classical = _classical_rk4(f, classical, t, h)
            three_eighths = _three_eighths(f, three_eighths, t, h)
        by_stepper = x
        for i in range(n):
            by_stepper = stepper(by_stepper, 0.3 + i * h, h)
        out4, out38 = rk4(x, 0.3, 1.0), rk38(x, 0.3, 1.0)
    torch.testing.assert_close(out4, by_stepper, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(out4, classical, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(out38, three_eighths, rtol=1e-13, atol=1e-14)
    assert (out4 - out38).abs().max() > 1e-8  # two different order-4 methods
    fresh = NeuralODE(method="rk4", **kw)  # vmappable from its first call (LM polish)
    fresh.load_state_dict(rk4.state_dict())
    per_sample = torch.func.vmap(lambda xi: fresh._functional_step(xi[None], 0.3, 1.0)[0])
    torch.testing.assert_close(per_sample(x), out4, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="no classical fixed-grid RK4; use method='rk38'"):
        NeuralODE(state_shape=(2,), method="rk4", adjoint=True)


def test_neural_ode_files_from_before_rk38_load_their_rk4_as_rk38(tmp_path):
    torch.manual_seed(6)
    model = NeuralODE(state_shape=(2,), width=8, method="rk38", step_size=0.25, dtype=torch.float64)
    path = physres.save(model, tmp_path / "new.pt")
    old = torch.load(path, weights_only=True)
    assert old["config_version"] == 2
    old["config"] = old["config"].replace('"method": "rk38"', '"method": "rk4"')
    del old["config_version"]  # how files were written before "rk38" existed
    torch.save(old, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="loaded as 'rk38'"):
        legacy = physres.load(tmp_path / "old.pt")
    assert legacy.method == "rk38" and legacy.config["method"] == "rk38"
    x = torch.randn(4, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(legacy(x, 0.0, 0.5), model(x, 0.0, 0.5), rtol=0, atol=0)
    fresh = NeuralODE(state_shape=(2,), width=8, method="rk4", dtype=torch.float64)
    assert physres.load(physres.save(fresh, tmp_path / "rk4.pt")).method == "rk4"  # no warning
    old["config_version"] = 0
    torch.save(old, tmp_path / "bad.pt")
    with pytest.raises(physres.FormatError, match="`config_version` must be an int ≥ 1, got 0"):
        physres.load(tmp_path / "bad.pt")


def test_learned_field_runs_under_scipy_and_odeint_like_the_rollout(tmp_path):
    model = NeuralODE(
        state_shape=(2,),
        width=8,
        rtol=1e-11,
        atol=1e-13,
        dtype=torch.float64,
        net_options={"init_scale": 1.0},
    )
    model.set_normalization(torch.tensor([0.1, 0.0]), torch.tensor([1.0, 2.0]))
    physres.save(model, tmp_path / "node.pt")
    loaded = physres.load(tmp_path / "node.pt")
    x0 = torch.tensor([[0.8, -0.3]])
    t = np.linspace(0.0, 3.0, 13)
    with torch.no_grad():
        traj = physres.rollout(loaded, x0, t[1] - t[0], len(t) - 1)[0].numpy()
        ode = torchdiffeq.odeint(loaded.rhs, x0, torch.from_numpy(t), rtol=1e-11, atol=1e-13)[
            :, 0
        ].numpy()
        ode_adj = torchdiffeq.odeint_adjoint(
            loaded.vector_field(), x0, torch.from_numpy(t), rtol=1e-11, atol=1e-13
        )[:, 0].numpy()
    sol = scipy.integrate.solve_ivp(
        loaded.numpy_rhs,
        (0.0, 3.0),
        x0[0].numpy(),
        t_eval=t,
        method="DOP853",
        rtol=1e-12,
        atol=1e-13,
    )
    assert sol.success
    np.testing.assert_allclose(sol.y.T, traj, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ode, traj, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ode_adj, traj, rtol=0, atol=1e-8)
    # scipy's vectorised call passes (n, k)
    y = np.array([[0.8, 0.1], [-0.3, 0.2]])
    np.testing.assert_allclose(loaded.numpy_rhs(0.0, y)[:, 1], loaded.numpy_rhs(0.0, y[:, 1]))


def test_step_maps_have_no_vector_field():
    with pytest.raises(TypeError, match="learns a step map"):
        ResNetEmulator(state_shape=(2,)).rhs(0.0, torch.zeros(1, 2))


def test_hybrid_starts_as_its_coarse_stepper_and_keeps_its_structure():
    model = HybridStepper(
        state_shape=(2,),
        system="harmonic_oscillator",
        coarse="rk4",
        coarse_substeps=2,
        width=8,
        dtype=torch.float64,
        correction_scale=0.0,
    )
    system = physres.systems.get("harmonic_oscillator")
    rk4 = physres.steppers.get("rk4", system.rhs)
    x = torch.randn(3, 2)
    torch.testing.assert_close(model(x, 0.0, 0.4), rk4(rk4(x, 0.0, 0.2), 0.2, 0.2))
    with pytest.raises(ValueError, match="does not match the system"):
        HybridStepper(state_shape=(3,), system="harmonic_oscillator")


def test_periodic_conv_is_translation_equivariant_and_handles_complex_states():
    field = PeriodicConv1d(
        state_shape=(16,),
        complex_state=True,
        width=6,
        layers=2,
        dtype=torch.float64,
        init_scale=1.0,
    )
    z = torch.randn(3, 16, dtype=torch.complex128)
    out = field(0.0, z)
    assert out.dtype == torch.complex128 and out.shape == z.shape
    torch.testing.assert_close(field(0.0, torch.roll(z, 5, dims=1)), torch.roll(out, 5, dims=1))
    # (Re, Im) channels: the real and imaginary parts are not treated alike by a generic net
    assert not torch.allclose(field(0.0, 1j * z), 1j * out)


def test_complex_state_emulator_steps_wavefunctions():
    model = ResNetEmulator(
        state_shape=(16,),
        complex_state=True,
        net="conv1d",
        width=6,
        layers=2,
        net_options={"kernel_size": 3},
        dt=0.1,
    )
    psi = torch.randn(2, 16, dtype=torch.complex128)
    out = model(psi, 0.0, 0.1)
    assert out.dtype == torch.complex128 and out.shape == psi.shape
    with pytest.raises(TypeError, match="must be a complex tensor"):
        model(psi.real, 0.0, 0.1)


def test_mlp_time_dependence_and_complex_states():
    field = MLP(
        state_shape=(3,),
        complex_state=True,
        width=8,
        time_dependent=True,
        dtype=torch.float64,
        init_scale=1.0,
    )
    z = torch.randn(2, 3, dtype=torch.complex128)
    assert field(0.0, z).dtype == torch.complex128
    assert not torch.allclose(field(0.0, z), field(1.0, z))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(state_shape=()), "`state_shape` must be a non-empty tuple"),
        (dict(state_shape=(2,), net="nope"), "unknown model 'nope'; valid names"),
        (dict(state_shape=(2,), net="resnet"), "`net` must name a learned field"),
        (dict(state_shape=(2,), activation="sigmoidal"), "`activation` must be one of"),
        (dict(state_shape=(2,), stochastic_depth=1.0), r"`stochastic_depth` must be in \[0, 1\)"),
        (dict(state_shape=(2,), form="rk4"), "`form` must be 'residual' or 'euler'"),
        (dict(state_shape=(2,), depth=0), "`depth` must be >= 1"),
        (dict(state_shape=(2,), dtype=torch.float16), "`dtype` must be torch.float32"),
        (dict(state_shape=(2,), dt=-1.0), "`dt` must be finite and > 0"),
    ],
)
def test_bad_model_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ResNetEmulator(**kwargs)


def test_bad_neural_ode_arguments():
    with pytest.raises(ValueError, match="`method` must be one of .*rk38.*got 'rk45'"):
        NeuralODE(state_shape=(2,), method="rk45")
    with pytest.raises(ValueError, match="`step_size` applies to fixed-grid methods"):
        NeuralODE(state_shape=(2,), method="dopri5", step_size=0.1)


def test_bad_state_in_a_call():
    model = ResNetEmulator(state_shape=(2,))
    with pytest.raises(ValueError, match=r"`x` must have shape \(batch, 2\)"):
        model(torch.zeros(4, 3), 0.0, 0.1)
    with pytest.raises(ValueError, match="normalisation `std` must be > 0"):
        model.set_normalization(torch.zeros(2), torch.zeros(2))


def test_registry_lists_models_and_fields():
    steppers = physres.models.names(physres.models.LearnedStepper)
    assert {"resnet", "node", "implicit", "hybrid"} <= set(steppers)
    assert {"mlp", "conv1d"} <= set(physres.models.names(physres.models.LearnedField))
    model = physres.models.get("node", state_shape=(2,), width=4)
    assert isinstance(model, NeuralODE) and model.config["width"] == 4


def test_symplectic_emulator_fits_the_exact_flow_and_keeps_its_area():
    torch.manual_seed(0)
    model = physres.models.SymplecticEmulator(state_shape=(2,), width=16, dt=DT)
    losses = train(model)
    assert losses[-1] < losses[0] / 100, (losses[0], losses[-1])
    x0, _ = ho_pairs(16, seed=7)
    with torch.no_grad():
        traj = physres.rollout(model, x0, DT, 10)
        exact = torch.stack([exact_flow(x0, DT * n) for n in range(11)], dim=1)
    assert (traj - exact).norm() / exact.norm() < 0.05
    jac = torch.autograd.functional.jacobian(lambda y: model(y[None], 0.0, DT)[0], x0[0])
    assert float(torch.linalg.det(jac)) == pytest.approx(1.0, abs=1e-12)  # area, 1 dof


def test_projected_resnet_keeps_a_linear_invariant_of_the_oscillator_data():
    # any linear invariant may be imposed: every step keeps q + p, whatever the network
    model = physres.models.ProjectedEmulator(
        state_shape=(2,), invariants=[1.0, 1.0], model_options={"width": 8}, dt=DT
    )
    model.set_normalization(torch.zeros(2), torch.full((2,), 0.6))
    x = torch.randn(4, 2, dtype=torch.float64)
    out = model(x, 0.0, DT)
    torch.testing.assert_close(out.sum(1), x.sum(1), rtol=0, atol=1e-14)
