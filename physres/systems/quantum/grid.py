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

    def diagonal_propagator(
        self,
        phase: torch.Tensor,
        pre: torch.Tensor | None = None,
        post: torch.Tensor | None = None,
        images: bool = True,
    ) -> DiagonalPropagator:
        """``ψ ↦ post · inverse(phase · forward(pre · ψ))`` as a callable (see
        :class:`DiagonalPropagator`); ``phase``, ``pre``, ``post`` of shape (n,). ``images``:
        allow the image convolution (set-up costs a few applications; ``False`` for a phase
        used once)."""
        return DiagonalPropagator(self, phase, pre, post, images=images)

    def __repr__(self) -> str:
        return (
            f"Grid1D(n={self.n}, x_min={self.x_min}, x_max={self.x_max}, "
            f"boundary={self.boundary!r})"
        )


IMAGE_TOL = 1e-15  # kernel entries below this (relative to the largest) are dropped
IMAGE_CHECK_RTOL = 1e-13  # the convolution must reproduce the transform pair to this (·B/100)


class DiagonalPropagator:
    """``ψ ↦ post · F⁻¹ diag(phase) F (pre · ψ)`` along the last axis, ``F`` the grid's
    transform (:meth:`Grid1D.forward`), e.g. the exact kinetic propagator ``e^{−iTΔt/ħ}``.

    On a Dirichlet grid ``F⁻¹ diag(phase) F`` is a convolution of the odd ``2(n+1)``-periodic
    extension of ψ (method of images) with the kernel ``K = ifft(phase)`` of length
    ``2(n+1)``; the phases at θ = 0 and θ = π do not act on odd sequences and are chosen to
    make ``K`` decay fastest. When every entry of ``K`` beyond ``|m| = B`` is below
    ``IMAGE_TOL·max|K|`` and 10× its round-off floor (a finite-difference kernel decays faster
    than exponentially past that point, so what is dropped is round-off) and ``4B ≤ n`` (a
    finite-difference ``T`` with small ``Δt·ħ/(m·dx²)``, e.g. ``B`` = 19 at n = 2048 and
    Δt = 1e-3 in a box of 40), it is applied as one FFT and one inverse FFT of a 7-smooth
    length ``≥ n + 2B``: exact to round-off for every ``n``, with no slow FFT length where
    ``n + 1`` has a large prime factor (checked once against the transform pair on a random
    vector, to ``IMAGE_CHECK_RTOL·max(1, B/100)``). Otherwise (spectral ``T``, large Δt,
    periodic grids) it is the transform pair itself. Differentiable; any device.

    Parameters
    ----------
    grid : Grid1D
    phase : Tensor (n,) complex — the diagonal in the transform basis
    pre, post : Tensor (n,) or None — pointwise factors before and after
    images : bool — try the image convolution (else always the transform pair; so is a
        ``phase`` that requires grad, since the kernel is built from its values)
    """

    def __init__(self, grid: Grid1D, phase, pre=None, post=None, images: bool = True):
        self.grid, self.phase, self.pre, self.post = grid, phase, pre, post
        self.band = None
        if images and grid.boundary == "dirichlet" and not phase.requires_grad:
            kernel, band = _image_kernel(phase.detach().cpu().numpy().astype(np.complex128))
            if 4 * band <= grid.n:  # (the fit of the free phases sees |m| ≥ (n + 1)/2)
                self._setup_images(kernel, band, phase)
                self._check_images()

    def _check_images(self):
        """Fall back to the transform pair if the convolution misses it on a random vector
        (a kernel that only seemed short)."""
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, self.grid.n, generator=gen, dtype=torch.float64)
        x = torch.complex(x[0], x[1]).to(device=self.phase.device, dtype=self.phase.dtype)
        with torch.no_grad():
            fast = self(x)
            band, self.band = self.band, None
            exact = self(x)
        # both sides carry the phase's own round-off (~ε·|Δt·λ|, growing with the kernel
        # width), so the tolerance grows with B; a failed free-phase fit misses by far more
        scale = float(exact.abs().max()) * max(1.0, band / 100)
        if float((fast - exact).abs().max()) <= IMAGE_CHECK_RTOL * scale:
            self.band = band

    def _setup_images(self, kernel: np.ndarray, band: int, phase: torch.Tensor):
        n = self.grid.n
        two_n1 = 2 * (n + 1)
        length = _fast_len(n + 2 * band)
        ext = np.arange(1 - band, n + band + 1)  # odd-extension sites (grid site j ↔ j + 1)
        sign = np.where(ext < 0, -1.0, np.where(ext > n + 1, -1.0, 1.0))
        sign[(ext == 0) | (ext == n + 1)] = 0.0
        src = np.where(ext < 0, -ext, np.where(ext > n + 1, two_n1 - ext, ext)) - 1
        src = np.clip(src, 0, n - 1)
        k = np.zeros(length, dtype=np.complex128)  # the kernel at offsets −B … B, wrapped
        k[: band + 1] = kernel[: band + 1]
        k[length - band :] = kernel[two_n1 - band :]
        dtype, device = phase.dtype, phase.device
        weight = torch.from_numpy(sign).to(device=device, dtype=dtype)
        if self.pre is not None:
            weight = weight * self.pre.to(device=device, dtype=dtype)[torch.from_numpy(src)]
        self.band, self.length = band, length
        self._index = torch.from_numpy(src).to(device)
        self._weight = weight
        self._kernel_hat = torch.fft.fft(torch.from_numpy(k)).to(device=device, dtype=dtype)

    def __call__(self, psi: torch.Tensor) -> torch.Tensor:
        if self.band is None:
            g = self.grid
            x = psi if self.pre is None else self.pre * psi
            x = g.inverse(self.phase * g.forward(x))
            return x if self.post is None else self.post * x
        n, band = self.grid.n, self.band
        u = psi.index_select(-1, self._index) * self._weight  # (..., n + 2B)
        y = torch.fft.ifft(torch.fft.fft(u, n=self.length, dim=-1) * self._kernel_hat, dim=-1)
        y = y[..., band : band + n]
        return y if self.post is None else self.post * y


