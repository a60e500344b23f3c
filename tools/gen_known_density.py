#!/usr/bin/python3
"""A dataset drawn from a known conditional mixture, so the best achievable NLL is known.

For x ~ U(-1, 1)^D, y | x follows a mixture of K diagonal Gaussians whose weights, means and scales
all vary smoothly with x (component k, angle t_k = 2 pi k / K):
    logits   a_k(x)    = 1.5 sin(t_k + pi x_0) + 0.5 cos(t_k) x_1
    means    mu_kl(x)  = 2 cos(t_k + l pi / 2 + 0.8 x_0) + 0.5 x_{(l+1) mod D}
    scales   s_kl(x)   = 0.12 + 0.08 (1 + sin(t_k + l + 1.5 x_{l mod D}))
With --covariance full the components are correlated, and their correlations move with x: the
covariance of component k is C C^T with C lower triangular,
    C_ll(x)  = s_kl(x)
    C_lj(x)  = 0.35 sin(t_k + l + 2 j + 1.2 x_0)     (j < l)
so that correlations up to about 0.9 change sign across the input space.
Datasets: x (N, D), y (N, L) float32, and logp_true (N,) float64, log p(y | x) under the true
mixture (evaluated in log space at the float32 values written), so -mean(logp_true) is the NLL of
the true model: no model can do better on average. The true mixture of every row, float64, for
tests of calibration: pi_true (N, K), mu_true (N, K, L), sigma_true (N, K, L) (the square roots of
the covariances' diagonals) and, with --covariance full, covariance_true (N, K, L, L).

    tools/gen_known_density.py OUT.h5 [--rows N] [--inputs D] [--outputs L] [--components K] [--seed S]
                                      [--covariance diagonal|full]
"""
import argparse

import h5py
import numpy as np


def mixture(x, L, K):
    D = x.shape[1]
    t = 2 * np.pi * np.arange(K) / K                                      # (K,)
    logits = 1.5 * np.sin(t[None, :] + np.pi * x[:, :1]) + 0.5 * np.cos(t)[None, :] * x[:, 1:2]
    l = np.arange(L)
    mu = 2 * np.cos(t[None, :, None] + l[None, None, :] * np.pi / 2 + 0.8 * x[:, None, :1]) \
        + 0.5 * x[:, (l + 1) % D][:, None, :]                             # (N, K, L)
    s = 0.12 + 0.08 * (1 + np.sin(t[None, :, None] + l[None, None, :] + 1.5 * x[:, l % D][:, None, :]))
    return logits, mu, s


def factor(x, s, K, L, full):
    """The components' lower Cholesky factors C (N, K, L, L) of the covariance."""
    c = np.zeros(s.shape + (L,))
    idx = np.arange(L)
    c[:, :, idx, idx] = s
    if full:
        t = 2 * np.pi * np.arange(K) / K
        for l in range(L):
            for j in range(l):
                c[:, :, l, j] = 0.35 * np.sin(t[None, :] + l + 2 * j + 1.2 * x[:, :1])
    return c


def log_density(x, y, L, K, full):
    x = x.astype(np.float64)
    logits, mu, s = mixture(x, L, K)
    logpi = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    c = factor(x, s, K, L, full)
    r = y.astype(np.float64)[:, None, :] - mu                             # (N, K, L)
    w = np.linalg.solve(c, r[..., None])[..., 0]                          # C w = r
    lognorm = -0.5 * (w * w).sum(axis=2) - np.log(s).sum(axis=2) - 0.5 * L * np.log(2 * np.pi)
    return np.logaddexp.reduce(logpi + lognorm, axis=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--inputs", type=int, default=2, help="D >= 2 (default 2)")
    ap.add_argument("--outputs", type=int, default=2, help="L >= 2 (default 2)")
    ap.add_argument("--components", type=int, default=3, help="K >= 3 (default 3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--covariance", choices=["diagonal", "full"], default="diagonal")
    a = ap.parse_args()
    full = a.covariance == "full"
    if a.rows < 1 or a.inputs < 2 or a.outputs < 2 or a.components < 3:
        ap.error("need --rows >= 1, --inputs >= 2, --outputs >= 2, --components >= 3")
    rng = np.random.default_rng(a.seed)
    x = rng.uniform(-1, 1, size=(a.rows, a.inputs))
    logits, mu, s = mixture(x, a.outputs, a.components)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    k = (rng.uniform(size=(a.rows, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    rows = np.arange(a.rows)
    z = rng.normal(size=(a.rows, a.outputs))
    if full:
        y = mu[rows, k] + np.einsum("nij,nj->ni", factor(x, s, a.components, a.outputs, True)[rows, k], z)
    else:
        y = mu[rows, k] + s[rows, k] * z
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    logp = log_density(x32, y32, a.outputs, a.components, full)
    with h5py.File(a.out, "w") as f:
        f.create_dataset("x", data=x32)
        f.create_dataset("y", data=y32)
        f.create_dataset("logp_true", data=logp)
        logits32, mu32, s32 = mixture(x32.astype(np.float64), a.outputs, a.components)
        f.create_dataset("pi_true", data=np.exp(logits32 - np.logaddexp.reduce(logits32, axis=1, keepdims=True)))
        f.create_dataset("mu_true", data=mu32)
        c = factor(x32.astype(np.float64), s32, a.components, a.outputs, full)
        cov = c @ np.swapaxes(c, -1, -2)
        f.create_dataset("sigma_true", data=np.sqrt(np.einsum("nkii->nki", cov)))
        if full:
            f.create_dataset("covariance_true", data=cov)
        f.attrs["generator"] = "known_density"
        f.attrs["components"] = a.components
        f.attrs["seed"] = a.seed
        f.attrs["covariance"] = a.covariance
        f.attrs["true_nll"] = -logp.mean()
    print(f"wrote {a.out}: {a.rows} rows, D={a.inputs}, L={a.outputs}, K={a.components}, {a.covariance} (seed {a.seed}); "
          f"NLL of the true density {-logp.mean():.4f} nats/sample")


if __name__ == "__main__":
    main()
