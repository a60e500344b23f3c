#!/usr/bin/python3
"""Replays mdn's training steps in PyTorch, as a second implementation of the whole step.

    torch_steps.py README.md FROM.h5 TO.h5 TRAIN.h5 --optimizer adam|adamw|sgd --lr LR
                   [--weight-decay W] [--momentum M] [--nesterov] [--clip C]

FROM and TO are two checkpoints of one full-batch run (batch_size = the training rows, so the
order of rows does not matter). Starting from FROM's parameters and optimizer state (loaded with
the README's `load_mdn`), the steps up to TO are taken in float64 with torch.autograd,
torch.nn.utils.clip_grad_norm_ and torch.optim, on the mean NLL of the normalised training data.
Prints one JSON object:
  err        ||p_torch - p_mdn|| / ||p_torch - p_from||  (the disagreement, relative to the change)
  err_short  the same with one step fewer in PyTorch     (what a one-step mistake looks like)
  norms      the global gradient norm of every step, before clipping
"""
import argparse
import json
import re

import h5py
import numpy as np
import torch

ap = argparse.ArgumentParser()
ap.add_argument("readme")
ap.add_argument("start")
ap.add_argument("end")
ap.add_argument("train")
ap.add_argument("--optimizer", required=True)
ap.add_argument("--lr", type=float, required=True)
ap.add_argument("--weight-decay", type=float, default=0.0)
ap.add_argument("--momentum", type=float, default=0.0)
ap.add_argument("--nesterov", action="store_true")
ap.add_argument("--clip", type=float)
a = ap.parse_args()

namespace = {}
for code in re.findall(r"```python\n(.*?)```", open(a.readme).read(), re.S):
    if "def load_mdn" in code:
        exec(code, namespace)
torch.set_default_dtype(torch.float64)


def flat(net):
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def replay(steps):
    net, attrs, norm = namespace["load_mdn"](a.start)
    net = net.double()
    K, L = int(attrs["components"]), int(attrs["output_dim"])
    weights = [p for n, p in net.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in net.named_parameters() if n.endswith("bias")]
    if a.optimizer == "sgd":
        opt = torch.optim.SGD([{"params": weights, "weight_decay": a.weight_decay}, {"params": biases}],
                              lr=a.lr, momentum=a.momentum, nesterov=a.nesterov)
    else:
        kind = torch.optim.Adam if a.optimizer == "adam" else torch.optim.AdamW
        opt = kind([{"params": weights, "weight_decay": a.weight_decay}, {"params": biases, "weight_decay": 0.0}],
                   lr=a.lr)
    # The optimizer state of FROM, parameter by parameter (nn.Sequential puts activations between
    # the Linear layers, so the layer index of a parameter is its position among the Linears).
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    with h5py.File(a.start, "r") as f:
        o = f["optimizer"]
        for i, lin in enumerate(linears):
            for kind_name, p in (("weight", lin.weight), ("bias", lin.bias)):
                st = {name: torch.from_numpy(o[f"{name}/layers/{i}/{kind_name}"][()]).double() for name in o}
                if a.optimizer == "sgd":
                    if "momentum" in st:
                        opt.state[p] = {"momentum_buffer": st["momentum"]}
                else:
                    opt.state[p] = {"step": torch.tensor(float(o.attrs["step"])), "exp_avg": st["exp_avg"],
                                    "exp_avg_sq": st["exp_avg_sq"]}
    with h5py.File(a.train, "r") as d:
        x = torch.from_numpy(d["x"][()]).double().reshape(-1, int(attrs["input_dim"]))
        y = torch.from_numpy(d["y"][()]).double().reshape(-1, L)
    if norm is not None:
        x = (x - norm["x_mean"]) / norm["x_std"]
        y = (y - norm["y_mean"]) / norm["y_std"]
    norms = []
    for _ in range(steps):
        h = net(x)
        mu = h[:, K:K + K * L].reshape(-1, K, L)
        raw = h[:, K + K * L:K + 2 * K * L].reshape(-1, K, L)
        f = torch.nn.functional.softplus(raw) if attrs["sigma"] == "softplus" else torch.exp(raw)
        s = f + float(attrs["sigma_min"])
        if attrs.get("covariance", "diagonal") == "full":
            # The precision's factor U: 1 / s on the diagonal, the off-diagonals row by row.
            i, j = torch.triu_indices(L, L, 1)
            U = torch.diag_embed(1 / s)
            U[..., i, j] = h[:, K + 2 * K * L:].reshape(-1, K, len(i))
            comp = torch.distributions.MultivariateNormal(mu, precision_matrix=U.transpose(-1, -2) @ U)
            log_n = comp.log_prob(y[:, None, :])
        else:
            log_n = torch.distributions.Normal(mu, s).log_prob(y[:, None, :]).sum(-1)
        loss = -torch.logsumexp(torch.log_softmax(h[:, :K], -1) + log_n, -1).mean()
        opt.zero_grad()
        loss.backward()
        norms.append(float(torch.sqrt(sum((p.grad ** 2).sum() for p in net.parameters()))))
        if a.clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), a.clip)
        opt.step()
    return flat(net), norms


with h5py.File(a.start, "r") as f0, h5py.File(a.end, "r") as f1:
    steps = int(f1.attrs["step"]) - int(f0.attrs["step"])
start, _ = replay(0)
net_end, _, _ = namespace["load_mdn"](a.end)
end_mdn = flat(net_end.double())
full, norms = replay(steps)
short, _ = replay(steps - 1)
change = float(torch.linalg.norm(full - start))
print(json.dumps({"steps": steps, "err": float(torch.linalg.norm(full - end_mdn)) / change,
                  "err_short": float(torch.linalg.norm(short - end_mdn)) / change, "norms": norms}))
