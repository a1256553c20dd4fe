"""Benchmark: one UDE gradient step (forward solve + adjoint), soiljax vs torchdiffeq.

The problem is case 4 of the paper: Nz = 30 nodes, 50 years, 51 saved profiles, the
plain loss (terminal MSE + collocation MSE + weight decay), networks (32, 16, GELU),
``rtol = atol = 1e-5``, float64.  For each diffrax adjoint the script reports the
compile time and the median wall time of a jitted ``value_and_grad``.

Baseline (optional; skipped with a message when torch or torchdiffeq is missing): the
same loss in PyTorch with torchdiffeq ``dopri5`` (the Dormand-Prince 5(4) pair; torchdiffeq
has no Tsitouras pair), the same network weights, drivers and tolerances, with gradients
by backpropagation through the solver and by torchdiffeq's continuous adjoint.

``--suite`` also times the six cases without grid search (the CLI's default settings).

Run:  python benchmarks/ude.py [--repeats 20] [--suite]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import soiljax  # noqa: F401  (float64)
from soiljax.ude import (
    CASES,
    INPUT_CENTRE,
    INPUT_SCALE,
    LossWeights,
    SolveOptions,
    build_problem,
    initial_estimate,
    make_synthetic,
    plain_loss,
    predict,
)


def _timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_jax(problem, est, weights, adjoint, repeats):
    opts = SolveOptions(1e-5, 1e-5, adjoint=adjoint)
    params, static = eqx.partition(est, eqx.is_inexact_array)

    @eqx.filter_jit
    def step(p):
        return jax.value_and_grad(lambda q: plain_loss(eqx.combine(q, static), problem,
                                                       weights, opts))(p)

    t0 = time.perf_counter()
    jax.block_until_ready(step(params))
    compile_s = time.perf_counter() - t0
    per_step = _timed(lambda: jax.block_until_ready(step(params)), repeats)
    loss = float(step(params)[0])
    return compile_s, per_step, loss


def bench_torch(problem, est, weights, repeats):
    """The same loss in torch + torchdiffeq; returns rows or None when unavailable."""
    try:
        import torch
        import torchdiffeq
    except ImportError as err:
        print(f"torch baseline skipped ({err}); install with "
              "`pip install torch torchdiffeq` to compare")
        return None
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    reactions = est.model.reactions

    def act(x):  # jax.nn.gelu defaults to the tanh approximation
        return torch.nn.functional.gelu(x, approximate="tanh")

    def to_torch(layer):
        lin = torch.nn.Linear(layer.in_features, layer.out_features)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(layer.weight)))
            lin.bias.copy_(torch.from_numpy(np.array(layer.bias)))
        return lin

    class Net(torch.nn.Module):
        def __init__(self, rate_net):
            super().__init__()
            self.l1, self.l2, self.l3 = (to_torch(x) for x in rate_net.layers)
            self.scale = rate_net.out_scale

        def forward(self, x):
            x = (x - centre) / spread
            x = act(self.l2(act(self.l1(x))))
            return self.scale * torch.nn.functional.softplus(self.l3(x))[..., 0]

    centre = torch.tensor(INPUT_CENTRE)
    spread = torch.tensor(INPUT_SCALE)
    z = torch.from_numpy(np.array(problem.drivers.z))
    dz = float(z[1] - z[0])
    d_coef, v_coef = (float(x) for x in est.model.coefficients)

    class UDE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = Net(reactions.production)
            self.r = Net(reactions.respiration)
            self.nfe = 0

        def forward(self, t, c):
            self.nfe += 1
            ph = 6.5 - 0.5 * z + 0.10 * torch.sin(2 * torch.pi * t)
            cec = 0.5 + 0.1 * torch.sin(2 * torch.pi * z) + 0.05 * torch.cos(2 * torch.pi * t / 5)
            clay = 25.0 + 5.0 * torch.cos(2 * torch.pi * z) + 0.5 * torch.sin(2 * torch.pi * t / 10)
            x = torch.stack([ph, c, cec, clay, z, t.expand_as(z)], dim=-1)
            padded = torch.cat([c[1:2], c, c[-2:-1]])
            c_zz = (padded[2:] - 2 * c + padded[:-2]) / dz**2
            c_z = (padded[2:] - padded[:-2]) / (2 * dz)
            return d_coef * c_zz - v_coef * c_z + self.p(x) - self.r(x)

    model = UDE()
    ts = torch.from_numpy(np.array(problem.ts))
    obs = torch.from_numpy(np.array(problem.c_obs))
    c0 = torch.from_numpy(np.array(problem.c0))
    mask = torch.from_numpy(np.array(problem.data_mask)).clone()
    mask[-1] = 0.0
    params = [p for p in model.parameters()]
    n_par = sum(p.numel() for p in params)

    def loss_fn(odeint):
        ys = odeint(model, c0, ts, rtol=1e-5, atol=1e-5, method="dopri5")
        sq = (ys - obs) ** 2
        term = sq[-1].mean()
        coll = (mask * sq.mean(dim=1)).sum() / mask.sum()
        wd = sum((p**2).sum() for p in params) / n_par
        return weights.term * term + weights.coll * coll + weights.wd * wd

    rows = []
    for name, odeint, kwargs in [
        ("torchdiffeq backprop", torchdiffeq.odeint, {}),
        ("torchdiffeq adjoint", torchdiffeq.odeint_adjoint, {}),
    ]:
        def step():
            model.zero_grad()
            loss = loss_fn(odeint)
            loss.backward()
            return float(loss.detach())

        loss = step()
        model.nfe = 0
        per_step = _timed(step, max(3, repeats // 4))
        nfe = model.nfe / max(3, repeats // 4)
        rows.append((name, per_step, loss, nfe))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--suite", action="store_true",
                        help="also time the six cases (no grid search)")
    args = parser.parse_args(argv)

    cfg = CASES[4]
    data = make_synthetic(cfg.noise)
    problem = build_problem(cfg, data)
    est = initial_estimate(jax.random.key(0), problem, cfg.h1, cfg.h2, cfg.activation)
    weights = LossWeights(cfg.weights.term, cfg.weights.coll, cfg.weights.wd)
    _, ok = predict(est, problem)
    print(f"machine: {platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"devices {jax.devices()}")
    print("problem: case 4, Nz = 30, 50 yr, 51 saved profiles, rtol = atol = 1e-5, float64")
    print()
    print(f"{'method':<28}{'compile s':>10}{'step ms':>10}{'loss':>14}")
    jax_rows = {}
    for adjoint in ("recursive", "direct", "backsolve"):
        compile_s, per_step, loss = bench_jax(problem, est, weights, adjoint, args.repeats)
        jax_rows[adjoint] = per_step
        print(f"{'soiljax ' + adjoint:<28}{compile_s:>10.1f}{per_step * 1e3:>10.2f}"
              f"{loss:>14.6e}", flush=True)
    torch_rows = bench_torch(problem, est, weights, args.repeats)
    if torch_rows:
        for name, per_step, loss, nfe in torch_rows:
            print(f"{name:<28}{'-':>10}{per_step * 1e3:>10.2f}{loss:>14.6e}"
                  f"   ({nfe:.0f} f-evals/step)")
        best_torch = min(r[1] for r in torch_rows)
        print()
        print(f"speed-up of soiljax (recursive) over the faster torchdiffeq gradient: "
              f"{best_torch / jax_rows['recursive']:.1f}x")
    if args.suite:
        from soiljax.ude import run_case
        import tempfile

        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            for case in CASES:
                m = run_case(case, f"{tmp}/case{case}", progress=False)
                print(f"case {case}: r2_clean {m['r2_clean']:.6f} "
                      f"({m['wall_time_s']:.0f} s)", flush=True)
        print(f"six-case suite without grid search: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
