"""Structured steady-state solver for pools x layers linear carbon systems.

The steady state of dX/dt = u + A K X - V X solves N X = u with

    N = K - (A - I) K + T (x) V          (pools x layers, pool-major)

i.e. N[(p, j), (p, j)]   = k[p, j] + T_p V[j, j]
     N[(p, j), (q, j)]   = -f[p <- q, j] k[q, j]        (transfer within a layer)
     N[(p, j), (p, j+-1)] = T_p V[j, j+-1]               (transport within a pool)

where T_p is 1 for transported pools.  N is a Z-matrix whose columns, weighted
by layer thickness, sum to what the donor respires (and, with PRODA's bedrock
rule, what leaks through bedrock) -- a non-singular M-matrix whenever every pool
decays.  That gives us three things:

* Gaussian elimination without pivoting is stable in any symmetric ordering,
  so we eliminate group by group (a group is a set of pools that exchange
  carbon in both directions: {CWD}, {L1}, ... , {S1, S2, S3}) in the order in
  which carbon flows, and within a group layer by layer (block Thomas with
  g x g blocks).  No dense 140 x 140 factorisation is ever formed.
* N^-1 >= 0 elementwise, so ||N^-1||_1 = max(N^-T 1) exactly: one transposed
  solve with the factorisation we already have gives the 1-norm condition
  number that LAPACK's ``rcond`` estimates for PRODA.
* The solve is wrapped in ``jax.lax.custom_linear_solve``: derivatives come
  from the implicit function theorem (one transposed solve for a VJP), never by
  differentiating through the elimination.

All functions act on one site; ``jax.vmap`` batches them.
"""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

EPS = float(jnp.finfo(jnp.float64).eps)


class PoolSystem(eqx.Module):
    """The matrix N of a pools x layers linear system (see module docstring).

    ``transfers`` maps (recipient, donor) pool indices to the fraction of the
    donor's decomposition flux that reaches the recipient, per layer.  Groups
    (static) list the pools of each strongly connected set in flow order; a
    transfer may only go from an earlier group to a later one, or within a
    group.
    """

    k: Float[Array, "pool layer"]
    transfers: dict[tuple[int, int], Float[Array, " layer"]]
    lower: Float[Array, " layer"]
    diag: Float[Array, " layer"]
    upper: Float[Array, " layer"]
    transported: tuple[bool, ...] = eqx.field(static=True)
    groups: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    @property
    def n_pools(self) -> int:
        return self.k.shape[0]

    @property
    def n_layers(self) -> int:
        return self.k.shape[1]

    # -- N applied to a vector --------------------------------------------------
    def matvec(self, x: Float[Array, "pool layer"]) -> Float[Array, "pool layer"]:
        flux = self.k * x
        out = [flux[p] for p in range(self.n_pools)]
        for (r, d), f in self.transfers.items():
            out[r] = out[r] - f * flux[d]
        for p in range(self.n_pools):
            if self.transported[p]:
                out[p] = out[p] + _tri_matvec(self.lower, self.diag, self.upper, x[p])
        return jnp.stack(out)

    def dense(self) -> Float[Array, "n n"]:
        """N as a dense (pools*layers)^2 matrix, pool-major (for tests and baselines)."""
        n = self.n_pools * self.n_layers
        eye = jnp.eye(n).reshape(n, self.n_pools, self.n_layers)
        cols = jax.vmap(self.matvec)(eye)
        return cols.reshape(n, n).T

    def norm1(self):
        """||N||_1, the largest absolute column sum."""
        tr = jnp.abs(jnp.asarray([float(t) for t in self.transported]))[:, None]
        col = [jnp.abs(self.k[p]) for p in range(self.n_pools)]
        for (r, d), f in self.transfers.items():
            col[d] = col[d] + jnp.abs(f * self.k[d])
        col = jnp.stack(col) + tr * jnp.abs(self.diag)[None, :]
        # off-diagonal transport entries in column j: V[j-1, j] and V[j+1, j]
        offdiag = jnp.abs(jnp.concatenate([self.upper[:-1], jnp.zeros(1)]))
        offdiag = jnp.roll(offdiag, 1) + jnp.abs(jnp.concatenate([self.lower[1:], jnp.zeros(1)]))
        col = col + tr * offdiag[None, :]
        return jnp.max(col)


def _tri_matvec(lower, diag, upper, x):
    # shifts by concatenation rather than ``.at[].add``: scatters (and their
    # transposes) are slow under vmap on CPU, and this sits on the gradient path
    zero = jnp.zeros_like(x[:1])
    from_above = jnp.concatenate([zero, lower[1:] * x[:-1]])
    from_below = jnp.concatenate([upper[:-1] * x[1:], zero])
    return diag * x + from_above + from_below


