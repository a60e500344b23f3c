#!/usr/bin/python3
"""tools/mdn_model.py (numpy and h5py only) against `mdn predict` and `mdn eval`.

    check_python_module.py CHECKPOINT DATA.h5 PREDICT.h5 EVAL.json

PREDICT.h5 is `mdn predict` of DATA's x with quantiles at the levels in its attribute
`quantile_levels`; EVAL.json is `mdn eval --json` of DATA. Prints one JSON object with the largest
disagreements, relative to each quantity's scale:
  nll         |mean(-log_prob) - eval's nll|
  pi, mu, sigma, covariance    max |module - predict| / max(1, |predict|)
  quantiles   max |F(q) - p| with q the module's quantile and F predict's marginal CDF (compared
              as probabilities: where the CDF is flat, between components, float rounding of the
              weights moves a quantile far)
  sample_mean the largest |mean of 4000 draws - predict's mean| in standard errors
"""
import json
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from mdn_model import Model, normal_cdf  # noqa: E402

ckpt, data, pred, ev = sys.argv[1:5]
m = Model(ckpt)
with h5py.File(data, "r") as d:
    x, y = d["x"][()], d["y"][()]
with h5py.File(pred, "r") as f:
    p = {k: f[k][()] for k in f}
    levels = [float(v) for v in f.attrs["quantile_levels"].split(",")]
e = json.load(open(ev))


def rel(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))))


mix = m.mixture(x)
out = {"nll": abs(float(-m.log_prob(x, y).mean()) - e["nll"])}
for k in ("pi", "mu", "sigma", "covariance"):
    if k in p:
        out[k] = rel(mix[k], p[k])
q = m.quantiles(x, levels)                                                        # (N, Q, L)
F = (p["pi"][:, None, :, None] * normal_cdf((q[:, :, None, :] - p["mu"][:, None]) / p["sigma"][:, None])).sum(axis=2)
out["quantiles"] = float(np.max(np.abs(F - np.asarray(levels)[None, :, None])))
rows = slice(0, 20)
s = m.sample(x[rows], 4000, seed=1)
se = np.sqrt(p["variance"][rows] / 4000)
out["sample_mean"] = float(np.max(np.abs(s.mean(axis=1) - p["mean"][rows]) / se))
print(json.dumps(out))
