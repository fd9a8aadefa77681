"""The `bead_chain` system: a Gō-like bead chain with long-range staples."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch

from ... import _checks
from ..base import System, register
from . import observables as obs
from . import potential as pot
from .neighbours import VerletList
from .targets import native_contacts, resolve

MIN_STAPLE_SEPARATION = 3  # |i − j| = 1 is a bond, 2 is held by the bending term
AUTO_VERLET_BEADS = 16  # pairs="auto": the Verlet list from this many beads on


@register("bead_chain")
class BeadChain(System):
    """N beads in 3-D: bonds, bending, optional torsions, WCA repulsion, Gō native contacts and
    staples (extra springs between distant beads, like disulfide bonds in a protein).

    Units: bond length 1, contact energy ``epsilon`` 1, bead mass 1; ``temperature`` is kT.

    Dynamics (``dynamics``):

    * ``"overdamped"`` (default): state (n_beads, 3) positions; ``rhs = −∇U/γ``, the gradient
      flow (``γ = friction``). At ``temperature > 0`` the stepper ``euler_maruyama`` adds the
      noise ``sqrt(2kT·dt/γ)·ξ``.
    * ``"underdamped"``: state (2, n_beads, 3), positions ``x[:, 0]`` then momenta ``x[:, 1]``;
      ``rhs = (p, −∇U − γp)``, damped Hamiltonian dynamics. The stepper ``baoab`` adds the
      thermostat at ``temperature``.

    Parameters
    ----------
    n_beads : int, ≥ 4
    staples : sequence of ``(i, j)`` or ``(i, j, k, r0)``
        Harmonic springs ``½k(r − r0)²`` between beads with ``|i − j| ≥ 3`` (closer pairs are
        already held by bonds and bending); ``k`` defaults to ``staple_k``, ``r0`` to
        ``staple_length`` or, when that is ``None``, the pair's distance in the target
        (bond length without a target).
    temperature : float, ≥ 0
    friction : float, > 0
    target : ``"hairpin"``, ``"helix"``, coordinates (n_beads, 3), or ``None``
        The native structure. It sets the bond rest lengths, bending and torsion angles, and
        the native contacts (pairs with ``|i − j| ≥ 3`` closer than ``contact_cutoff``), which
        attract with the Gō 12-10 potential of depth ``epsilon``. With ``None``: a homopolymer,
        rest length ``bond_length`` (0 gives Gaussian springs: the Rouse chain), straight
        preferred angle, no attraction.
    bond : ``"harmonic"`` or ``"fene"``  (shifted FENE with span ``fene_span``)
    k_bond, k_angle, k_torsion : float, ≥ 0 (``k_torsion > 0`` needs a target)
    wca : bool
        WCA repulsion (diameter ``sigma``, depth 1) between non-native pairs, ``|i − j| ≥ 2``.
    initial : ``"coil"`` or ``"extended"``, what :meth:`sample_initial` draws
    pairs : ``"auto"``, ``"all"`` or ``"verlet"``
        How the WCA pairs are found: all candidate pairs each call (O(N²), fewest ops for
        short chains) or a Verlet neighbour list with a ``skin`` (O(N) per force, rebuilt when
        a bead has moved more than ``skin/2``). ``"auto"``: the list from
        ``AUTO_VERLET_BEADS`` beads on. Either gives the same energy and force to round-off.
    skin : float, > 0, the Verlet list's extra reach beyond the WCA cutoff
    """

    t_end = 5.0  # gradient flow from a coil: the fast collapse
    dt_save = 0.05
    reference_method = "LSODA"  # stiff bonds; gets the autograd `jac`
    reference_rtol = 1e-9
    reference_atol = 1e-11

    def __init__(
        self,
        n_beads: int = 32,
        staples=(),
        temperature: float = 0.0,
        friction: float = 1.0,
        target="hairpin",
        bond: str = "harmonic",
        k_bond: float = 100.0,
        bond_length: float = 1.0,
        fene_span: float = 0.5,
        k_angle: float = 20.0,
        k_torsion: float = 0.0,
        epsilon: float = 1.0,
        contact_cutoff: float = 1.8,
        wca: bool = True,
        sigma: float = 1.0,
        staple_k: float = 20.0,
        staple_length: float | None = None,
        dynamics: str = "overdamped",
        initial: str = "coil",
        pairs: str = "auto",
        skin: float = 0.4,
    ):
        n_beads = _checks.positive_int("n_beads", n_beads)
        if n_beads < 4:
            raise ValueError(f"`n_beads` must be >= 4, got {n_beads}")
        temperature = _checks.positive("temperature", temperature, allow_zero=True)
        friction = _checks.positive("friction", friction)
        for name, value in (
            ("k_bond", k_bond),
            ("k_angle", k_angle),
            ("k_torsion", k_torsion),
            ("epsilon", epsilon),
            ("staple_k", staple_k),
        ):
            _checks.positive(name, value, allow_zero=True)
        _checks.positive("bond_length", bond_length, allow_zero=True)
        for name, value in (
            ("fene_span", fene_span),
            ("contact_cutoff", contact_cutoff),
            ("sigma", sigma),
        ):
            _checks.positive(name, value)
        if staple_length is not None:
            staple_length = _checks.positive("staple_length", staple_length)
        _choice("bond", bond, ("harmonic", "fene"))
        _choice("dynamics", dynamics, ("overdamped", "underdamped"))
        _choice("initial", initial, ("coil", "extended"))
        _choice("pairs", pairs, ("auto", "all", "verlet"))
        skin = _checks.positive("skin", skin)
        if not isinstance(wca, bool):
            raise TypeError(f"`wca` must be a bool, got {type(wca).__name__}")
        native = resolve(target, n_beads)
        if k_torsion > 0 and native is None:
            raise ValueError("`k_torsion` > 0 needs a `target` (torsions relax to its dihedrals)")
        staples = _staples(staples, n_beads, staple_k, staple_length, native, bond_length)
        super().__init__(
            n_beads=n_beads,
            staples=[list(s) for s in staples],
            temperature=temperature,
            friction=friction,
            target=target if isinstance(target, str) or target is None else native.tolist(),
            bond=bond,
            k_bond=float(k_bond),
            bond_length=float(bond_length),
            fene_span=float(fene_span),
            k_angle=float(k_angle),
            k_torsion=float(k_torsion),
            epsilon=float(epsilon),
            contact_cutoff=float(contact_cutoff),
            wca=wca,
            sigma=float(sigma),
            staple_k=float(staple_k),
            staple_length=staple_length,
            dynamics=dynamics,
            initial=initial,
            pairs=pairs,
            skin=float(skin),
        )
        self.n_beads, self.temperature, self.friction = n_beads, temperature, friction
        self.underdamped = dynamics == "underdamped"
        self.state_shape = (2, n_beads, 3) if self.underdamped else (n_beads, 3)
        self.staples = staples
        self.native = None if native is None else torch.as_tensor(native, dtype=self.dtype)
        self._build(native)

    # --- topology and parameters, built once ---------------------------------------------
    def _build(self, native):
        p, n, t = self.params, self.n_beads, self.dtype
        idx = torch.arange(n)
        self._bond_i, self._bond_j = idx[:-1], idx[1:]
        self._angle_i = idx[1:-1]
        self._torsion_i = idx[:-3]
        if native is None:
            self._bond_r0 = torch.full((n - 1,), p["bond_length"], dtype=t)
            self._cos0 = torch.full((n - 2,), -1.0, dtype=t)
            self._phi0 = torch.zeros(n - 3, dtype=t)
            contacts = np.zeros((0, 2), dtype=np.int64)
        else:
            y = torch.as_tensor(native, dtype=t).unsqueeze(0)
            self._bond_r0 = torch.linalg.vector_norm(y[0, 1:] - y[0, :-1], dim=-1)
            u, v = y[0, :-2] - y[0, 1:-1], y[0, 2:] - y[0, 1:-1]
            self._cos0 = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
            self._phi0 = pot.dihedral(y, self._torsion_i)[0]
            contacts = native_contacts(native, p["contact_cutoff"])
        self.contacts = torch.as_tensor(contacts, dtype=torch.long).reshape(-1, 2)
        self.native_distances = (
            torch.linalg.vector_norm(
                self.native[self.contacts[:, 1]] - self.native[self.contacts[:, 0]], dim=-1
            )
            if native is not None
            else torch.zeros(0, dtype=t)
        )
        is_native = torch.zeros(n, n, dtype=torch.bool)
        is_native[self.contacts[:, 0], self.contacts[:, 1]] = True
        i, j = torch.triu_indices(n, n, offset=2)
        keep = ~is_native[i, j]
        self._wca_i, self._wca_j = i[keep], j[keep]
        s = torch.tensor([[a, b] for a, b, _, _ in self.staples], dtype=torch.long).reshape(-1, 2)
        self._staple_i, self._staple_j = s[:, 0], s[:, 1]
        self._staple_k = torch.tensor([k for *_, k, _ in self.staples], dtype=t)
        self._staple_r0 = torch.tensor([r for *_, r in self.staples], dtype=t)
        go = self.contacts if p["epsilon"] > 0 else torch.zeros(0, 2, dtype=torch.long)
        self.pair_method = self._pair_method(p["pairs"])
        all_pairs = p["wca"] and self.pair_method == "all"
        wca_i = self._wca_i if all_pairs else self._wca_i[:0]
        wca_j = self._wca_j if all_pairs else self._wca_j[:0]
        self._c = {  # fixed pair list in the order of the pair terms: staples, Gō, WCA (all pairs)
            "pair_i": torch.cat([self._staple_i, go[:, 0], wca_i]),
            "pair_j": torch.cat([self._staple_j, go[:, 1], wca_j]),
            "bond_r0": self._bond_r0,
            "staple_k": self._staple_k,
            "staple_r0": self._staple_r0,
            "go_r0sq": self.native_distances[: len(go)] ** 2,
            "angle_i": self._angle_i,
            "cos0": self._cos0,
            "torsion_i": self._torsion_i,
            "phi0": self._phi0,
            # the fused force: per-pair coefficients of the unified radial term
            "k_bond": torch.tensor(p["k_bond"], dtype=t),
            "k_r0": p["k_bond"] * self._bond_r0,
            "cos0k": -p["k_angle"] * self._cos0,
            "pair_coef": torch.cat(
                [
                    pot.pair_coefficients(
                        "harmonic", len(self._staple_k), t, k=self._staple_k, r0=self._staple_r0
                    ),
                    pot.pair_coefficients(
                        "go", len(go), t, epsilon=p["epsilon"], r0=self.native_distances[: len(go)]
                    ),
                    pot.pair_coefficients("wca", len(wca_i), t, epsilon=1.0, sigma=p["sigma"]),
                ],
                1,
            ),
            "wca_coef": pot.pair_coefficients("wca", 1, t, epsilon=1.0, sigma=p["sigma"]),
        }
        self._fused_flags = (len(self._staple_k) > 0, p["wca"])  # staples: 1/r; WCA: cutoff
        self._verlet = None
        if p["wca"] and self.pair_method == "verlet":
            candidates = torch.zeros(n, n, dtype=torch.bool)
            candidates[self._wca_i, self._wca_j] = True
            self._verlet = VerletList(candidates, 2.0 ** (1.0 / 6.0) * p["sigma"], p["skin"])
        self._device = torch.device("cpu")
        self._flat_key = None
        self._pair_terms = self._make_pair_terms()

    def _pair_method(self, pairs):
        if pairs != "auto":
            return pairs
        return "verlet" if self.n_beads >= AUTO_VERLET_BEADS else "all"

    # --- energy and force ----------------------------------------------------------------
    def energy_force(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Potential energy (batch,) and force ``−∇U`` (batch, n_beads, 3) of positions ``x``
        of shape (batch, n_beads, 3).

        Bonds and bending come from the bond vectors in one pass; staples, Gō contacts and
        WCA pairs from one gather of a pair list: every candidate WCA pair for short chains,
        the Verlet neighbour list for long ones (``pairs``); both give the all-pairs sum to
        round-off.
        """
        return self._evaluate(x, True)

    def conservative_force(self, q: torch.Tensor) -> torch.Tensor:
        """``−∇U`` (batch, n_beads, 3) of positions ``q`` (batch, n_beads, 3), unchecked and
        without the energy: the force ``baoab`` reads (``dp/dt`` of :meth:`rhs` at p = 0).

        Harmonic bonds without a gradient to track, in the system's dtype, take the fused path
        (:meth:`_fused_force`, about half the ops of :meth:`energy_force`); both agree to
        round-off.
        """
        if (
            self.params["bond"] == "harmonic"
            and q.dtype == self.dtype
            and not (torch.is_grad_enabled() and q.requires_grad)
        ):
            return self._fused_force(q)
        return self._evaluate(q, False)[1]

    def _fused_force(self, x):
        """The force in few kernels: bonds and bending from the bond vectors, every pair term
        (staples, Gō, WCA) through one gather, one unified radial formula
        (:func:`~physres.systems.chain.potential.unified_pair_w`) and two scatters."""
        p = self.params
        if self._device != x.device:
            self._move(x.device)
        c, (b, n) = self._c, x.shape[:2]
        xs = x.permute(2, 0, 1).contiguous()  # (3, B, N)
        grad = pot.backbone_grad(xs, c["k_bond"], c["k_r0"], p["k_angle"], c["cos0k"])
        fs = torch.zeros_like(xs)
        fs[..., :-1] += grad
        fs[..., 1:] -= grad
        xs, fs = xs.view(3, b * n), fs.view(3, b * n)
        i, j, _ = self._pair_list(x, b, n, xs)
        if len(i):
            ij3, i3, j3, coef = self._flat_fused  # (3, 2P), (3, P), (3, P), (6, P)
            g = torch.gather(xs, 1, ij3)  # x_i | x_j (gather beats index_select here)
            d = g[:, len(i) :] - g[:, : len(i)]  # x_j − x_i, (3, P)
            w = pot.unified_pair_w((d * d).sum(0), coef, *self._fused_flags)
            f = w * d  # force on i; −f on j
            fs.scatter_add_(1, i3, f)
            fs.scatter_add_(1, j3, -f)  # (index_add_ with alpha=−1 is far slower)
        force = fs.view(3, b, n).permute(1, 2, 0)
        if p["k_torsion"] > 0:
            force = force + pot.torsion(x, c["torsion_i"], p["k_torsion"], c["phi0"])[1]
        return force

    def _evaluate(self, x, need_energy):
        p = self.params
        if self._device != x.device:
            self._move(x.device)
        c, (b, n) = self._c, x.shape[:2]
        xs = x.permute(2, 0, 1).contiguous()  # (3, B, N)
        energy, fs = pot.backbone(
            xs,
            p["k_bond"],
            c["bond_r0"],
            p["k_angle"],
            c["cos0"],
            p["fene_span"] if p["bond"] == "fene" else None,
            need_energy,
        )
        xs, fs = xs.view(3, b * n), fs.view(3, b * n)
        i, j, n_fixed = self._pair_list(x, b, n)
        if len(i):
            d = xs[:, j] - xs[:, i]  # (3, P)
            r2 = (d * d).sum(0)
            fixed = r2[:n_fixed].view(b, -1)
            us, ws = [], []
            for start, stop, fn in self._pair_terms:
                u, w = fn(fixed[:, start:stop], energy=need_energy)
                us.append(u)
                ws.append(w)
            ws = [torch.cat(ws, 1).view(-1)] if len(ws) > 1 else [w.reshape(-1) for w in ws]
            if self._verlet is not None:
                u_wca, w = pot.wca_r2(r2[n_fixed:], 1.0, p["sigma"], energy=need_energy)
                ws.append(w)
            f = (ws[0] if len(ws) == 1 else torch.cat(ws)) * d  # force on i; −f on j
            fs.index_add_(1, i, f)
            fs.index_add_(1, j, -f)
            if need_energy:
                if us:
                    energy = energy + (us[0] if len(us) == 1 else torch.cat(us, 1)).sum(-1)
                if self._verlet is not None:
                    energy = energy.index_add(0, self._verlet.chain, u_wca)
        force = fs.view(3, b, n).permute(1, 2, 0)
        if p["k_torsion"] > 0:
            de, df = pot.torsion(x, c["torsion_i"], p["k_torsion"], c["phi0"])
            energy, force = energy + de, force + df
        return energy, force

    def _pair_list(self, x, b, n, coords=None):
        """Flat indices ``chain·N + bead`` of the pair list, fixed pairs first (chain-major,
        in the order of ``_pair_terms``), then the Verlet pairs; and the count of fixed ones."""
        builds = None
        if self._verlet is not None:
            self._verlet.pairs(x, coords)
            builds = self._verlet.builds
        key = (b, x.device, builds)
        if self._flat_key != key:
            c = self._c
            offset = n * torch.arange(b, device=x.device).unsqueeze(1)
            i = (offset + c["pair_i"]).reshape(-1)
            j = (offset + c["pair_j"]).reshape(-1)
            n_fixed = len(i)
            coef = c["pair_coef"].repeat(1, b)
            if self._verlet is not None:
                i, j = torch.cat([i, self._verlet.i]), torch.cat([j, self._verlet.j])
                coef = torch.cat([coef, c["wca_coef"].expand(6, len(self._verlet.i))], 1)
            self._flat, self._flat_key = (i, j, n_fixed), key
            ij3 = torch.cat([i, j]).expand(3, -1).contiguous()
            self._flat_fused = (
                ij3,
                ij3[:, : len(i)].contiguous(),
                ij3[:, len(i) :].contiguous(),
                coef.contiguous(),
            )
        return self._flat

    def _move(self, device):
        self._c = {k: v.to(device) for k, v in self._c.items()}
        self._device = device
        self._pair_terms = self._make_pair_terms()

    def _make_pair_terms(self):
        """``(start, stop, fn)`` segments of the fixed pair list, ``fn(r²) -> (u, u'(r)/r)``."""
        p, c = self.params, self._c
        sizes = [len(c["staple_k"]), len(c["go_r0sq"])]
        fns = [
            partial(pot.harmonic_r2, k=c["staple_k"], r0=c["staple_r0"]),
            partial(pot.go_r2, epsilon=p["epsilon"], r0_squared=c["go_r0sq"]),
        ]
        sizes.append(len(c["pair_i"]) - sum(sizes))
        fns.append(partial(pot.wca_r2, epsilon=1.0, sigma=p["sigma"]))
        terms, start = [], 0
        for size, fn in zip(sizes, fns, strict=True):
            if size:
                terms.append((start, start + size, fn))
            start += size
        return terms

    def positions(self, x: torch.Tensor) -> torch.Tensor:
        """Bead positions (batch, n_beads, 3) of a state (either dynamics)."""
        return x[:, 0] if self.underdamped else x

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Potential energy ``U``, shape (batch,), of a state (batch, *state_shape)."""
        return self.energy_force(self._positions(x))[0]

    def force(self, x: torch.Tensor) -> torch.Tensor:
        """``−∇U`` of positions, shape (batch, n_beads, 3), for a state (batch, *state_shape)."""
        return self.energy_force(self._positions(x))[1]

    def _positions(self, x):
        _checks.state("x", x, self.state_shape)
        return self.positions(x)

    # --- System contract -----------------------------------------------------------------
    def rhs(self, t, x: torch.Tensor) -> torch.Tensor:
        """Gradient flow ``−∇U/γ`` (overdamped) or ``(p, −∇U − γp)`` (underdamped)."""
        if not self.underdamped:
            return self.energy_force(x)[1] / self.friction
        q, mom = x[:, 0], x[:, 1]
        return torch.stack([mom, self.energy_force(q)[1] - self.friction * mom], dim=1)

    def jacobian(self, t, x: torch.Tensor) -> torch.Tensor:
        """``∂rhs/∂x`` on flattened states, (batch, n, n), by autograd of the analytic field."""
        b = x.shape[0]
        flat = x.detach().reshape(b, -1)

        def summed(y):
            return self.rhs(t, y.reshape(b, *self.state_shape)).reshape(b, -1).sum(0)

        jac = torch.autograd.functional.jacobian(summed, flat, vectorize=True)  # (n, b, n)
        return jac.permute(1, 0, 2).contiguous()

    def sample_initial(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` unfolded states, (n, *state_shape), centred at the origin.

        ``initial="extended"``: beads on a straight line along a random direction, spacing
        the bond rest length (1 for zero-length springs), each coordinate perturbed by
        N(0, 0.1²).
        ``initial="coil"``: a random walk of rest-length bonds with uniformly random
        directions, each step redrawn (up to 100 times) until the new bead is outside the
        repulsive range of all earlier beads: ``2^(1/6)·sigma``, and ``r0/1.1`` for native
        pairs (a self-avoiding random coil).
        Underdamped states draw momenta from the Maxwell–Boltzmann distribution at
        ``temperature`` (zero at ``temperature = 0``).
        """
        n = _checks.positive_int("n", n)
        rng = np.random.default_rng(seed)
        r0 = self._bond_r0.numpy()
        r0 = np.where(r0 > 0, r0, 1.0)  # zero-length (Gaussian) springs: unit steps
        if self.params["initial"] == "extended":
            e = rng.normal(size=(n, 1, 3))
            e /= np.linalg.norm(e, axis=-1, keepdims=True)
            s = np.concatenate([[0.0], np.cumsum(r0)])
            x = s[None, :, None] * e + 0.1 * rng.normal(size=(n, self.n_beads, 3))
        else:
            x = np.stack([_coil(rng, r0, self._min_distances()) for _ in range(n)])
        x = torch.as_tensor(x - x.mean(axis=1, keepdims=True), dtype=self.dtype)
        if not self.underdamped:
            return x
        mom = math.sqrt(self.temperature) * torch.as_tensor(
            rng.normal(size=x.shape), dtype=self.dtype
        )
        return torch.stack([x, mom], dim=1)

    def _min_distances(self):
        n = self.n_beads
        m = np.full((n, n), 2.0 ** (1.0 / 6.0) * self.params["sigma"])
        c, r0 = self.contacts.numpy(), self.native_distances.numpy() / 1.1
        m[c[:, 0], c[:, 1]] = np.maximum(m[c[:, 0], c[:, 1]], r0)
        m[c[:, 1], c[:, 0]] = m[c[:, 0], c[:, 1]]
        return m

    def invariants(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Monitored quantities, each (batch,): ``energy`` (potential, plus kinetic when
        underdamped), ``rg``, ``end_to_end`` and, with a target, ``q`` and ``rmsd``."""
        q = self.positions(x)
        out = {"energy": self.energy_force(q)[0]}
        if self.underdamped:
            out["energy"] = out["energy"] + 0.5 * (x[:, 1] ** 2).sum((-1, -2))
        out["rg"] = obs.radius_of_gyration(q)
        out["end_to_end"] = obs.end_to_end(q)
        if self.native is not None:
            out.update(self.folding(q))
        return out

    def folding(self, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """``q`` (fraction of native contacts) and ``rmsd`` (Kabsch) of positions (..., N, 3)."""
        if self.native is None:
            raise ValueError("folding observables need a `target`; this chain has none")
        out = {}
        if len(self.contacts):
            out["q"] = obs.fraction_native_contacts(
                q, self.contacts.to(q.device), self.native_distances.to(q.device)
            )
        out["rmsd"] = obs.kabsch_rmsd(q, self.native.to(q.device))
        return out


def _choice(name, value, options):
    if value not in options:
        raise ValueError(f"`{name}` must be one of {options}, got {value!r}")


def _staples(staples, n_beads, k_default, r0_default, native, bond_length):
    """Validated staples as ``(i, j, k, r0)`` tuples with ``i < j``."""
    if staples is None:
        return []
    try:
        items = list(staples)
    except TypeError:
        raise TypeError(
            f"`staples` must be a sequence of (i, j) or (i, j, k, r0), got {type(staples).__name__}"
        ) from None
    out, seen = [], set()
    for s in items:
        s = s.tolist() if isinstance(s, (np.ndarray, torch.Tensor)) else s
        if not isinstance(s, (tuple, list)) or len(s) not in (2, 4):
            raise ValueError(f"`staples` entries must be (i, j) or (i, j, k, r0), got {s!r}")
        i, j = s[0], s[1]
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in (i, j)):
            raise TypeError(f"`staples` bead indices must be ints, got {s!r}")
        i, j = sorted((int(i), int(j)))
        if i < 0 or j >= n_beads:
            raise ValueError(
                f"`staples` entry {s!r} is out of range: bead indices must be in "
                f"[0, {n_beads - 1}] for n_beads = {n_beads}"
            )
        if j - i < MIN_STAPLE_SEPARATION:
            raise ValueError(
                f"`staples` entry {s!r} joins neighbouring beads: staples need "
                f"|i − j| >= {MIN_STAPLE_SEPARATION} (closer pairs are held by "
                f"bonds and bending)"
            )
        if (i, j) in seen:
            raise ValueError(f"`staples` has a duplicate staple between beads {i} and {j}")
        seen.add((i, j))
        if len(s) == 4:
            k = _checks.positive("staples stiffness k", s[2], allow_zero=True)
            r0 = _checks.positive("staples rest length r0", s[3])
        else:
            k = float(k_default)
            if r0_default is not None:
                r0 = float(r0_default)
            elif native is not None:
                r0 = float(np.linalg.norm(native[j] - native[i]))
            else:
                r0 = float(bond_length)
        out.append((i, j, k, r0))
    return out


def _coil(rng, r0, min_distances, tries=100):
    x = np.zeros((len(r0) + 1, 3))
    for k, b in enumerate(r0):
        for _ in range(tries):
            d = rng.normal(size=3)
            new = x[k] + b * d / np.linalg.norm(d)
            if k < 1 or (np.linalg.norm(x[:k] - new, axis=1) >= min_distances[k + 1, :k]).all():
                break
        x[k + 1] = new
    return x
