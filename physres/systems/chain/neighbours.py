"""Verlet neighbour list with a skin (Verlet 1967), batched over chains.

The list holds every candidate pair closer than ``cutoff + skin`` when it was built, as flat
bead indices ``b·N + i`` into positions viewed as (batch·N, 3), so chains with different
conformations keep lists of different lengths and a force costs O(pairs within reach) = O(N).
It is rebuilt when any bead has moved more than ``skin/2`` since the build (then no pair can
have come from beyond ``cutoff + skin`` to within ``cutoff``), or when the batch shape, dtype
or device changes. Pairs in the list but beyond ``cutoff`` are the caller's to zero.
"""

from __future__ import annotations

import torch


class VerletList:
    """Pairs of ``candidates`` (a boolean (N, N) mask, upper triangle) within reach.

    Parameters
    ----------
    candidates : bool tensor (N, N); only ``i < j`` entries are read
    cutoff : float, the interaction range
    skin : float, > 0, the extra reach that lets the list be reused
    """

    def __init__(self, candidates: torch.Tensor, cutoff: float, skin: float):
        self.candidates = torch.triu(candidates.to(torch.bool), diagonal=1)
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.reach2 = (self.cutoff + self.skin) ** 2 * (1.0 + 1e-12)  # round-off margin
        self.builds = 0  # how many times the list was (re)built
        self._ref = self._ref_coords = None
        self.i = self.j = self.chain = None

    def pairs(
        self, x: torch.Tensor, coords: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat indices ``(i, j)`` of the listed pairs for positions ``x`` (batch, N, 3).

        ``coords``: optionally the same positions coordinates-first, (3, batch, N) or
        (3, batch·N), contiguous;
        the displacement check then runs in that layout (a few times cheaper).
        """
        x = x.detach()
        ref = self._ref
        if (
            ref is None
            or ref.shape != x.shape
            or ref.dtype != x.dtype
            or ref.device != x.device
            or self._moved(x, ref, coords)
        ):
            self._build(x)
        return self.i, self.j

    def _moved(self, x, ref, coords=None) -> bool:
        limit = 0.5 * self.skin
        if coords is not None:
            if self._ref_coords is None:
                self._ref_coords = ref.permute(2, 0, 1).reshape(3, -1)
            d = coords.detach().reshape(3, -1) - self._ref_coords
            return float((d * d).sum(0).amax()) > limit * limit
        return bool(torch.linalg.vector_norm(x - ref, dim=-1).amax() > limit)

    def _build(self, x):
        b, n, _ = x.shape
        mask = self.candidates.to(x.device)
        found = []
        chunk = max(1, 2**22 // (n * n))  # bound the (chunk, N, N) distance block
        for start in range(0, b, chunk):
            xs = x[start : start + chunk]
            xs = xs - xs.mean(1, keepdim=True)  # centred: small |x|², accurate products
            sq = (xs * xs).sum(-1)  # (chunk, N)
            # |x_i|² + |x_j|² − 2 x_i·x_j in one batched matmul; its round-off (a few ulps of
            # max |x|²) is covered by widening the reach: an extra pair is harmless
            d2 = torch.baddbmm(
                sq.unsqueeze(2) + sq.unsqueeze(1), xs, xs.transpose(1, 2), alpha=-2.0
            )
            reach2 = self.reach2 + 1e-12 * (1.0 + float(sq.amax()))
            hit = torch.nonzero((d2 < reach2) & mask)
            hit[:, 0] += start
            found.append(hit)
        hit = torch.cat(found)
        self.chain = hit[:, 0]
        self.i = hit[:, 0] * n + hit[:, 1]
        self.j = hit[:, 0] * n + hit[:, 2]
        self._ref = x.clone()
        self._ref_coords = None  # made on the first coordinates-first check
        self.builds += 1