# ---------------------------------------------------------------------------
# small dense blocks, kept as nested tuples of per-layer arrays so that vmapped
# code works on contiguous batch vectors
# ---------------------------------------------------------------------------


def _inv_small(m: Sequence[Sequence[Array]]):
    g = len(m)
    if g == 1:
        return ((1.0 / m[0][0],),)
    if g == 2:
        (a, b), (c, d) = m
        det = a * d - b * c
        return ((d / det, -b / det), (-c / det, a / det))
    if g == 3:
        (a, b, c), (d, e, f), (g_, h, i) = m
        A = e * i - f * h
        B = -(d * i - f * g_)
        C = d * h - e * g_
        det = a * A + b * B + c * C
        r = 1.0 / det
        return (
            (A * r, -(b * i - c * h) * r, (b * f - c * e) * r),
            (B * r, (a * i - c * g_) * r, -(a * f - c * d) * r),
            (C * r, -(a * h - b * g_) * r, (a * e - b * d) * r),
        )
    raise NotImplementedError("groups of more than 3 coupled pools are not supported")


def _matvec_small(m, v):
    return tuple(sum(m[i][j] * v[j] for j in range(len(v))) for i in range(len(m)))


def _transpose_small(m):
    g = len(m)
    return tuple(tuple(m[j][i] for j in range(g)) for i in range(g))


class _GroupFactor(eqx.Module):
    ginv: tuple  # g x g nested tuple of (layer,) arrays: G_j^{-1}
    lower: Array  # sub-diagonal multiplier per layer (0 if not transported)
    upper: Array  # super-diagonal multiplier per layer (0 if not transported)
    transported: bool = eqx.field(static=True)


class Factorisation(eqx.Module):
    """Block-LU factors of a :class:`PoolSystem`, group by group."""

    system: PoolSystem
    factors: tuple[_GroupFactor, ...]


def _factor_group(system: PoolSystem, group: tuple[int, ...]) -> _GroupFactor:
    L = system.n_layers
    transported = system.transported[group[0]]
    if any(system.transported[p] != transported for p in group):
        raise ValueError("all pools of a group must share the same transport")
    zero = jnp.zeros(L)
    lower = system.lower if transported else zero
    upper = system.upper if transported else zero
    diag = system.diag if transported else zero
    g = len(group)
    # dense g x g diagonal blocks, one entry array per (row, col)
    blocks = [[zero for _ in range(g)] for _ in range(g)]
    for a, p in enumerate(group):
        blocks[a][a] = system.k[p] + diag
    for (r, d), f in system.transfers.items():
        if r in group and d in group:
            blocks[group.index(r)][group.index(d)] = -f * system.k[d]
    blocks_t = tuple(tuple(blocks[i][j] for j in range(g)) for i in range(g))
    if not transported:
        return _GroupFactor(ginv=_inv_small(blocks_t), lower=zero, upper=zero, transported=False)

    # block Thomas: G_j = B_j - lower_j upper_{j-1} G_{j-1}^{-1}
    prod = lower * jnp.concatenate([jnp.zeros(1), upper[:-1]])

    def step(ginv_prev, xs):
        b_j, p_j = xs
        gmat = tuple(tuple(b_j[i][j] - p_j * ginv_prev[i][j] for j in range(g)) for i in range(g))
        ginv = _inv_small(gmat)
        return ginv, ginv

    init = tuple(tuple(jnp.zeros(()) for _ in range(g)) for _ in range(g))
    _, ginv = jax.lax.scan(step, init, (blocks_t, prod))
    return _GroupFactor(ginv=ginv, lower=lower, upper=upper, transported=True)


def factorise(system: PoolSystem) -> Factorisation:
    return Factorisation(system=system, factors=tuple(_factor_group(system, g) for g in system.groups))


def _solve_group(fac: _GroupFactor, rhs):
    """Solve one group's block-tridiagonal system; ``rhs`` is a g-tuple of (layer,) arrays."""
    g = len(rhs)
    ginv = fac.ginv
    if not fac.transported:
        return _matvec_small(ginv, rhs)
    # forward: w_j = G_j^{-1} (r_j - lower_j w_{j-1})
    def fwd(w_prev, xs):
        ginv_j, r_j, l_j = xs
        y = tuple(r_j[i] - l_j * w_prev[i] for i in range(g))
        w = _matvec_small(ginv_j, y)
        return w, w

    init = tuple(jnp.zeros(()) for _ in range(g))
    _, w = jax.lax.scan(fwd, init, (ginv, rhs, fac.lower))

    # backward: x_j = w_j - upper_j G_j^{-1} x_{j+1}
    def bwd(x_next, xs):
        ginv_j, w_j, u_j = xs
        t = _matvec_small(ginv_j, x_next)
        x = tuple(w_j[i] - u_j * t[i] for i in range(g))
        return x, x

    _, x = jax.lax.scan(bwd, init, (ginv, w, fac.upper), reverse=True)
    return x


