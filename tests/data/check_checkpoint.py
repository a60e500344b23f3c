#!/usr/bin/python3
"""Reads an mdn checkpoint the way the README tells users to, with the README's own code.

    check_checkpoint.py README.md CHECKPOINT DATA.h5

Runs the README's `checksum_ok` and PyTorch `load_mdn`/`mdn_nll` snippets, checks dtypes, shapes
and attributes with h5py, and prints one JSON object: checksum, the NLL of DATA.h5, and what failed.
"""
import json
import re
import sys

import h5py
import numpy as np
import torch

readme, path, data = sys.argv[1:4]
blocks = re.findall(r"```python\n(.*?)```", open(readme).read(), re.S)
namespace = {}
for code in blocks:
    if "def checksum_ok" in code or "def load_mdn" in code:
        exec(code, namespace)
problems = []
if "checksum_ok" not in namespace or "load_mdn" not in namespace:
    problems.append("README snippets not found")

with h5py.File(path, "r") as f:
    for key in ("format", "format_version", "step", "epoch", "samples_seen", "world_size", "config",
                "best_valid_nll", "checksum", "checksum_algorithm"):
        if key not in f.attrs:
            problems.append(f"root attribute {key} missing")
    if f.attrs.get("format") != "mdn-checkpoint":
        problems.append("format attribute")
    m = f["model"]
    D, L, K = int(m.attrs["input_dim"]), int(m.attrs["output_dim"]), int(m.attrs["components"])
    off = L * (L - 1) // 2 if m.attrs.get("covariance", "diagonal") == "full" else 0
    widths = [D] + [int(w) for w in m.attrs["hidden"]] + [K * (1 + 2 * L + off)]
    if len(m["layers"]) != len(widths) - 1:
        problems.append("layer count")
    for i in range(len(widths) - 1):
        w, b = m[f"layers/{i}/weight"], m[f"layers/{i}/bias"]
        if w.dtype != np.float32 or b.dtype != np.float32:
            problems.append(f"layer {i} dtype {w.dtype}")
        if w.shape != (widths[i + 1], widths[i]) or b.shape != (widths[i + 1],):
            problems.append(f"layer {i} shape {w.shape} {b.shape}")
    for name in f["optimizer"]:
        if f[f"optimizer/{name}/layers/0/weight"].shape != m["layers/0/weight"].shape:
            problems.append(f"optimizer state {name} shape")

with h5py.File(data, "r") as d:
    x = torch.from_numpy(d["x"][()]).double()
    y = torch.from_numpy(d["y"][()]).double()
net, attrs, norm = namespace["load_mdn"](path)
nll = namespace["mdn_nll"](net, attrs, norm, x.reshape(len(x), -1), y.reshape(len(y), -1))
print(json.dumps({"checksum_ok": bool(namespace["checksum_ok"](path)), "nll": nll, "problems": problems}))
