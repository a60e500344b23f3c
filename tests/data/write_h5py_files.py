#!/usr/bin/python3
"""Writes the same rows twice with h5py, as a third-party writer would:
f32.h5   x float32 (N, 3) contiguous,        y float32 (N, 1) contiguous
f64gz.h5 x float64 (N, 3) chunked and gzip,  y float64 (N,)  1-D, chunked and gzip
part-a.h5, part-b.h5, part-c.h5: the same rows split in three files of different lengths (about
         45%, 30% and 25%): float32 contiguous; float64 chunked and gzip; float32 chunked
Values are float32-representable, so all files hold exactly the same numbers.

    write_h5py_files.py DIR N
"""
import sys

import h5py
import numpy as np

out, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(7)
x = rng.normal(size=(n, 3)).astype(np.float32)
x[:, 2] = np.arange(n, dtype=np.float32)
y = (x[:, 0] * 2 - x[:, 1]).astype(np.float32)
with h5py.File(f"{out}/f32.h5", "w") as f:
    f.create_dataset("x", data=x)
    f.create_dataset("y", data=y.reshape(-1, 1))
with h5py.File(f"{out}/f64gz.h5", "w") as f:
    f.create_dataset("inputs", data=x.astype(np.float64), chunks=(37, 3), compression="gzip")
    f.create_dataset("target", data=y.astype(np.float64), chunks=(53,), compression="gzip",
                     compression_opts=6)
a, b = n * 45 // 100, n * 75 // 100
with h5py.File(f"{out}/part-a.h5", "w") as f:
    f.create_dataset("x", data=x[:a])
    f.create_dataset("y", data=y[:a].reshape(-1, 1))
with h5py.File(f"{out}/part-b.h5", "w") as f:
    f.create_dataset("x", data=x[a:b].astype(np.float64), chunks=(29, 3), compression="gzip")
    f.create_dataset("y", data=y[a:b].astype(np.float64).reshape(-1, 1), chunks=(41, 1), compression="gzip")
with h5py.File(f"{out}/part-c.h5", "w") as f:
    f.create_dataset("x", data=x[b:], chunks=(64, 3))
    f.create_dataset("y", data=y[b:].reshape(-1, 1), chunks=(64, 1))
