"""Steady-state throughput of CLM5 and COMPAS against a dense-solve baseline.

For N synthetic sites (default N = 1e3, 1e4, 1e5) this measures, in one run:

* ``clm5_forward``  : CLM5 steady states (operators + structured solve + validity flag)
* ``compas_forward``: COMPAS steady states (litter solve + closed-form soil pools)
* ``clm5_value_and_grad`` / ``compas_value_and_grad``: a per-site scalar (SOC stock
  to 1 m) and its gradient with respect to all parameters
* ``dense_baseline``: the same CLM5 model with the structured solve replaced by
  a batched dense ``jnp.linalg.solve`` of the 140 x 140 system (operators are
  built the same way; the validity flag is not computed, which favours the
  baseline)
* compile time of the batched forward call;
* ``synthetic_sites``: generating the N sites' forcing with
  :func:`soiljax.synthetic_sites` (sites per second, in NumPy; compare it with
  the solves it feeds, whose rates are in the same row).

Sites are processed in chunks of ``--chunk`` sites (one compiled program per
chunk size).  Throughput is the best of ``--repeat`` timed passes after a
warm-up.  ``--json`` prints one JSON object for the largest N with the keys
``clm5_forward_per_s``, ``compas_forward_per_s``, ``clm5_value_and_grad_per_s``,
``dense_baseline_per_s``, ``compile_s`` (plus a few more).

Run:  python benchmarks/steady_state.py [--sizes 1000 10000 100000] [--json]
"""

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import soiljax
from soiljax import CLM5, COMPAS


def _chunks(n, chunk):
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def _prepare(tree, n, chunk):
    """Device-resident chunks of the inputs (on the default device), padded to a common chunk size
    by repeating a chunk's last site (a valid input), as :func:`soiljax.batched_steady_state` does."""
    out = []
    for s, e in _chunks(n, chunk):
        idx = np.minimum(np.arange(s, s + chunk), e - 1)
        out.append(jax.device_put(jax.tree_util.tree_map(lambda a: a[idx], tree)))
    return out


def _time(fn, chunks, repeat):
    """Best wall time of ``repeat`` passes over all chunks (after one warm-up call)."""
    jax.block_until_ready(fn(*chunks[0]))
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        outs = [fn(*c) for c in chunks]
        jax.block_until_ready(outs)
        best = min(best, time.perf_counter() - t0)
    return best


def _dense_clm5(model):
    def one(u, forcing):
        ops = model.linear_operators(u, forcing)
        s = ops.system
        P, L = s.k.shape
        n = P * L
        idx = jnp.arange(L)
        m = jnp.zeros((n, n))
        m = m.at[jnp.arange(n), jnp.arange(n)].set(s.k.ravel())
        for (r, d), f in s.transfers.items():
            m = m.at[r * L + idx, d * L + idx].add(-f * s.k[d])
        for p in range(P):
            if s.transported[p]:
                m = m.at[p * L + idx, p * L + idx].add(s.diag)
                m = m.at[p * L + idx[1:], p * L + idx[:-1]].add(s.lower[1:])
                m = m.at[p * L + idx[:-1], p * L + idx[1:]].add(s.upper[:-1])
        x = jnp.linalg.solve(m, ops.inputs.ravel())
        x = jnp.maximum(x, 0.0).reshape(P, L)
        return model.observable(x)

    return jax.jit(jax.vmap(one))


def _value_and_grad(model):
    def loss(u, forcing):
        return soiljax.soc_stock(model.steady_state(u, forcing).soc, 1.0)

    return jax.jit(jax.vmap(jax.value_and_grad(loss)))


