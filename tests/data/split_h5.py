#!/usr/bin/python3
"""Splits the rows of an mdn data file (datasets x and y) over three files of different lengths
and storage, as a user's data pipeline might write them:
part-a.h5  the first 45%, float32, contiguous
part-b.h5  the next 30%, float64, chunked and gzip
part-c.h5  the rest, float32, chunked
The values are the same numbers (float32 holds them exactly).

    split_h5.py SOURCE.h5 OUTDIR
"""
import sys

import h5py
import numpy as np

src, out = sys.argv[1:3]
with h5py.File(src, "r") as f:
    x, y = np.asarray(f["x"]), np.asarray(f["y"])
n = x.shape[0]
a, b = n * 45 // 100, n * 75 // 100
with h5py.File(f"{out}/part-a.h5", "w") as f:
    f["x"], f["y"] = x[:a], y[:a]
with h5py.File(f"{out}/part-b.h5", "w") as f:
    f.create_dataset("x", data=x[a:b].astype(np.float64), chunks=(31, x.shape[1]), compression="gzip")
    f.create_dataset("y", data=y[a:b].astype(np.float64), chunks=(31, y.shape[1]), compression="gzip")
with h5py.File(f"{out}/part-c.h5", "w") as f:
    f.create_dataset("x", data=x[b:], chunks=(50, x.shape[1]))
    f.create_dataset("y", data=y[b:], chunks=(50, y.shape[1]))
