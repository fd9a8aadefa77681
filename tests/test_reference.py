"""scipy references: exact solutions, agreement across methods, parallel runs, failures."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import physres
from physres.reference import ReferenceSolveError, solve
from physres.steppers import DenseOperator
from physres.systems import System


class Rotor(System):
    """``ψ' = -iωψ`` on complex states (2,), exact ``ψ0 e^{-iωt}``; declares its operator."""

    dtype = torch.complex128
    state_shape = (2,)
    reference_method = "DOP853"

    def __init__(self, omega=1.3):
        self.omega = omega
        super().__init__(omega=omega)

    def rhs(self, t, x):
        return -1j * self.omega * x

    def linear_operator(self, t):
        return DenseOperator(-1j * self.omega * torch.eye(2, dtype=torch.complex128))

    def sample_initial(self, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, 2, generator=g, dtype=torch.complex128)


class BlowUp(System):
    """``y' = y²``: from ``y0 = 1`` it blows up at ``t = 1``, so scipy must fail there."""

    state_shape = (1,)

    def rhs(self, t, x):
        return x**2

    def sample_initial(self, n, seed=0):
        return torch.full((n, 1), 0.1)


def test_harmonic_oscillator_against_exact():
    ho = physres.systems.get("harmonic_oscillator", omega=1.4)
    x0 = ho.sample_initial(3)
    t = np.linspace(0.0, 5.0, 51)
    exact = ho.solution(x0, t).numpy()
    for method, rtol, atol, tol in [
        ("DOP853", 1e-12, 1e-13, 1e-9),
        ("RK45", 1e-10, 1e-12, 1e-7),
        ("Radau", 1e-11, 1e-13, 1e-8),
        ("BDF", 1e-10, 1e-12, 1e-6),
        ("LSODA", 1e-10, 1e-12, 1e-6),
        ("expm", None, None, 1e-13),
    ]:
        y = solve(ho, x0, t, method=method, rtol=rtol, atol=atol)
        assert y.shape == (3, 51, 2) and y.dtype == np.float64
        assert np.abs(y - exact).max() < tol, method


@pytest.mark.parametrize(
    "name, params, t_end, atol",
    [
        ("robertson", {}, 40.0, 1e-14),
        ("hires", {}, 320.0, 1e-13),
        ("van_der_pol", {"mu": 1000.0}, 300.0, 1e-11),  # two relaxation jumps
    ],
)
def test_stiff_radau_agrees_with_bdf(name, params, t_end, atol):
    system = physres.systems.get(name, **params)
    x0 = system.sample_initial(1, seed=5)
    t = np.linspace(0.0, t_end, 21)
    radau = solve(system, x0, t, method="Radau", rtol=1e-9, atol=atol)
    bdf = solve(system, x0, t, method="BDF", rtol=1e-9, atol=atol)
    scale = np.abs(radau).max(axis=(0, 1))
    assert (np.abs(radau - bdf).max(axis=(0, 1)) / scale).max() < 1e-6


def test_stats_and_jacobian_use():
    rob = physres.systems.get("robertson")
    x0 = rob.sample_initial(2)
    y, stats = solve(rob, x0, np.linspace(0, 1, 5), return_stats=True)
    assert set(stats) == {"nfev", "njev", "wall_s"}
    assert (stats["nfev"] > 0).all() and (stats["wall_s"] > 0).all()
    assert (stats["njev"] > 0).all()  # the analytic Jacobian was handed to Radau
    np.testing.assert_array_equal(y[:, 0], x0.numpy())


def test_complex_states_explicit_implicit_expm():
    rotor = Rotor()
    x0 = rotor.sample_initial(2)
    t = np.linspace(0.0, 2.0, 11)
    exact = x0.numpy()[:, None, :] * np.exp(-1j * 1.3 * t)[None, :, None]
    for method in ("DOP853", "Radau", "BDF", "expm"):
        y = solve(rotor, x0, t, method=method, rtol=1e-11, atol=1e-12)
        assert y.dtype == np.complex128
        assert np.abs(y - exact).max() < 1e-7, method


def test_expm_nonuniform_times():
    ho = physres.systems.get("harmonic_oscillator")
    x0 = ho.sample_initial(2)
    t = np.array([0.0, 0.1, 0.5, 2.0, 7.3])
    np.testing.assert_allclose(
        solve(ho, x0, t, method="expm"), ho.solution(x0, t).numpy(), atol=1e-13
    )


def test_parallel_and_executor_identical_to_serial():
    lorenz = physres.systems.get("lorenz63")
    x0 = lorenz.sample_initial(4)
    t = np.linspace(0.0, 2.0, 51)
    serial = solve(lorenz, x0, t)
    two = solve(lorenz, x0, t, workers=2)
    with ThreadPoolExecutor(2) as pool:
        threads = solve(lorenz, x0, t, executor=pool)
    assert serial.tobytes() == two.tobytes() == threads.tobytes()


def test_dask_local_cluster():
    distributed = pytest.importorskip("distributed")
    lorenz = physres.systems.get("lorenz63")
    x0 = lorenz.sample_initial(3)
    t = np.linspace(0.0, 1.0, 11)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = solve(lorenz, x0, t, executor=client.get_executor())
    assert remote.tobytes() == solve(lorenz, x0, t).tobytes()