def run(sizes, chunk, repeat, dense_max_n, args_dense_chunk=32):
    clm5, compas = CLM5(), COMPAS()
    rows = []
    compile_s = {}
    for n in sizes:
        t0 = time.perf_counter()
        forcing, _ = soiljax.synthetic_sites(n, seed=1)
        synthetic_per_s = n / (time.perf_counter() - t0)
        rng = np.random.default_rng(0)
        u_clm5 = jnp.asarray(rng.uniform(0.25, 0.75, (n, clm5.n_params)))
        u_compas = jnp.asarray(rng.uniform(0.25, 0.75, (n, compas.n_params)))
        c = min(chunk, n)
        ch_clm5 = _prepare((u_clm5, forcing), n, c)
        ch_compas = _prepare((u_compas, forcing), n, c)
        row = {"n": n, "synthetic_sites_per_s": synthetic_per_s}
        for name, model, chunks in (("clm5", clm5, ch_clm5), ("compas", compas, ch_compas)):
            fwd = jax.jit(jax.vmap(model.steady_state))
            t0 = time.perf_counter()
            fwd.lower(*chunks[0]).compile()
            compile_s[name] = time.perf_counter() - t0
            row[f"{name}_forward_per_s"] = n / _time(fwd, chunks, repeat)
            row[f"{name}_value_and_grad_per_s"] = n / _time(_value_and_grad(model), chunks, repeat)
        if n <= dense_max_n:
            dense = _dense_clm5(clm5)
            dc = min(c, args_dense_chunk)  # the dense matrices take 160 kB per site
            ch_dense = ch_clm5 if dc == c else _prepare((u_clm5, forcing), n, dc)
            row["dense_baseline_per_s"] = n / _time(dense, ch_dense, max(1, repeat - 1))
        else:
            row["dense_baseline_per_s"] = float("nan")
        row["speedup_vs_dense"] = row["clm5_forward_per_s"] / row["dense_baseline_per_s"]
        rows.append(row)
        print(
            f"  N={n:>7}: CLM5 {row['clm5_forward_per_s']:>10,.0f}/s  COMPAS {row['compas_forward_per_s']:>10,.0f}/s  "
            f"CLM5 v+g {row['clm5_value_and_grad_per_s']:>9,.0f}/s  dense {row['dense_baseline_per_s']:>8,.0f}/s  "
            f"forcing generated {row['synthetic_sites_per_s']:>9,.0f}/s",
            file=sys.stderr,
            flush=True,
        )
    return rows, compile_s


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    p.add_argument("--chunk", type=int, default=512, help="sites per compiled call (default 512)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--dense-chunk", type=int, default=32, help="sites per call of the dense baseline (default 32, its fastest)")
    p.add_argument("--dense-max-n", type=int, default=100_000, help="skip the dense baseline above this N")
    p.add_argument("--json", action="store_true", help="print one JSON object for the largest N")
    args = p.parse_args(argv)

    print(
        f"soiljax {soiljax.__version__}, jax {jax.__version__}, backend {jax.default_backend()}, "
        f"devices {jax.devices()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, float64",
        file=sys.stderr,
    )
    rows, compile_s = run(args.sizes, args.chunk, args.repeat, args.dense_max_n, args.dense_chunk)
    last = rows[-1]
    if args.json:
        out = {
            "n": last["n"],
            "clm5_forward_per_s": last["clm5_forward_per_s"],
            "compas_forward_per_s": last["compas_forward_per_s"],
            "clm5_value_and_grad_per_s": last["clm5_value_and_grad_per_s"],
            "compas_value_and_grad_per_s": last["compas_value_and_grad_per_s"],
            "dense_baseline_per_s": last["dense_baseline_per_s"],
            "speedup_vs_dense": last["speedup_vs_dense"],
            "synthetic_sites_per_s": last["synthetic_sites_per_s"],
            "compile_s": max(compile_s.values()),
            "compile_s_clm5": compile_s["clm5"],
            "compile_s_compas": compile_s["compas"],
            "backend": jax.default_backend(),
        }
        print(json.dumps(out))
        return 0
    header = ("N", "CLM5 fwd/s", "COMPAS fwd/s", "CLM5 v+g/s", "COMPAS v+g/s", "dense/s", "CLM5/dense",
              "forcing generated/s")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(
            f"| {r['n']:,} | {r['clm5_forward_per_s']:,.0f} | {r['compas_forward_per_s']:,.0f} | "
            f"{r['clm5_value_and_grad_per_s']:,.0f} | {r['compas_value_and_grad_per_s']:,.0f} | "
            f"{r['dense_baseline_per_s']:,.0f} | {r['speedup_vs_dense']:.1f}x | {r['synthetic_sites_per_s']:,.0f} |"
        )
    print(f"\ncompile time of the batched forward call: CLM5 {compile_s['clm5']:.1f} s, COMPAS {compile_s['compas']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
