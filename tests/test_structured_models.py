"""Structure-preserving emulators: the symplectic emulator is exactly symplectic in physical
coordinates (with any normalisation) and keeps the oscillator's energy bounded; the projected
emulator keeps linear invariants to round-off; both train, differentiate and round-trip."""

import math

import numpy as np
import pytest
import torch

import physres
from physres.models import ProjectedEmulator, ResNetEmulator, SymplecticEmulator


def omega(n):
    """The canonical form Ω = [[0, I], [−I, 0]] for (q, p) halves of size n."""
    eye, zero = torch.eye(n, dtype=torch.float64), torch.zeros(n, n, dtype=torch.float64)
    return torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)


def random_symplectic(state_shape, linear=True, seed=0):
    torch.manual_seed(seed)
    model = SymplecticEmulator(
        state_shape=state_shape, width=8, depth=3, linear=linear, init_scale=1.0, dt=0.1
    )
    with torch.no_grad():  # generic weights of order one: far from the identity map
        for name, p in model.named_parameters():
            p.copy_(0.6 * torch.randn_like(p) / (math.sqrt(model.n) if name == "A" else 1))
    size = math.prod(state_shape)
    g = torch.Generator().manual_seed(seed + 1)
    # a different scale for every component: q and p of one pair, and pairs among themselves
    model.set_normalization(
        torch.randn(size, generator=g).reshape(state_shape),
        torch.exp(0.7 * torch.randn(size, generator=g)).reshape(state_shape),
    )
    return model.eval()


def flat_jacobian(model, x):
    shape = x.shape

    def step(y):
        return model.step(y.reshape(1, *shape), 0.0, 0.1).reshape(-1)

    return torch.autograd.functional.jacobian(step, x.reshape(-1))


@pytest.mark.parametrize(
    "state_shape,linear", [((2,), True), ((4,), True), ((6,), False), ((2, 2, 3), True)]
)
def test_symplectic_emulator_is_symplectic_in_physical_coordinates(state_shape, linear):
    model = random_symplectic(state_shape, linear)
    n = math.prod(state_shape) // 2
    om = omega(n)
    g = torch.Generator().manual_seed(5)
    for _ in range(4):
        x = 2 * torch.randn(state_shape, generator=g, dtype=torch.float64)
        jac = flat_jacobian(model, x)
        assert (jac - torch.eye(2 * n, dtype=torch.float64)).abs().max() > 0.1  # not trivial
        torch.testing.assert_close(jac.T @ om @ jac, om, rtol=0, atol=1e-12)


def test_the_check_catches_a_map_that_is_not_symplectic():
    torch.manual_seed(0)
    resnet = ResNetEmulator(
        state_shape=(4,), width=8, dtype=torch.float64, net_options={"init_scale": 1.0}
    )
    jac = flat_jacobian(resnet, torch.randn(4, dtype=torch.float64))
    assert (jac.T @ omega(2) @ jac - omega(2)).abs().max() > 1e-3


def test_symplectic_emulator_preserves_phase_space_area():
    """Green's theorem, no autograd: a closed curve of 20 000 points keeps its enclosed area
    (shoelace formula) under 3 steps of a strongly nonlinear symplectic map."""
    model = random_symplectic((2,), seed=3)
    theta = torch.linspace(0, 2 * math.pi, 20_001, dtype=torch.float64)[:-1]
    curve = torch.stack([0.5 + 0.8 * torch.cos(theta), -0.2 + 0.5 * torch.sin(theta)], 1)

    def area(c):
        x, y = c[:, 0], c[:, 1]
        return 0.5 * float((x * torch.roll(y, -1) - torch.roll(x, -1) * y).sum())

    with torch.no_grad():
        image = physres.rollout(model, curve, 0.1, 3)[:, -1]
    assert (image - curve).norm(dim=1).mean() > 0.3  # the curve moves and deforms ...
    assert (image - torch.roll(image, -1, 0)).norm(dim=1).max() < 2e-3  # ... stays resolved
    assert area(image) == pytest.approx(area(curve), rel=1e-4)
    assert area(curve) == pytest.approx(math.pi * 0.8 * 0.5, rel=1e-6)


def exact_rotation(x, dt):
    c, s = math.cos(dt), math.sin(dt)
    return torch.stack([c * x[:, 0] + s * x[:, 1], -s * x[:, 0] + c * x[:, 1]], dim=1)


