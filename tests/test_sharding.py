"""Sites spread over several (fake) CPU devices give the same results as one device
(identical validity, states equal to the last few bits)."""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, reference_dir

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import jax
    sys.path.insert(0, {tests!r})
    import soiljax
    from conftest import reference_forcing
    assert len(jax.devices()) == 4, jax.devices()
    R = dict(np.load(os.path.join({ref!r}, "reference_A.npz")))
    f = reference_forcing(R)
    for model, key in ((soiljax.CLM5(), "u_clm5"), (soiljax.COMPAS(), "u_compas")):
        u = R[key][:, 1]
        one = soiljax.batched_steady_state(model, u, f)
        mesh = soiljax.site_mesh()
        four = soiljax.batched_steady_state(model, u, f, mesh=mesh)
        odd = soiljax.batched_steady_state(model, u[:45], f[:45], mesh=mesh, batch_size=10)
        # Same per-site arithmetic; XLA compiles one program per shard size, whose
        # vectorised loops may round the last bit differently (seen: 1.5e-14).
        np.testing.assert_array_equal(one.valid, four.valid)
        np.testing.assert_array_equal(one.valid[:45], odd.valid)
        np.testing.assert_allclose(four.state, one.state, rtol=1e-12, atol=0)
        np.testing.assert_allclose(odd.state, one.state[:45], rtol=1e-12, atol=0)
    print("ok")
    """
)


@pytest.mark.slow  # a fresh process with four host devices compiles everything anew: ~25 s
def test_four_fake_devices_match_one_device():
    ref = reference_dir()
    if not (ref / "reference_A.npz").exists():
        import pytest

        pytest.skip("reference outputs not available")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    code = SCRIPT.format(tests=str(REPO / "tests"), ref=str(ref))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("ok")


EXTEND_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import jax, jax.numpy as jnp
    sys.path.insert(0, {repo!r})
    import equinox as eqx
    from jax.sharding import NamedSharding, PartitionSpec
    import soiljax
    from soiljax import calibration as cal
    from soiljax.calibration import _run
    assert len(jax.devices()) == 2, jax.devices()

    class T(eqx.Module):  # N(0, 1) plus a narrow trap at z = 12 that a chain cannot leave
        def __call__(self, data):
            def logdensity(z):
                return jnp.logaddexp(-0.5 * jnp.sum(z**2), -40.0 - 0.5 * jnp.sum(((z - 12.0) / 0.1) ** 2))
            return logdensity

    z0 = np.zeros((2, 3, 2))
    z0[0, 2] = 12.0
    keys = jax.random.split(jax.random.PRNGKey(3), 6).reshape(2, 3, 2)
    kw = dict(warmup=100, samples=50, rescue=(), extend=1)
    sharding = NamedSharding(soiljax.site_mesh(), PartitionSpec("site"))
    z2, s2 = _run.sample_gradient(T(), cal.NUTS(), jnp.zeros(2), jnp.asarray(z0), keys, sharding=sharding, **kw)
    z1, s1 = _run.sample_gradient(T(), cal.NUTS(), jnp.zeros(2), jnp.asarray(z0), keys, **kw)
    # only site 0 fails; its extension round runs on both devices (padded to 2 sites)
    np.testing.assert_array_equal(s2["thinning"], [2, 1])
    np.testing.assert_array_equal(s1["thinning"], [2, 1])
    np.testing.assert_allclose(z2, z1, rtol=0, atol=1e-8)
    print("ok")
    """
)


@pytest.mark.slow  # a fresh process with two host devices compiles NUTS anew: ~25 s
def test_extension_rounds_on_two_fake_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    code = EXTEND_SCRIPT.format(repo=str(REPO))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("ok")
