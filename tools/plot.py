#!/usr/bin/python3
"""Pictures of a run (matplotlib, to PNG).

    tools/plot.py curves METRICS.jsonl OUT.png
        training loss and validation NLL against the step
    tools/plot.py grid OUT.h5 --lo A --hi B [--n 400]
        a file of evenly spaced 1-D inputs (dataset x) to run `mdn predict` on
    tools/plot.py density PREDICT.h5 GRID.h5 TRAIN.h5 OUT.png
        for 1-D input and 1-D output: the learned p(y|x) as a heatmap, with the training points
        and the component means (drawn stronger where the component's weight is larger)
    tools/plot.py calibration EVAL.json OUT.png
        from `mdn eval --json`: the PIT histogram of every output (flat when calibrated) and the
        coverage of the central intervals and highest-density regions against their level
"""
import argparse
import json

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def curves(a):
    train, valid = [], []
    for line in open(a.metrics):
        r = json.loads(line)
        if r["kind"] == "train":
            train.append((r["step"], r["loss"]))
        elif r["kind"] == "valid":
            valid.append((r["step"], r["valid_nll"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="training loss (mean NLL since the previous record)", lw=1)
    if valid:
        ax.plot(*zip(*valid), "o-", label="validation NLL", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("nats per sample (data units)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


def grid(a):
    x = np.linspace(a.lo, a.hi, a.n).reshape(-1, 1)
    with h5py.File(a.out, "w") as f:
        f.create_dataset("x", data=x)
    print(f"wrote {a.out}: {a.n} inputs from {a.lo} to {a.hi}")


def density(a):
    with h5py.File(a.predict, "r") as p:
        pi, mu, sigma = p["pi"][()], p["mu"][()][:, :, 0], p["sigma"][()][:, :, 0]
    with h5py.File(a.grid, "r") as g:
        xg = g["x"][()].reshape(-1)
    with h5py.File(a.train, "r") as t:
        xt, yt = t["x"][()].reshape(-1), t["y"][()].reshape(-1)
    pad = 0.1 * (yt.max() - yt.min())
    yg = np.linspace(yt.min() - pad, yt.max() + pad, 400)
    z = (yg[None, None, :] - mu[:, :, None]) / sigma[:, :, None]
    dens = (pi[:, :, None] * np.exp(-0.5 * z * z) / (np.sqrt(2 * np.pi) * sigma[:, :, None])).sum(axis=1)
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.imshow(np.log(dens.T + 1e-3), origin="lower", aspect="auto", cmap="magma",
              extent=[xg[0], xg[-1], yg[0], yg[-1]])
    ax.scatter(xt, yt, s=2, c="white", alpha=0.25, lw=0, label="training points")
    labelled = False
    for k in range(pi.shape[1]):
        strong = pi[:, k] > 0.05
        if not strong.any():
            continue
        ax.scatter(xg[strong], mu[strong, k], s=4, c="cyan", alpha=np.clip(pi[strong, k], 0.1, 1),
                   lw=0, label=None if labelled else "component means (weight > 0.05)")
        labelled = True
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("learned log p(y | x)")
    ax.legend(loc="upper left", markerscale=4)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


def calibration(a):
    e = json.load(open(a.eval))
    L = len(e["pit_histogram"])
    fig, axes = plt.subplots(1, L + 1, figsize=(3.2 * (L + 1), 3.2))
    for l, ax in enumerate(axes[:L]):
        counts = np.asarray(e["pit_histogram"][l], dtype=float)
        ax.bar(np.arange(10) / 10 + 0.05, counts / counts.sum() * 10, width=0.1, edgecolor="white")
        se = np.sqrt(0.1 * 0.9 / counts.sum()) * 10  # one binomial standard error around uniform
        ax.axhspan(1 - 2 * se, 1 + 2 * se, color="gray", alpha=0.35, lw=0, zorder=3)
        ax.axhline(1, color="black", lw=0.8)
        ax.set_title(f"PIT of y[{l}] (calibration error {e['calibration_error'][l]:.3f})", fontsize=9)
        ax.set_xlabel("u = F(y)")
        ax.set_xlim(0, 1)
    axes[0].set_ylabel("density (band: uniform ± 2 s.e.)")
    ax = axes[L]
    levels = [float(k) for k in e["coverage"][0]]
    for l in range(L):
        ax.plot(levels, [e["coverage"][l][k] for k in e["coverage"][l]], "o-", ms=3, label=f"central interval, y[{l}]")
    if e.get("hdr_coverage"):
        ax.plot(levels, [e["hdr_coverage"][k] for k in e["hdr_coverage"]], "s--", ms=3, label="highest-density region (joint)")
    ax.plot([0.4, 1], [0.4, 1], color="black", lw=0.8)
    ax.set_xlabel("nominal level")
    ax.set_ylabel("observed coverage")
    ax.set_title("coverage", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("curves")
    c.add_argument("metrics")
    c.add_argument("out")
    g = sub.add_parser("grid")
    g.add_argument("out")
    g.add_argument("--lo", type=float, required=True)
    g.add_argument("--hi", type=float, required=True)
    g.add_argument("--n", type=int, default=400)
    d = sub.add_parser("density")
    d.add_argument("predict")
    d.add_argument("grid")
    d.add_argument("train")
    d.add_argument("out")
    k = sub.add_parser("calibration")
    k.add_argument("eval")
    k.add_argument("out")
    a = ap.parse_args()
    {"curves": curves, "grid": grid, "density": density, "calibration": calibration}[a.cmd](a)


if __name__ == "__main__":
    main()
