"""The unitary Cayley emulator: unitary by construction, learns a missing potential."""

import numpy as np
import pytest
import torch

import physres


def _trap(**kw):
    return physres.systems.get("schrodinger_1d", n=48, x_min=-8.0, x_max=8.0, **kw)


def test_untrained_emulator_is_the_crank_nicolson_step_of_the_known_h():
    qs = _trap()
    model = physres.models.UnitaryCayleyEmulator(state_shape=(48,), system=qs, dt=0.05)
    x = qs.sample_initial(3)
    cn = physres.steppers.get("crank_nicolson", qs.rhs)
    assert torch.allclose(model(x, 0.0, 0.05), cn(x, 0.0, 0.05), atol=1e-13)


@pytest.mark.parametrize(
    "kw", [{}, {"boundary": "periodic", "kinetic": "fd5"}, {"kinetic": "spectral"}]
)
def test_banded_step_matches_the_dense_cayley_step_and_its_gradients(kw):
    """Banded H₀ (fd3 Dirichlet, cyclic fd5) steps by an O(N) band solve; spectral H₀ densely.
    Both must be the Cayley step of ``hamiltonian()`` and carry exact gradients."""
    qs = _trap(**kw)
    model = physres.models.UnitaryCayleyEmulator(state_shape=(48,), system=qs, bandwidth=2, dt=0.05)
    assert model.banded == (kw.get("kinetic") != "spectral")
    with torch.no_grad():
        model.dv.normal_(0, 0.5)
        model.dw.normal_(0, 0.5)
    x = qs.sample_initial(3)
    H = model.hamiltonian().detach().to(torch.complex128)
    assert torch.allclose(H, H.T) and torch.allclose(
        H, (qs.linear_operator(0.0).dense() * 1j).to(H.dtype) + _correction(model), atol=1e-12
    )
    eye = torch.eye(48, dtype=H.dtype)
    dense = torch.linalg.solve(eye + 0.025j * H, (eye - 0.025j * H) @ x.T).T
    assert torch.allclose(model(x, 0.0, 0.05), dense, atol=1e-12)
    small = physres.models.UnitaryCayleyEmulator(
        state_shape=(12,),
        system=physres.systems.get("schrodinger_1d", n=12, x_min=-3.0, x_max=3.0, **kw),
        bandwidth=2,
        dt=0.1,
    )
    y = physres.systems.get("schrodinger_1d", n=12, x_min=-3.0, x_max=3.0).sample_initial(2)
    assert torch.autograd.gradcheck(
        lambda dv, dw: torch.func.functional_call(small, {"dv": dv, "dw": dw}, (y, 0.0, 0.1)),
        (small.dv.detach().clone().requires_grad_(), small.dw.detach().clone().requires_grad_()),
    )


def _correction(model):
    n = model.dv.shape[0]
    C = torch.diag(model.dv.detach())
    for k in range(1, model.bandwidth + 1):
        band = torch.diag(model.dw.detach()[k - 1, : n - k], k)
        C = C + band + band.T
    return C.to(torch.complex128)


def test_emulator_is_unitary_for_any_parameters():
    model = physres.models.UnitaryCayleyEmulator(state_shape=(48,), bandwidth=2, dt=0.1)
    with torch.no_grad():
        model.dv.normal_(0, 3.0)
        model.dw.normal_(0, 3.0)
    x = _trap().sample_initial(2)
    x = x / x.norm(dim=1, keepdim=True)
    with torch.no_grad():
        traj = physres.rollout(model, x, 0.1, 1000, save_every=250)
    assert float((traj.norm(dim=-1) - 1).abs().max()) < 1e-12


def test_emulator_learns_a_missing_potential_and_stays_unitary(tmp_path):
    """Data from V = ½x² + 0.5·exp(−x²); the emulator knows only ½x² and learns the rest,
    trained by the package's fit loop on an HDF5 file of reference trajectories."""
    true = _trap(potential=lambda x: 0.5 * x**2 + 0.5 * np.exp(-(x**2)))
    known = _trap()
    dt = 0.05
    exact = physres.steppers.get("exponential", true.rhs)
    data = physres.data.generate(
        true, tmp_path / "trap.h5", n_traj=32, t_end=8 * dt, dt_save=dt, seed=0, progress=False
    )
    # the loss is scored independently of fit, on trajectories of the same 32 packets
    x_train = true.sample_initial(32, seed=0)
    with torch.no_grad():
        traj = physres.rollout(exact, x_train, dt, 8)  # (32, 9, 48)
    inputs, targets = traj[:, :-1].reshape(-1, 48), traj[:, 1:].reshape(-1, 48)
    model = physres.models.UnitaryCayleyEmulator(state_shape=(48,), system=known, dt=dt)

    def loss_fn():
        return (model(inputs, 0.0, dt) - targets).abs().pow(2).mean()

    first = float(loss_fn().detach())
    config = physres.training.TrainConfig(
        epochs=800,
        batch_size=256,
        lr=0.02,
        weight_decay=0.0,
        schedule="constant",
        grad_clip=None,
        fractions=(1.0, 0.0, 0.0),
        normalize=False,
        progress=False,
    )
    result = physres.training.fit(model, data, config)
    assert result.steps == 800
    final = float(loss_fn().detach())
    assert final < first / 100, (first, final)
    x_test = true.sample_initial(4, seed=99)  # held-out packets
    with torch.no_grad():
        ref = physres.rollout(exact, x_test, dt, 200)[:, -1]
        out = physres.rollout(model, x_test, dt, 200)[:, -1]
        uncorrected = physres.rollout(
            model.__class__(state_shape=(48,), system=known, dt=dt), x_test, dt, 200
        )[:, -1]
        cayley_true = physres.rollout(
            physres.steppers.get("crank_nicolson", true.rhs), x_test, dt, 200
        )[:, -1]

    def fidelity(psi):
        return ((ref.conj() * psi).sum(-1) * known.dx).abs() ** 2

    # the Cayley step's own phase error on the true H bounds what a Cayley emulator can reach
    assert bool((fidelity(out) > fidelity(cayley_true) - 0.01).all())
    assert bool((fidelity(out) > fidelity(uncorrected)).all())
    assert float(fidelity(out)[:3].min()) > 0.99  # the three packets of moderate energy
    assert float((known.norm(out) - known.norm(x_test)).abs().max()) < 1e-10


def test_model_for_builds_the_emulator_from_a_wavefunction_file(tmp_path):
    qs = _trap()
    data = physres.data.generate(
        qs, tmp_path / "trap.h5", n_traj=2, t_end=0.2, dt_save=0.05, progress=False
    )
    model = physres.training.model_for(data, "unitary_cayley", system=qs)
    assert isinstance(model, physres.models.UnitaryCayleyEmulator)
    assert model.state_shape == (48,) and model.complex_state
    with pytest.raises(ValueError, match="`complex_state` must be True"):
        physres.models.UnitaryCayleyEmulator(state_shape=(48,), complex_state=False)
