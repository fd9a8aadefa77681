"""Butcher tableaus of explicit Runge–Kutta methods, held as data and checked on construction."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

# Order conditions up to order 5, one per rooted tree (Hairer, Nørsett & Wanner, Solving ODEs I,
# §II.2, Table 2.2).
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
    (5, lambda b, c, A: _dot(b, [ci**4 for ci in c]), Fraction(1, 5)),
    (5, lambda b, c, A: _dot(_hadamard(b, [ci**2 for ci in c]), _matvec(A, c)), Fraction(1, 10)),
    (5, lambda b, c, A: _dot(_hadamard(b, c), _matvec(A, [ci**2 for ci in c])), Fraction(1, 15)),
    (5, lambda b, c, A: _dot(_hadamard(b, c), _matvec(A, _matvec(A, c))), Fraction(1, 30)),
    (5, lambda b, c, A: _dot(b, [v**2 for v in _matvec(A, c)]), Fraction(1, 20)),
    (5, lambda b, c, A: _dot(b, _matvec(A, [ci**3 for ci in c])), Fraction(1, 20)),
    (5, lambda b, c, A: _dot(b, _matvec(A, _hadamard(c, _matvec(A, c)))), Fraction(1, 40)),
    (5, lambda b, c, A: _dot(b, _matvec(A, _matvec(A, [ci**2 for ci in c]))), Fraction(1, 60)),
    (5, lambda b, c, A: _dot(b, _matvec(A, _matvec(A, _matvec(A, c)))), Fraction(1, 120)),
]
MAX_CHECKED_ORDER = 5
# Coefficients published as long decimals (Tsitouras 2011) satisfy the conditions to their
# printed precision, not exactly; exact fractions must satisfy them exactly.
_DECIMAL_SLACK = Fraction(1, 10**40)


def _dot(u, v):
    return sum(ui * vi for ui, vi in zip(u, v, strict=True))


def _hadamard(u, v):
    return [ui * vi for ui, vi in zip(u, v, strict=True)]


def _matvec(A, v):
    return [_dot(row, v) for row in A]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method, optionally with an embedded pair.

    ``a`` is strictly lower triangular, given row by row (row ``i`` has ``i`` entries).
    Entries are exact fractions (or ints, or fractions of long published decimals);
    construction checks consistency (``sum(a_i) == c_i``), explicitness, and the order
    conditions up to ``order`` (at most 5).

    ``b_hat`` (optional) are the weights of the embedded solution of order ``error_order``;
    ``b - b_hat`` gives the local error estimate. Construction checks its order conditions too,
    and that it is not of order ``order`` (or the estimate would vanish). The method is FSAL
    (first same as last) when its last stage is the solution at ``t + dt``: ``c[-1] == 1`` and
    the last row of ``a`` equals ``b`` (so ``b[-1] == 0``).
    """

    c: tuple
    a: tuple
    b: tuple
    order: int
    b_hat: tuple | None = None
    error_order: int | None = None

    def __post_init__(self):
        s = len(self.b)
        if len(self.c) != s or len(self.a) != s:
            raise ValueError(f"tableau: c, a, b must have {s} stages")
        for i, row in enumerate(self.a):
            if len(row) != i:
                raise ValueError(f"tableau: row {i} of `a` must have {i} entries (explicit method)")
            if abs(sum(row) - self.c[i]) > _DECIMAL_SLACK:
                raise ValueError(f"tableau: sum(a[{i}]) = {sum(row)} != c[{i}] = {self.c[i]}")
        if not isinstance(self.order, int) or not 1 <= self.order <= MAX_CHECKED_ORDER:
            raise ValueError(
                f"tableau: `order` must be an int in 1..{MAX_CHECKED_ORDER}, got {self.order!r}"
            )
        self._check_order(self.b, self.order, "b")
        if (self.b_hat is None) != (self.error_order is None):
            raise ValueError("tableau: `b_hat` and `error_order` go together (both or neither)")
        if self.b_hat is not None:
            if len(self.b_hat) != s:
                raise ValueError(f"tableau: `b_hat` must have {s} entries, got {len(self.b_hat)}")
            if not isinstance(self.error_order, int) or not 1 <= self.error_order < self.order:
                raise ValueError(
                    f"tableau: `error_order` must be an int in 1..{self.order - 1}, "
                    f"got {self.error_order!r}"
                )
            self._check_order(self.b_hat, self.error_order, "b_hat")
            if self._conditions_hold(self.b_hat, self.error_order + 1):
                raise ValueError(
                    f"tableau: `b_hat` is of order {self.error_order + 1}, not "
                    f"{self.error_order}: the error estimate would be of higher order"
                )

    def _full(self):
        s = len(self.b)
        return [list(row) + [0] * (s - i) for i, row in enumerate(self.a)]

    def _conditions_hold(self, weights, order) -> bool:
        full = self._full()
        return all(
            abs(lhs(weights, self.c, full) - rhs) <= _DECIMAL_SLACK
            for p, lhs, rhs in _CONDITIONS
            if p <= order
        )

    def _check_order(self, weights, order, label):
        full = self._full()
        for p, lhs, rhs in _CONDITIONS:
            if p <= order and abs(lhs(weights, self.c, full) - rhs) > _DECIMAL_SLACK:
                raise ValueError(
                    f"tableau: order-{p} condition fails for `{label}` "
                    f"({float(lhs(weights, self.c, full))!r} != {rhs})"
                )

    @property
    def fsal(self) -> bool:
        """First same as last: the last stage is ``f(t + dt, x_next)``."""
        return (
            len(self.b) > 1
            and self.c[-1] == 1
            and self.b[-1] == 0
            and tuple(self.a[-1]) == tuple(self.b[:-1])
        )

    @property
    def stages(self) -> int:
        return len(self.b)

    def floats(self):
        """(c, a, b) as floats with zero entries of ``a`` dropped: [(j, a_ij), ...] per row."""
        a = [[(j, float(v)) for j, v in enumerate(row) if v != 0] for row in self.a]
        return [float(v) for v in self.c], a, [(j, float(v)) for j, v in enumerate(self.b) if v]

    def error_floats(self):
        """``b - b_hat`` as floats, zeros dropped: [(j, e_j), ...] (the error-estimate weights,
        subtracted exactly before rounding)."""
        return [
            (j, float(bj - hj))
            for j, (bj, hj) in enumerate(zip(self.b, self.b_hat, strict=True))
            if bj != hj
        ]


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

