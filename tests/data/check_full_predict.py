#!/usr/bin/python3
"""Checks `mdn predict` and `mdn sample` of a full-covariance model with an independent computation.

    check_full_predict.py PREDICT.h5 DATA.h5 [SAMPLES.h5]

From predict's pi, mu and covariance alone, torch.distributions (MultivariateNormal inside
MixtureSameFamily, float64) gives the mean NLL of DATA's y, to compare with `mdn eval`; predict's
sigma, mean, variance and covariance_total are recomputed from pi, mu and covariance; and the
samples' mean and covariance per row (when given) are compared with predict's mean and
covariance_total.
Prints one JSON object:
  nll            the mean NLL through torch.distributions
  consistency    the largest relative disagreement among predict's own datasets
  sample_z       the largest |sample mean - mean| in standard errors, over rows and outputs
  sample_cov     the median relative Frobenius error of the sample covariances
"""
import json
import sys

import h5py
import numpy as np
import torch

pred, data = sys.argv[1:3]
samp = sys.argv[3] if len(sys.argv) > 3 else None
with h5py.File(pred, "r") as f:
    p = {k: f[k][()] for k in f}
with h5py.File(data, "r") as d:
    y = d["y"][()].astype(np.float64)
pi, mu, cov = (torch.from_numpy(p[k]) for k in ("pi", "mu", "covariance"))
D = torch.distributions
mix = D.MixtureSameFamily(D.Categorical(probs=pi), D.MultivariateNormal(mu, covariance_matrix=cov))
nll = -mix.log_prob(torch.from_numpy(y)).mean().item()

mean = np.einsum("nk,nkl->nl", p["pi"], p["mu"])
d = p["mu"] - mean[:, None, :]
total = np.einsum("nk,nkij->nij", p["pi"], p["covariance"] + d[..., :, None] * d[..., None, :])
sigma = np.sqrt(np.einsum("nkii->nki", p["covariance"]))
def rel(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12 + np.abs(b).max() * 1e-9)))
consistency = max(rel(p["mean"], mean), rel(p["covariance_total"], total), rel(p["sigma"], sigma),
                  rel(p["variance"], np.einsum("nii->ni", total)))

out = {"nll": nll, "consistency": consistency}
if samp is not None:
    with h5py.File(samp, "r") as f:
        s = f["samples"][()]
    S = s.shape[1]
    z = np.abs(s.mean(axis=1) - p["mean"]) / np.sqrt(np.einsum("nii->ni", p["covariance_total"]) / S)
    c = s - s.mean(axis=1, keepdims=True)
    covs = np.einsum("nsi,nsj->nij", c, c) / (S - 1)
    err = np.linalg.norm(covs - p["covariance_total"], axis=(1, 2)) / np.linalg.norm(p["covariance_total"], axis=(1, 2))
    out.update({"sample_z": float(z.max()), "sample_cov": float(np.median(err))})
print(json.dumps(out))
