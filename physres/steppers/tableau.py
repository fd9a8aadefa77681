"""Butcher tableaus of explicit Runge–Kutta methods, held as data and checked on construction."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

# Order conditions up to order 4 (Hairer, Nørsett & Wanner, Solving ODEs I, §II.2).
# Each entry: (order, a function of (b, c, A) giving the left side, the right side).
_CONDITIONS = [
    (1, lambda b, c, A: sum(b), 1),
    (2, lambda b, c, A: _dot(b, c), Fraction(1, 2)),
    (3, lambda b, c, A: _dot(b, [ci**2 for ci in c]), Fraction(1, 3)),
    (3, lambda b, c, A: _dot(b, _matvec(A, c)), Fraction(1, 6)),
    (4, lambda b, c, A: _dot(b, [ci**3 for ci in c]), Fraction(1, 4)),
    (4, lambda b, c, A: _dot(_hadamard(b, c), _matvec(A, c)), Fraction(1, 8)),
    (4, lambda b, c, A: _dot(b, _matvec(A, [ci**2 for ci in c])), Fraction(1, 12)),
    (4, lambda b, c, A: _dot(b, _matvec(A, _matvec(A, c))), Fraction(1, 24)),
]


def _dot(u, v):
    return sum(ui * vi for ui, vi in zip(u, v, strict=True))


def _hadamard(u, v):
    return [ui * vi for ui, vi in zip(u, v, strict=True)]


def _matvec(A, v):
    return [_dot(row, v) for row in A]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method.

    ``a`` is strictly lower triangular, given row by row (row ``i`` has ``i`` entries).
    Entries are exact fractions (or ints); construction checks consistency
    (``sum(a_i) == c_i``), explicitness, and the order conditions up to ``order``.
    """

    c: tuple
    a: tuple
    b: tuple
    order: int

    def __post_init__(self):
        s = len(self.b)
        if len(self.c) != s or len(self.a) != s:
            raise ValueError(f"tableau: c, a, b must have {s} stages")
        for i, row in enumerate(self.a):
            if len(row) != i:
                raise ValueError(f"tableau: row {i} of `a` must have {i} entries (explicit method)")
            if sum(row) != self.c[i]:
                raise ValueError(f"tableau: sum(a[{i}]) = {sum(row)} != c[{i}] = {self.c[i]}")
        full = [list(row) + [0] * (s - i) for i, row in enumerate(self.a)]
        for p, lhs, rhs in _CONDITIONS:
            if p <= self.order and lhs(self.b, self.c, full) != rhs:
                raise ValueError(f"tableau: order-{p} condition fails ({lhs(self.b, self.c, full)} "
                                 f"!= {rhs})")

    @property
    def stages(self) -> int:
        return len(self.b)

    def floats(self):
        """(c, a, b) as floats with zero entries of ``a`` dropped: [(j, a_ij), ...] per row."""
        a = [[(j, float(v)) for j, v in enumerate(row) if v != 0] for row in self.a]
        return [float(v) for v in self.c], a, [(j, float(v)) for j, v in enumerate(self.b) if v]


F = Fraction
EULER = ButcherTableau(c=(0,), a=((),), b=(1,), order=1)
HEUN = ButcherTableau(c=(0, 1), a=((), (1,)), b=(F(1, 2), F(1, 2)), order=2)
MIDPOINT = ButcherTableau(c=(0, F(1, 2)), a=((), (F(1, 2),)), b=(0, 1), order=2)
RK4 = ButcherTableau(
    c=(0, F(1, 2), F(1, 2), 1),
    a=((), (F(1, 2),), (0, F(1, 2)), (0, 0, 1)),
    b=(F(1, 6), F(1, 3), F(1, 3), F(1, 6)),
    order=4,
)