def _solve_group_transpose(fac: _GroupFactor, rhs):
    """Solve G^T-system of one group: N_g^T z = rhs, using the same factors.

    N_g = L U with U_jj = G_j, U_{j,j+1} = upper_j, L_{j,j-1} = lower_j G_{j-1}^{-1};
    N_g^T = U^T L^T: forward with U^T, then backward with L^T.
    """
    g = len(rhs)
    ginv_t = _transpose_small(fac.ginv)
    if not fac.transported:
        return _matvec_small(ginv_t, rhs)
    upper_prev = jnp.concatenate([jnp.zeros(1), fac.upper[:-1]])
    lower_next = jnp.concatenate([fac.lower[1:], jnp.zeros(1)])

    def fwd(v_prev, xs):
        gt_j, r_j, up_j = xs
        y = tuple(r_j[i] - up_j * v_prev[i] for i in range(g))
        v = _matvec_small(gt_j, y)
        return v, v

    init = tuple(jnp.zeros(()) for _ in range(g))
    _, v = jax.lax.scan(fwd, init, (ginv_t, rhs, upper_prev))

    def bwd(z_next, xs):
        gt_j, v_j, lo_j = xs
        t = _matvec_small(gt_j, z_next)
        z = tuple(v_j[i] - lo_j * t[i] for i in range(g))
        return z, z

    _, z = jax.lax.scan(bwd, init, (ginv_t, v, lower_next), reverse=True)
    return z


def solve_factored(fac: Factorisation, rhs: Float[Array, "pool layer"]) -> Float[Array, "pool layer"]:
    """x with N x = rhs, eliminating the groups in flow order."""
    system = fac.system
    x = [None] * system.n_pools
    for group, gfac in zip(system.groups, fac.factors):
        r = []
        for p in group:
            rp = rhs[p]
            for (rc, d), f in system.transfers.items():
                if rc == p and d not in group:
                    rp = rp + f * system.k[d] * x[d]
            r.append(rp)
        sol = _solve_group(gfac, tuple(r))
        for p, s in zip(group, sol):
            x[p] = s
    return jnp.stack(x)


def solve_transpose_factored(fac: Factorisation, rhs: Float[Array, "pool layer"]) -> Float[Array, "pool layer"]:
    """z with N^T z = rhs, eliminating the groups against the flow."""
    system = fac.system
    z = [None] * system.n_pools
    for group, gfac in reversed(list(zip(system.groups, fac.factors))):
        r = []
        for p in group:
            rp = rhs[p]
            # N^T[(p), (q)] = N[(q), (p)] = -f[q <- p] k[p] for recipients q outside the group
            for (rc, d), f in system.transfers.items():
                if d == p and rc not in group:
                    rp = rp + f * system.k[p] * z[rc]
            r.append(rp)
        sol = _solve_group_transpose(gfac, tuple(r))
        for p, s in zip(group, sol):
            z[p] = s
    return jnp.stack(z)


def rcond(fac: Factorisation):
    """Reciprocal 1-norm condition number of N, exact for an M-matrix.

    Returns 0 when the elimination breaks down or N^-1 is not elementwise
    positive (exactly or numerically singular).
    """
    system = fac.system
    y = solve_transpose_factored(fac, jnp.ones((system.n_pools, system.n_layers)))
    ok = jnp.all(jnp.isfinite(y)) & jnp.all(y > 0)
    inv_norm = jnp.max(jnp.where(ok, y, 0.0))
    r = 1.0 / (system.norm1() * jnp.where(ok, inv_norm, 1.0))
    return jnp.where(ok & jnp.isfinite(r), r, 0.0)


def solve(system: PoolSystem, rhs: Float[Array, "pool layer"], fac: Factorisation | None = None):
    """Differentiable x = N^-1 rhs (implicit derivatives through ``custom_linear_solve``).

    The factorisation is computed once and shared by the solve and, under
    differentiation, by the transposed solve of the backward pass.
    """
    if fac is None:
        fac = factorise(system)
    fac = jax.lax.stop_gradient(fac)
    return jax.lax.custom_linear_solve(
        system.matvec,
        rhs,
        solve=lambda _mv, b: solve_factored(fac, b),
        transpose_solve=lambda _vm, b: solve_transpose_factored(fac, b),
    )
