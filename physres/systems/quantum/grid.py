"""Uniform one-dimensional grids and the transforms that diagonalise their kinetic energy."""

from __future__ import annotations

import math
import threading

import numpy as np
import torch

BOUNDARIES = ("periodic", "dirichlet")


class Grid1D:
    """A uniform grid on ``[x_min, x_max]``.

    ``periodic``: ``n`` points ``x_j = x_min + j·dx`` with ``dx = (x_max - x_min)/n`` (the point
    ``x_max`` is the image of ``x_min``). ``dirichlet``: ``n`` interior points
    ``x_j = x_min + (j + 1)·dx`` with ``dx = (x_max - x_min)/(n + 1)``; ψ vanishes at both ends.

    The transform that diagonalises the second difference is the FFT (periodic) or the type-I
    discrete sine transform (Dirichlet); ``forward``/``inverse`` apply it along the last axis,
    and ``wavenumbers`` are the matching ``k`` values.

    Parameters
    ----------
    n : int, >= 8
    x_min, x_max : float, x_min < x_max
    boundary : "periodic" or "dirichlet"
    """

    def __init__(self, n: int, x_min: float, x_max: float, boundary: str = "periodic"):
        if isinstance(n, bool) or not isinstance(n, int) or n < 8:
            raise ValueError(f"`n` must be an int >= 8, got {n!r}")
        x_min, x_max = float(x_min), float(x_max)
        if not (math.isfinite(x_min) and math.isfinite(x_max) and x_min < x_max):
            raise ValueError(f"`x_min` < `x_max` (finite) is required, got {x_min!r}, {x_max!r}")
        if boundary not in BOUNDARIES:
            raise ValueError(f"`boundary` must be one of {BOUNDARIES}, got {boundary!r}")
        self.n, self.x_min, self.x_max, self.boundary = n, x_min, x_max, boundary
        self.length = x_max - x_min
        if boundary == "periodic":
            self.dx = self.length / n
            x = x_min + self.dx * np.arange(n)
            self.k = 2 * np.pi * np.fft.fftfreq(n, d=self.dx)  # FFT order
        else:
            self.dx = self.length / (n + 1)
            x = x_min + self.dx * np.arange(1, n + 1)
            self.k = np.pi * np.arange(1, n + 1) / self.length  # sine modes
        self.x_np = x
        self.x = torch.from_numpy(x)  # (n,) float64

    @property
    def coordinates(self) -> dict[str, np.ndarray]:
        """Axis name → coordinates, as stored under ``/grid`` in trajectory files."""
        return {"x": self.x_np}

    def __array__(self, dtype=None, copy=None):
        return self.x_np if dtype is None else self.x_np.astype(dtype)

    def __len__(self) -> int:
        return self.n

    def integrate(self, f: torch.Tensor) -> torch.Tensor:
        """``Σ_j f_j·dx`` over the last axis."""
        return f.sum(-1) * self.dx

    def forward(self, psi: torch.Tensor) -> torch.Tensor:
        """Coefficients in the kinetic eigenbasis along the last axis (FFT or DST-I)."""
        if self.boundary == "periodic":
            return torch.fft.fft(psi, dim=-1)
        return _dst1(psi)

    def inverse(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`forward`."""
        if self.boundary == "periodic":
            return torch.fft.ifft(coeffs, dim=-1)
        return _dst1(coeffs) * (2.0 / (self.n + 1))

    def __repr__(self) -> str:
        return (f"Grid1D(n={self.n}, x_min={self.x_min}, x_max={self.x_max}, "
                f"boundary={self.boundary!r})")


def _dst1(x: torch.Tensor) -> torch.Tensor:
    """Type-I DST ``S_k = Σ_j x_j sin(π(k+1)(j+1)/(n+1))`` along the last axis (complex result).

    On the CPU: scipy's pocketfft real-to-real DST-I when ``n + 1`` has no prime factor above
    ``_DIRECT_MAX_PRIME``, else Bluestein's chirp-z algorithm on pocketfft FFTs of a 7-smooth
    length ``M ≥ 2n − 1`` (e.g. n = 2048, where 2n + 2 = 4098 = 2·3·683 is a slow FFT length).
    Elsewhere: torch FFTs (of the odd extension, or Bluestein). Differentiable: ``S`` is real
    symmetric, so the backward pass is the same transform.
    """
    if x.device.type == "cpu":
        return _DST1.apply(x)
    return _dst1_torch(x)


class _DST1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.real = not x.is_complex()
        a = x.detach().resolve_conj().resolve_neg().numpy()
        return torch.from_numpy(_dst1_numpy(a.astype(np.result_type(a.dtype, np.complex64))))

    @staticmethod
    def backward(ctx, grad):
        g = _DST1.apply(grad)
        return g.real if ctx.real else g


def _dst1_numpy(a: np.ndarray) -> np.ndarray:
    import scipy.fft as sfft

    n = a.shape[-1]
    if _largest_prime_factor(n + 1) <= _DIRECT_MAX_PRIME:
        return 0.5 * sfft.dst(a, type=1, axis=-1, workers=1)  # scipy's DST-I is twice ours
    chirp, kernel, m = _bluestein_plan_numpy(n, a.dtype)
    # few, reused temporaries: on a busy machine fresh megabyte arrays cost more than the FFTs
    buf = _workspace((2, *a.shape[:-1], m), a.dtype)
    np.multiply(a, chirp, out=buf[0, ..., :n])
    np.multiply(a.conj(), chirp, out=buf[1, ..., :n])
    buf[..., n:] = 0
    f = sfft.fft(buf, axis=-1, workers=1, overwrite_x=True)
    f *= kernel
    conv = sfft.ifft(f, axis=-1, workers=1, overwrite_x=True)[..., :n]
    out = np.multiply(conv[0], chirp)
    out -= np.conj(conv[1] * chirp)
    out *= -0.5j
    return out


_LOCAL = threading.local()


def _workspace(shape, dtype) -> np.ndarray:
    """A per-thread scratch array of ``shape`` (reused across calls of the same shape)."""
    key = (shape, np.dtype(dtype).str)
    cache = getattr(_LOCAL, "buffers", None)
    if cache is None or key not in cache:
        _LOCAL.buffers = {key: np.zeros(shape, dtype=dtype)}  # keep only the latest shape
    return _LOCAL.buffers[key]


def _dst1_torch(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[-1]
    x = x.to(torch.promote_types(x.dtype, torch.complex64))
    if _largest_prime_factor(n + 1) <= _DIRECT_MAX_PRIME:
        zero = torch.zeros(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)
        y = torch.cat([zero, x, zero, -x.flip(-1)], dim=-1)  # (..., 2n + 2)
        return 0.5j * torch.fft.fft(y, dim=-1)[..., 1:n + 1]
    chirp, kernel, m = _bluestein_plan(n, x.dtype, x.device)
    # E(z)_k = Σ_j z_j e^{iπ(j+1)(k+1)/(n+1)} for z = x and z = conj(x); S = (E(x) − conj E(x̄))/2i
    both = torch.stack([x, x.conj()]) * chirp
    conv = torch.fft.ifft(torch.fft.fft(both, m, dim=-1) * kernel, dim=-1)[..., :n] * chirp
    return -0.5j * (conv[0] - conv[1].conj())


_DIRECT_MAX_PRIME = 100  # above it, a radix-p FFT pass costs more than Bluestein's 4 FFTs


def _largest_prime_factor(n: int) -> int:
    p, largest = 2, 1
    while p * p <= n:
        while n % p == 0:
            n, largest = n // p, p
        p += 1
    return max(largest, n) if n > 1 else largest


def _fast_len(n: int) -> int:
    """The smallest 2·3·5·7-smooth integer >= n."""
    best = 1 << max(n - 1, 0).bit_length()
    p7 = 1
    while p7 < best:
        p5 = p7
        while p5 < best:
            p3 = p5
            while p3 < best:
                p2 = p3
                while p2 < n:
                    p2 *= 2
                best = min(best, p2)
                p3 *= 3
            p5 *= 5
        p7 *= 7
    return best


_PLANS: dict = {}


def _bluestein_plan_numpy(n: int, dtype):
    key = (n, np.dtype(dtype).str, "numpy")
    if key not in _PLANS:
        chirp, kernel, m = _bluestein_plan(n, torch.complex128, torch.device("cpu"))
        _PLANS[key] = (chirp.numpy().astype(dtype), kernel.numpy().astype(dtype), m)
    return _PLANS[key]


def _bluestein_plan(n: int, dtype, device):
    """Chirp ``w_j = e^{iπ(j+1)²/(2(n+1))}`` (n,) and the FFT (length ``m``) of the kernel
    ``conj(w)`` at offsets ``−(n−1) … n−1``, cached per (n, dtype, device)."""
    key = (n, dtype, device)
    if key not in _PLANS:
        m = _fast_len(2 * n - 1)
        four_n1 = 4 * (n + 1)
        j = np.arange(1, n + 1, dtype=np.int64)
        chirp = np.exp(1j * np.pi * ((j * j) % four_n1) / (2 * (n + 1)))  # (n,)
        d = np.arange(n, dtype=np.int64)
        inv = np.exp(-1j * np.pi * ((d * d) % four_n1) / (2 * (n + 1)))  # conj chirp at offset d
        b = np.zeros(m, dtype=np.complex128)
        b[:n] = inv
        b[m - n + 1:] = inv[1:][::-1]  # negative offsets wrap around
        _PLANS[key] = (torch.from_numpy(chirp).to(dtype=dtype, device=device),
                       torch.fft.fft(torch.from_numpy(b)).to(dtype=dtype, device=device), m)
    return _PLANS[key]
