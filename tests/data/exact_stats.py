#!/usr/bin/python3
"""The normalisation statistics of mdn's definition, computed with exact rationals: for each column
of the datasets x and y of FILE, mean = fl(fl(sum x) / N) and std = sqrt(fl(fl(sum (x - mean)^2) / N))
(1 when that is 0), where fl() rounds to the nearest double. Prints one line per column:
"<mean as float.hex> <std as float.hex>".

    exact_stats.py FILE
"""
import math
import sys
from fractions import Fraction

import h5py
import numpy as np

with h5py.File(sys.argv[1], "r") as f:
    for name in ("x", "y"):
        data = np.asarray(f[name], dtype=np.float64)
        if data.ndim == 1:
            data = data.reshape(-1, 1)
        n = data.shape[0]
        for col in data.T:
            values = [Fraction(float(v)) for v in col]
            mean = float(sum(values)) / n
            m = Fraction(mean)
            var = float(sum((v - m) ** 2 for v in values)) / n
            std = math.sqrt(var) if var > 0 else 1.0
            print(mean.hex(), std.hex())