def oscillator_pairs(n, seed, dt):
    g = torch.Generator().manual_seed(seed)
    amp = 0.2 + 1.3 * torch.rand(n, generator=g, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    x = torch.stack([amp * torch.cos(phase), -amp * torch.sin(phase)], dim=1)
    return x, exact_rotation(x, dt)


def train_on_rotation(model, dt, steps=600):
    x, y = oscillator_pairs(256, seed=1, dt=dt)
    model.set_normalization(torch.zeros(2), torch.tensor([0.6, 0.9]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = physres.training.unrolled_loss(model, x[:, None], y[:, None], dt, 1)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), losses


def test_trained_symplectic_emulator_keeps_the_oscillator_energy_bounded():
    dt = 0.5
    torch.manual_seed(0)
    model, losses = train_on_rotation(SymplecticEmulator(state_shape=(2,), width=8, dt=dt), dt)
    assert losses[-1] < losses[0] / 100
    x0, _ = oscillator_pairs(16, seed=7, dt=dt)
    with torch.no_grad():
        traj = physres.rollout(model, x0, dt, 4000)  # t = 2000, ~320 periods
    energy = 0.5 * traj.pow(2).sum(-1)  # (16, 4001)
    err = ((energy - energy[:, :1]) / energy[:, :1]).abs()
    first, last = err[:, 1:1001].max(), err[:, -1000:].max()
    assert 1e-6 < first < 0.1  # learned, not exact: a visible but small energy error ...
    assert last < 1.05 * first  # ... that does not grow over 4000 steps


def robertson_like_states(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    y1 = 0.5 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)
    y2 = 3e-5 * torch.rand(n, generator=g, dtype=torch.float64)
    return torch.stack([y1, y2, 1 - y1 - y2], 1)


def random_projected(invariants=(1.0, 1.0, 1.0), size=3, seed=0):
    torch.manual_seed(seed)
    model = ProjectedEmulator(
        state_shape=(size,),
        invariants=list(invariants),
        dt=1.0,
        model_options=dict(width=8, dtype=torch.float64, net_options={"init_scale": 0.3}),
    )
    model.set_normalization(
        torch.linspace(0.1, 0.5, size), torch.tensor([0.2, 1e-5, 0.2, 0.7][:size])
    )
    return model.eval()


def test_projection_keeps_the_mass_to_round_off_over_a_rollout():
    model = random_projected()
    x0 = robertson_like_states(8)
    with torch.no_grad():
        traj = physres.rollout(model, x0, 1.0, 300)
        inner = model.model.step(x0, 0.0, 1.0)
    assert (inner.sum(1) - x0.sum(1)).abs().min() > 1e-3  # the inner ResNet does not keep it
    assert (traj - x0[:, None]).abs().max() > 0.1  # the state moves
    drift = (traj.sum(-1) - x0.sum(-1, keepdim=True)).abs()
    assert drift.max() <= 1e-13


def test_projection_is_the_closest_point_in_the_normalised_metric():
    model = random_projected(invariants=[[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -2.0, 1.0]], size=4)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    x_tilde = torch.randn(5, 4, generator=g, dtype=torch.float64)
    c = model.invariant_matrix
    out = model.project(x, x_tilde)
    torch.testing.assert_close(out @ c.T, x @ c.T, rtol=0, atol=1e-13)
    # the correction is W Cᵀλ (W = diag σ²): in the span of the columns of W Cᵀ
    delta = (out - x_tilde).T  # (4, 5)
    basis = model.norm_std[:, None] ** 2 * c.T  # (4, 2)
    lam = torch.linalg.lstsq(basis, delta).solution
    assert (basis @ lam - delta).abs().max() < 1e-12 * delta.abs().max()
    # a point already on the set is left alone
    torch.testing.assert_close(model.project(x, out), out, rtol=0, atol=1e-14)
    # and σ-weighting leaves the 1e-5-scale component (nearly) untouched
    small = model.project(x, x_tilde)[:, 1] - x_tilde[:, 1]
    assert small.abs().max() < 1e-8 * (out - x_tilde).abs().max()


def test_gradients_flow_through_the_projection():
    model = random_projected()
    name = "model.blocks.0.net.0.weight"
    weight = dict(model.named_parameters())[name]

    def step(x, w):
        return torch.func.functional_call(model, {name: w}, (x, 0.0, 1.0))

    x = robertson_like_states(3).requires_grad_(True)
    w = weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(step, (x, w), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradients_flow_through_the_symplectic_emulator():
    model = random_symplectic((4,), seed=1)
    k = model.K.detach().clone().requires_grad_(True)

    def step(x, kk):
        return torch.func.functional_call(model, {"K": kk}, (x, 0.0, 0.1))

    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(step, (x, k), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_cached_rollout_weights_follow_parameter_updates():
    model = random_symplectic((2,), seed=4)
    x = torch.randn(3, 2, dtype=torch.float64)
    with torch.no_grad():
        before = model(x, 0.0, 0.1)
        model.K.mul_(0.5)  # in place: the cached folded weights must not be reused
        after = model(x, 0.0, 0.1)
    with torch.enable_grad():
        fresh = model(x, 0.0, 0.1)
    assert not torch.equal(before, after)
    assert torch.equal(after, fresh.detach())


@pytest.mark.parametrize("kind", ["symplectic", "projected", "projected-instance"])
def test_save_load_reproduces_outputs_bit_for_bit(kind, tmp_path):
    if kind == "symplectic":
        model, x = random_symplectic((4,), seed=6), torch.randn(5, 4, dtype=torch.float64)
    else:
        if kind == "projected":
            model = random_projected(seed=6)
        else:
            torch.manual_seed(6)
            inner = ResNetEmulator(state_shape=(3,), width=6, depth=2, dt=1.0)
            model = ProjectedEmulator(
                state_shape=(3,), invariants=[1.0, 1.0, 1.0], model=inner, dt=1.0
            )
            model.set_normalization(torch.tensor([0.7, 1e-5, 0.3]), torch.tensor([0.2, 1e-5, 0.2]))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        x = robertson_like_states(5)
    model.eval()
    loaded = physres.load(physres.save(model, tmp_path / f"{kind}.pt"))
    assert type(loaded) is type(model)
    with torch.no_grad():
        assert torch.equal(loaded(x, 0.0, model.dt), model(x, 0.0, model.dt))
        assert torch.equal(
            physres.rollout(loaded, x, model.dt, 30), physres.rollout(model, x, model.dt, 30)
        )
    assert torch.equal(loaded.norm_std, model.norm_std)


@pytest.fixture(scope="module")
def oscillator_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ho") / "ho.h5"
    return physres.data.generate("harmonic_oscillator", path, n_traj=10, t_end=10.0, progress=False)


@pytest.fixture(scope="module")
def robertson_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rob") / "rob.h5"
    return physres.data.generate("robertson", path, n_traj=10, t_end=10.0, progress=False)


def _short_fit(model, path, frame_step):
    config = physres.training.TrainConfig(
        epochs=4, batch_size=64, frame_step=frame_step, progress=False, device="cpu"
    )
    return physres.training.fit(model, path, config)


def test_fit_trains_the_symplectic_emulator(oscillator_file):
    torch.manual_seed(0)
    model = physres.training.model_for(oscillator_file, "symplectic", width=8)
    result = _short_fit(model, oscillator_file, frame_step=2)
    assert result.losses[-1] < 0.1 * result.losses[0]
    x = torch.randn(3, 2, dtype=torch.float64)
    jac = flat_jacobian(model, x[0])  # still symplectic after training with normalisation
    torch.testing.assert_close(jac.T @ omega(1) @ jac, omega(1), rtol=0, atol=1e-12)


def test_fit_trains_the_mass_projected_emulator(robertson_file):
    torch.manual_seed(0)
    model = physres.training.model_for(
        robertson_file, "projected", invariants=[1, 1, 1], model_options={"width": 16}
    )
    result = _short_fit(model, robertson_file, frame_step=5)
    assert result.losses[-1] < 0.1 * result.losses[0]
    with physres.data.open(robertson_file) as f:
        x0 = torch.from_numpy(np.asarray(f.states[:, 0]))
    with torch.no_grad():
        traj = physres.rollout(model, x0, model.dt, 40)
    assert (traj.sum(-1) - x0.sum(-1, keepdim=True)).abs().max() <= 1e-13


def test_the_models_are_registered():
    names = physres.models.names(physres.models.LearnedStepper)
    assert {"symplectic", "projected"} <= set(names)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: SymplecticEmulator(state_shape=(3,)), "even number"),
        (lambda: SymplecticEmulator(state_shape=(2,), complex_state=True), "`complex_state`"),
        (lambda: SymplecticEmulator(state_shape=(2,), width=0), "`width` must be >= 1"),
        (lambda: ProjectedEmulator(state_shape=(3,), invariants=[1, 1]), r"shape \(3,\) or"),
        (
            lambda: ProjectedEmulator(state_shape=(3,), invariants=[[1, 1, 1], [2, 2, 2]]),
            "linearly independent",
        ),
        (lambda: ProjectedEmulator(state_shape=(3,), invariants="mass"), "`invariants` must"),
        (
            lambda: ProjectedEmulator(state_shape=(3,), invariants=[1, 1, 1], model="mlp"),
            "must name a learned stepper",
        ),
        (
            lambda: ProjectedEmulator(
                state_shape=(3,), invariants=[1, 1, 1], model=ResNetEmulator(state_shape=(2,))
            ),
            "state_shape",
        ),
    ],
)
def test_bad_arguments(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


@pytest.mark.parametrize("kind", ["symplectic", "projected"])
def test_levenberg_marquardt_polish_runs_through_both_models(kind, oscillator_file, robertson_file):
    """The second-order finish builds per-sample Jacobians with torch.func.vmap: both steps
    must be vmappable, and the polish must lower the loss."""
    torch.manual_seed(0)
    if kind == "symplectic":
        path, frame_step = oscillator_file, 2
        model = SymplecticEmulator(state_shape=(2,), width=6)
    else:
        path, frame_step = robertson_file, 5
        model = ProjectedEmulator(
            state_shape=(3,), invariants=[1, 1, 1], model_options=dict(width=6, dtype=torch.float64)
        )
    config = physres.training.TrainConfig(
        epochs=1,
        batch_size=64,
        frame_step=frame_step,
        polish_steps=3,
        polish_method="lm",
        polish_windows=100,
        progress=False,
        device="cpu",
    )
    result = physres.training.fit(model, path, config)
    polish = result.losses[-3:]
    assert polish[2] < polish[1] < polish[0]  # every iteration accepted a step
