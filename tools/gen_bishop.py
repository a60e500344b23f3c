#!/usr/bin/python3
"""Bishop's inverse problem as an HDF5 file that `mdn train` reads directly.

t ~ U(0, 1), x = t + 0.3 sin(2 pi t) + U(-0.1, 0.1); dataset `x` is the input (N, 1) and `y = t`
the target (N, 1). Learning p(y | x) needs a mixture: for x near 0.5 there are three branches.
(Bishop, Pattern Recognition and Machine Learning, section 5.6.)

    tools/gen_bishop.py OUT.h5 [--rows N] [--seed S]
"""
import argparse

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="HDF5 file to write")
    ap.add_argument("--rows", type=int, default=4000, help="number of rows (default 4000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    a = ap.parse_args()
    if a.rows < 1:
        ap.error("--rows must be positive")
    rng = np.random.default_rng(a.seed)
    t = rng.uniform(0.0, 1.0, a.rows)
    x = t + 0.3 * np.sin(2 * np.pi * t) + rng.uniform(-0.1, 0.1, a.rows)
    with h5py.File(a.out, "w") as f:
        f.create_dataset("x", data=x.reshape(-1, 1).astype(np.float32))
        f.create_dataset("y", data=t.reshape(-1, 1).astype(np.float32))
        f.attrs["generator"] = "bishop"
        f.attrs["seed"] = a.seed
    print(f"wrote {a.out}: {a.rows} rows of Bishop's inverse problem (seed {a.seed})")


if __name__ == "__main__":
    main()