# Embedded pairs. The error-estimate weights are b - b_hat.
BOSH3 = ButcherTableau(  # Bogacki & Shampine (1989), Appl. Math. Lett. 2(4), 321-325; FSAL
    c=(0, F(1, 2), F(3, 4), 1),
    a=((), (F(1, 2),), (0, F(3, 4)), (F(2, 9), F(1, 3), F(4, 9))),
    b=(F(2, 9), F(1, 3), F(4, 9), 0),
    order=3,
    b_hat=(F(7, 24), F(1, 4), F(1, 3), F(1, 8)),
    error_order=2,
)
DOPRI5 = ButcherTableau(  # Dormand & Prince (1980), J. Comp. Appl. Math. 6, 19-26; FSAL
    c=(0, F(1, 5), F(3, 10), F(4, 5), F(8, 9), 1, 1),
    a=(
        (),
        (F(1, 5),),
        (F(3, 40), F(9, 40)),
        (F(44, 45), F(-56, 15), F(32, 9)),
        (F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)),
        (F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)),
        (F(35, 384), 0, F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84)),
    ),
    b=(F(35, 384), 0, F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), 0),
    order=5,
    # the original embedded 4th-order weights (as in Hairer's DOPRI5 and scipy's RK45)
    b_hat=(
        F(5179, 57600),
        0,
        F(7571, 16695),
        F(393, 640),
        F(-92097, 339200),
        F(187, 2100),
        F(1, 40),
    ),
    error_order=4,
)


def _d(text: str) -> Fraction:
    return Fraction(text)  # exact value of a published decimal


# Tsitouras (2011), Comput. Math. Appl. 62(2), 770-775, coefficients to 85 digits as in
# diffrax/OrdinaryDiffEq.jl; FSAL.
_TS_B = (
    _d("0.09646076681806522951816731316512876333711995238157997181903319145764851595234062815396"),
    F(1, 100),
    _d("0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509"),
    _d("1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331"),
    _d("-3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677"),
    _d("2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841"),
)
TSIT5 = ButcherTableau(
    c=(
        0,
        F(161, 1000),
        F(327, 1000),
        F(9, 10),
        _d(
            "0.9800255409045096857298102862870245954942137979563024768854764293221195950761080302604"
        ),
        1,
        1,
    ),
    a=(
        (),
        (F(161, 1000),),
        (
            _d(
                "-0.008480655492356988544426874250230774675121177393430391537369234245294192976164141156943"
            ),
            _d(
                "0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569"
            ),
        ),
        (
            _d(
                "2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289"
            ),
            _d(
                "-6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366"
            ),
            _d(
                "4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077"
            ),
        ),
        (
            _d(
                "5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791"
            ),
            _d(
                "-11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589"
            ),
            _d(
                "7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753"
            ),
            _d(
                "-0.09249506636175524925650207933207191611349983406029535244034750452930469056411389539635"
            ),
        ),
        (
            _d(
                "5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748"
            ),
            _d(
                "-12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452"
            ),
            _d(
                "8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986"
            ),
            _d(
                "-0.07158497328140099722453054252582973869127213147363544882721139659546372402303777878835"
            ),
            _d(
                "-0.02826905039406838290900305721271224146717633626879770007617876201276764571291579142206"
            ),
        ),
        _TS_B,
    ),
    b=(*_TS_B, 0),
    order=5,
    b_hat=(
        _d(
            "0.09468075576583945807478876255758922856117527357724631226139574065785592789071067303271"
        ),
        _d(
            "0.009183565540343253096776363936645313759813746240984095238905939532922955247253608687270"
        ),
        _d(
            "0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813"
        ),
        _d(
            "1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761"
        ),
        _d(
            "-2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702"
        ),
        _d(
            "1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089"
        ),
        F(1, 66),
    ),
    error_order=4,
)