@pytest.mark.parametrize("workers", [1, 2])
def test_failure_names_trajectory_and_scipy_message(workers):
    x0 = np.array([[0.1], [1.0], [0.2]])  # trajectory 1 blows up at t = 1
    with pytest.raises(
        ReferenceSolveError,
        match=r"trajectory 1: RK45 failed after t = 0\.5 "
        r".*Required step size",
    ) as info:
        solve(BlowUp(), x0, np.linspace(0, 2, 5), method="RK45", workers=workers)
    assert info.value.index == 1


def test_bad_input():
    ho = physres.systems.get("harmonic_oscillator")
    x0, t = ho.sample_initial(2), np.linspace(0, 1, 5)
    with pytest.raises(ValueError, match="`method` must be one of"):
        solve(ho, x0, t, method="rk4")
    with pytest.raises(ValueError, match=r"`x0` must have shape \(batch, 2\)"):
        solve(ho, x0[:, :1], t)
    with pytest.raises(ValueError, match="`t_eval` must be a strictly increasing"):
        solve(ho, x0, t[::-1])
    with pytest.raises(ValueError, match="`rtol`"):
        solve(ho, x0, t, rtol=-1.0)
    with pytest.raises(ValueError, match="`workers`"):
        solve(ho, x0, t, workers=0)
    with pytest.raises(ValueError, match="either `workers`"):
        with ThreadPoolExecutor(1) as pool:
            solve(ho, x0, t, workers=2, executor=pool)
    with pytest.raises(TypeError, match="`system`"):
        solve(ho.rhs, x0, t)
    with pytest.raises(TypeError, match="`x0` is complex"):
        solve(ho, x0.to(torch.complex128), t)
    with pytest.raises(ValueError, match="'expm' needs a time-independent linear_operator"):
        solve(physres.systems.get("lorenz63"), torch.ones(1, 3), t, method="expm")


@pytest.mark.parametrize("workers", [1, 2])
def test_stacked_solve_against_per_trajectory(workers):
    lorenz = physres.systems.get("lorenz63")
    x0 = lorenz.sample_initial(6, seed=3)
    t = np.linspace(0.0, 2.0, 41)  # ~2 Lyapunov times: differences stay near the tolerance
    tight = solve(lorenz, x0, t, rtol=1e-13, atol=1e-13)
    stacked, stats = solve(
        lorenz, x0, t, rtol=1e-12, atol=1e-12, stack=True, workers=workers, return_stats=True
    )
    assert stacked.shape == tight.shape and stacked.dtype == np.float64
    np.testing.assert_array_equal(stacked[:, 0], x0.numpy())
    assert np.abs(stacked - tight).max() < 1e-8
    # each trajectory at least about as accurate as solved alone at the same tolerance
    for rtol in (1e-7, 1e-9):
        alone = solve(lorenz, x0, t, rtol=rtol, atol=rtol)
        together = solve(lorenz, x0, t, rtol=rtol, atol=rtol, stack=True, workers=workers)
        err_alone = np.abs(alone - tight).max(axis=(1, 2))
        err_together = np.abs(together - tight).max(axis=(1, 2))
        assert err_together.max() <= 2 * err_alone.max(), rtol
        assert err_together.max() < 1e3 * rtol
    groups = np.array_split(np.arange(6), workers)
    for g in groups:  # the group's shared steps: one nfev for all its trajectories
        assert (stats["nfev"][g] == stats["nfev"][g[0]]).all() and stats["nfev"][g[0]] > 0


def test_stacked_solve_complex_and_generic_rhs():
    rotor = Rotor()  # complex states, the base class's torch numpy_rhs_batch
    x0 = rotor.sample_initial(3)
    t = np.linspace(0.0, 2.0, 11)
    exact = x0.numpy()[:, None, :] * np.exp(-1j * 1.3 * t)[None, :, None]
    y = solve(rotor, x0, t, method="DOP853", rtol=1e-11, atol=1e-12, stack=True)
    assert y.dtype == np.complex128 and np.abs(y - exact).max() < 1e-8
    lorenz = physres.systems.get("lorenz63")  # its numpy batch field equals its torch one
    xs = lorenz.sample_initial(5).numpy()
    np.testing.assert_allclose(
        lorenz.numpy_rhs_batch(0.0, xs), lorenz.rhs(0.0, torch.from_numpy(xs)).numpy(), rtol=1e-15
    )


def test_stacked_solve_errors():
    ho = physres.systems.get("harmonic_oscillator")
    x0, t = ho.sample_initial(2), np.linspace(0, 1, 5)
    with pytest.raises(ValueError, match="`stack=True` needs an explicit method"):
        solve(ho, x0, t, method="Radau", stack=True)
    with pytest.raises(ReferenceSolveError, match=r"trajectories 0\.\.2 \(stacked\): RK45 failed"):
        solve(
            BlowUp(),
            np.array([[0.1], [1.0], [0.2]]),
            np.linspace(0, 2, 5),
            method="RK45",
            stack=True,
        )
