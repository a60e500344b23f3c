"""A trained mdn model in Python, with numpy and h5py only (no PyTorch).

    import sys; sys.path.insert(0, "tools")
    from mdn_model import Model
    m = Model("runs/bishop/checkpoints/best.h5")
    mix = m.mixture(x)              # x (N, D): pi (N, K), mu, sigma (N, K, L) [, covariance (N, K, L, L)]
    m.log_prob(x, y)                # (N,) log p(y | x), nats, data units
    m.sample(x, 100, seed=0)        # (N, 100, L)
    m.quantiles(x, [0.05, 0.5, 0.95])  # (N, 3, L) marginal quantiles

Everything is in the data's units, for both covariance forms, as `mdn predict` and `mdn eval`
give them: the network runs in float32 like mdn's (so results agree to float rounding), the
mixture in float64. The checkpoint's checksum is not verified here (the README's `checksum_ok`
does that). Samples come from numpy's generator, not mdn's counter-based streams, so they are
draws from the same distribution, not the same numbers as `mdn sample`.
"""
import h5py
import numpy as np

_HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


def erfc(x):
    """erfc, elementwise, to about 1e-15 relative (a series below |x| = 1.5, a continued fraction above)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    out = np.empty_like(a)
    small = a < 1.5
    s = a[small]
    term, total = s.copy(), s.copy()
    for n in range(1, 80):  # erf(s) = 2/sqrt(pi) e^-s^2 sum 2^n s^(2n+1) / (2n+1)!!
        term = term * 2 * s * s / (2 * n + 1)
        total += term
    out[small] = 1 - 2 / np.sqrt(np.pi) * np.exp(-s * s) * total
    b = a[~small]
    f = b.copy()
    for n in range(400, 0, -1):  # e^-b^2 / sqrt(pi) / (b + (1/2) / (b + 1 / (b + (3/2) / ...)))
        f = b + 0.5 * n / f
    out[~small] = np.exp(-b * b) / np.sqrt(np.pi) / f
    return np.where(x < 0, 2 - out, out)


def normal_cdf(z):
    return 0.5 * erfc(-np.asarray(z) / np.sqrt(2))


def normal_pdf(z):
    z = np.asarray(z)
    return np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


class Model:
    """A checkpoint's network and mixture head."""

    def __init__(self, path):
        with h5py.File(path, "r") as f:
            m = f["model"]
            self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in m.attrs.items()}
            n = len(m["layers"])
            self.layers = [(m[f"layers/{i}/weight"][()], m[f"layers/{i}/bias"][()]) for i in range(n)]
            self.norm = None
            if "normalization" in m:
                self.norm = {k: m[f"normalization/{k}"][()] for k in ("x_mean", "x_std", "y_mean", "y_std")}
        self.D = int(self.attrs["input_dim"])
        self.L = int(self.attrs["output_dim"])
        self.K = int(self.attrs["components"])
        self.full = self.attrs.get("covariance", "diagonal") == "full"

    def head(self, x):
        """The head outputs (N, O) in float64, from the float32 network on normalised inputs."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.D)
        if self.norm is not None:
            x = (x - self.norm["x_mean"]) / self.norm["x_std"]
        h = x.astype(np.float32)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i + 1 < len(self.layers):
                h = np.tanh(h) if self.attrs["activation"] == "tanh" else np.maximum(h, 0)
        return h.astype(np.float64)

    def _parts(self, x):
        """logits, mu, the scale s (normalised units), the precision factor U (full) and y's scale."""
        K, L = self.K, self.L
        h = self.head(x)
        mu = h[:, K:K + K * L].reshape(-1, K, L)
        raw = h[:, K + K * L:K + 2 * K * L].reshape(-1, K, L)
        if self.attrs["sigma"] == "softplus":
            s = np.maximum(raw, 0) + np.log1p(np.exp(-np.abs(raw)))
        else:
            s = np.exp(raw)
        s = s + float(self.attrs["sigma_min"])
        U = None
        if self.full:
            U = np.zeros(s.shape + (L,))
            idx = np.arange(L)
            U[:, :, idx, idx] = 1 / s
            i, j = np.triu_indices(L, 1)
            U[:, :, i, j] = h[:, K + 2 * K * L:].reshape(-1, K, len(i))
        y_std = self.norm["y_std"] if self.norm is not None else np.ones(L)
        y_mean = self.norm["y_mean"] if self.norm is not None else np.zeros(L)
        return h[:, :K], mu * y_std + y_mean, s, U, y_std

    def mixture(self, x):
        """pi (N, K), mu and sigma (N, K, L), and for full covariance covariance (N, K, L, L)."""
        logits, mu, s, U, y_std = self._parts(x)
        pi = np.exp(logits - logits.max(axis=1, keepdims=True))
        out = {"pi": pi / pi.sum(axis=1, keepdims=True), "mu": mu}
        if self.full:
            T = np.linalg.inv(U) * y_std[:, None]  # S_y U^-1: covariance T T^T in data units
            out["covariance"] = T @ np.swapaxes(T, -1, -2)
            out["sigma"] = np.sqrt(np.einsum("nkii->nki", out["covariance"]))
        else:
            out["sigma"] = s * y_std
        return out

    def log_prob(self, x, y):
        """log p(y | x) per row, nats, data units."""
        logits, mu, s, U, y_std = self._parts(x)
        y = np.asarray(y, dtype=np.float64).reshape(-1, self.L)
        r = y[:, None, :] - mu                                    # (N, K, L)
        if self.full:
            v = np.einsum("nkij,nkj->nki", U / y_std, r)            # the factor in data units: U S_y^-1
            log_n = -0.5 * (v * v).sum(-1) - np.log(s * y_std).sum(-1)
        else:
            z = r / (s * y_std)
            log_n = -0.5 * (z * z).sum(-1) - np.log(s * y_std).sum(-1)
        log_n = log_n - self.L * _HALF_LOG_2PI
        log_pi = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        return np.logaddexp.reduce(log_pi + log_n, axis=1)

    def sample(self, x, n, seed=0):
        """(N, n, L) draws from each row's mixture."""
        mix = self.mixture(x)
        rng = np.random.default_rng(seed)
        N = mix["pi"].shape[0]
        u = rng.uniform(size=(N, n, 1))
        k = (u > np.cumsum(mix["pi"], axis=1)[:, None, :]).sum(-1)           # (N, n)
        k = np.minimum(k, self.K - 1)
        rows = np.arange(N)[:, None]
        z = rng.normal(size=(N, n, self.L))
        if self.full:
            C = np.linalg.cholesky(mix["covariance"])                           # (N, K, L, L)
            return mix["mu"][rows, k] + np.einsum("nsij,nsj->nsi", C[rows, k], z)
        return mix["mu"][rows, k] + mix["sigma"][rows, k] * z

    def quantiles(self, x, levels, tol=1e-9):
        """(N, Q, L) marginal quantiles of each output, by bisection on the mixture's CDF."""
        mix = self.mixture(x)
        pi, mu, sig = mix["pi"][:, :, None], mix["mu"], mix["sigma"]         # (N, K, 1), (N, K, L)
        out = []
        for p in levels:
            lo = (mu - 40 * sig).min(axis=1)
            hi = (mu + 40 * sig).max(axis=1)
            while np.max(hi - lo) > tol * max(1.0, np.max(np.abs(hi))):
                mid = 0.5 * (lo + hi)
                F = (pi * normal_cdf((mid[:, None, :] - mu) / sig)).sum(axis=1)
                below = F < p
                lo = np.where(below, mid, lo)
                hi = np.where(below, hi, mid)
                if np.all(hi - lo <= tol * np.maximum(1.0, np.abs(hi))):
                    break
            out.append(0.5 * (lo + hi))
        return np.stack(out, axis=1)