def _image_kernel(phase: np.ndarray) -> tuple[np.ndarray, int]:
    """The ``2(n+1)``-periodic convolution kernel of ``S⁻¹ diag(phase) S`` on odd sequences and
    its half-width ``B`` (entries beyond it below ``IMAGE_TOL`` of the largest)."""
    n = phase.shape[-1]
    two_n1 = 2 * (n + 1)
    full = np.zeros(two_n1, dtype=np.complex128)
    full[1 : n + 1] = phase
    full[n + 2 :] = phase[::-1]
    kernel = np.fft.ifft(full)
    # the free phases a (θ = 0) and b (θ = π) add (a + b·(−1)^m)/2(n+1) to the kernel: fit
    # them so that the far half of the kernel (where a decaying kernel is ~0) vanishes
    lo, count = (n + 1) // 2, 2 * ((n + 1) // 2)  # an even count: 1 ⟂ (−1)^m on it
    far = kernel[lo : lo + count]
    alt = np.where(np.arange(lo, lo + count) % 2 == 0, 1.0, -1.0)
    alpha, beta = far.mean(), (far * alt).mean()
    kernel = kernel - alpha - beta * np.where(np.arange(two_n1) % 2 == 0, 1.0, -1.0)
    mag = np.abs(kernel)
    noise = np.median(mag[lo : lo + count])  # the round-off floor of a decaying kernel
    big = mag > max(IMAGE_TOL * mag.max(), 10 * noise)
    offsets = np.minimum(np.arange(two_n1), two_n1 - np.arange(two_n1))
    band = int(offsets[big].max()) if big.any() else n + 1  # a flat kernel is not short
    return kernel, band


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
        return 0.5j * torch.fft.fft(y, dim=-1)[..., 1 : n + 1]
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
        b[m - n + 1 :] = inv[1:][::-1]  # negative offsets wrap around
        _PLANS[key] = (
            torch.from_numpy(chirp).to(dtype=dtype, device=device),
            torch.fft.fft(torch.from_numpy(b)).to(dtype=dtype, device=device),
            m,
        )
    return _PLANS[key]
