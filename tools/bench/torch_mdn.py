#!/usr/bin/python3
"""The PyTorch reference of the benchmark: the same MDN, written as a PyTorch user would.

Float32, nn.Linear layers, torch.optim.Adam, one thread, data standardised like mdn's (training
mean and population std), shuffled every epoch. Prints one JSON object: samples per second over
the epochs after the first, and the test NLL per sample in the data's units.

    torch_mdn.py --train F --test F --hidden 32,32 --components 5 --batch 256 --lr 0.001 --epochs N
"""
import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

torch.set_num_threads(1)


def load(path):
    with h5py.File(path, "r") as f:
        x, y = f["x"][()].astype(np.float64), f["y"][()].astype(np.float64)
    return x.reshape(len(x), -1), y.reshape(len(y), -1)


class MDN(nn.Module):
    def __init__(self, d, l, k, hidden, activation):
        super().__init__()
        layers, width = [], d
        for h in hidden:
            layers += [nn.Linear(width, h), nn.Tanh() if activation == "tanh" else nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, k + 2 * k * l))
        self.net = nn.Sequential(*layers)
        self.k, self.l = k, l

    def nll(self, x, y):
        h = self.net(x)
        k, l = self.k, self.l
        log_pi = torch.log_softmax(h[:, :k], dim=1)
        mu = h[:, k:k + k * l].reshape(-1, k, l)
        sigma = nn.functional.softplus(h[:, k + k * l:].reshape(-1, k, l)) + 1e-3
        log_n = torch.distributions.Normal(mu, sigma).log_prob(y[:, None, :]).sum(-1)
        return -torch.logsumexp(log_pi + log_n, dim=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--hidden", required=True)
    ap.add_argument("--components", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--activation", default="tanh")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.manual_seed(a.seed)

    xtr, ytr = load(a.train)
    xte, yte = load(a.test)
    xm, xs = xtr.mean(0), xtr.std(0)
    ym, ys = ytr.mean(0), ytr.std(0)
    xs[xs == 0] = 1
    ys[ys == 0] = 1
    xtr_t = torch.tensor((xtr - xm) / xs, dtype=torch.float32)
    ytr_t = torch.tensor((ytr - ym) / ys, dtype=torch.float32)
    xte_t = torch.tensor((xte - xm) / xs, dtype=torch.float32)
    yte_t = torch.tensor((yte - ym) / ys, dtype=torch.float32)

    hidden = [int(h) for h in a.hidden.split(",") if h]
    model = MDN(xtr.shape[1], ytr.shape[1], a.components, hidden, a.activation)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    n = len(xtr_t)
    times = []
    for epoch in range(a.epochs):
        start = time.perf_counter()
        perm = torch.randperm(n)
        for b in range(0, n, a.batch):
            idx = perm[b:b + a.batch]
            loss = model.nll(xtr_t[idx], ytr_t[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    with torch.no_grad():
        test = model.nll(xte_t, yte_t).mean().item() + float(np.log(ys).sum())
    timed = times[1:] if len(times) > 1 else times
    print(json.dumps({"samples_per_s": n * len(timed) / sum(timed), "test_nll": test, "epochs": a.epochs,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
