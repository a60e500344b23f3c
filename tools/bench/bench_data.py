#!/usr/bin/python3
"""The data benchmark (README, "Input data"): memory per rank, the epoch start and the bytes read,
as the number of ranks grows. It measures; it is not a test.

    tools/bench.sh --data [--mdn PATH] [--work DIR]

Two files, written once into the work directory with h5py:
  rows-20M.h5   N = 20 M rows, x and y one float32 column each (160 MB)
  wide-10M.h5   N = 10 M rows, x (N, 8) and y (N, 2) float32 (400 MB)
For each file and P = 1, 2, 3: `mdn train` of a tiny model ([8], K = 2) for one step under
`mpirun -n P` (P = 3 oversubscribes a 2-core machine: its times are not figures), and from the
run's `summary` record: the peak RSS of each rank against the bound 3 x (its share of the data in
float32) + 64 MiB, the time of the epoch start, and the bytes read against the rank's share.
Then, on the 20 M-row file at P = 1 and 2, one epoch of the small benchmark model (hidden [32, 32]
tanh, K = 5, B = 256): the epoch start against the epoch's time (target: at most 10%).
--mdn runs another build's binary (an earlier version, for a before-and-after comparison); a
binary that does not report a figure shows "-".
"""
import argparse
import json
import os
import subprocess
import sys

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIB = 1 << 20


def write_file(path, n, d, l):
    if os.path.exists(path):
        return
    rng = np.random.default_rng(5)
    with h5py.File(path + ".tmp", "w") as f:
        x = f.create_dataset("x", (n, d), np.float32)
        y = f.create_dataset("y", (n, l), np.float32)
        step = 1 << 21
        for a in range(0, n, step):
            b = min(n, a + step)
            xs = rng.normal(size=(b - a, d)).astype(np.float32)
            x[a:b] = xs
            y[a:b] = (xs[:, :l] * 2 + rng.normal(size=(b - a, l))).astype(np.float32)
    os.rename(path + ".tmp", path)


def train(mdn, work, name, data, ranks, model, train_keys):
    run_dir = os.path.join(work, "runs", name)
    subprocess.run(["rm", "-rf", run_dir], check=True)
    cfg = os.path.join(work, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(f"run: {{dir: {run_dir}, seed: 1}}\ndata: {{train: {data}}}\nmodel: {model}\ntrain: {train_keys}\n"
                "checkpoint: {every_epochs: null, keep_best: false}\nlog: {every_steps: 1000000}\n")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = ["mpirun", "--oversubscribe", "-n", str(ranks), mdn, "train", cfg]
    r = subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"bench_data: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    recs = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    return [r for r in recs if r["kind"] == "summary"][-1]


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mdn", default=os.path.join(ROOT, "build", "mdn"))
    p.add_argument("--work", default=os.path.join(ROOT, "build", "bench-data"))
    a = p.parse_args()
    # Absolute: the runs start in their own directories.
    a.mdn, a.work = os.path.abspath(a.mdn), os.path.abspath(a.work)
    os.makedirs(a.work, exist_ok=True)
    files = {"rows-20M.h5": (20_000_000, 1, 1), "wide-10M.h5": (10_000_000, 8, 2)}
    for name, (n, d, l) in files.items():
        write_file(os.path.join(a.work, name), n, d, l)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"{cpu}; {os.cpu_count()} cores; {a.mdn}")
    print("file           P  rows/rank  share MiB  bound MiB  peak RSS MiB (each rank)  estimated  epoch start s  "
          "read MiB (share)")
    for name, (n, d, l) in files.items():
        for ranks in (1, 2, 3):
            s = train(a.mdn, a.work, f"{name[:-3]}-p{ranks}", os.path.join(a.work, name), ranks,
                      "{hidden: [8], components: 2}", "{max_steps: 1, batch_size: 256}")
            rows = -(-n // ranks)
            share = rows * (d + l) * 4 / MIB
            bound = 3 * share + 64
            rss = " ".join(f"{v:.0f}" for v in s["peak_rss_mib"])
            ok = "ok" if max(s["peak_rss_mib"]) <= bound else "OVER"
            io = s.get("train_io_bytes")
            print(f"{name:13s} {ranks:2d} {rows:10,d} {share:10.1f} {bound:10.1f}  {rss:>18s} {ok:4s}  "
                  f"{fmt(s.get('estimated_peak_mib'), '9.0f')}  {fmt(s.get('t_epoch_start'), '13.2f')}  "
                  f"{fmt(None if io is None else io / MIB, '.1f')} ({share:.1f})")
    print("one epoch of the small model (hidden [32, 32] tanh, K = 5, B = 256) on rows-20M.h5:")
    for ranks in (1, 2):
        s = train(a.mdn, a.work, f"epoch-p{ranks}", os.path.join(a.work, "rows-20M.h5"), ranks,
                  "{hidden: [32, 32], components: 5, activation: tanh}", "{epochs: 1, batch_size: 256}")
        start = s.get("t_epoch_start")
        epoch = s["seconds"]
        share = "-" if start is None else f"{100 * start / (epoch - start):.1f}%"
        print(f"  P = {ranks}: epoch {epoch:.2f} s (reading {s['t_read']:.2f} s before it), epoch start "
              f"{fmt(start, '.2f')} s = {share} of the epoch's training; peak RSS {max(s['peak_rss_mib']):.0f} MiB")


if __name__ == "__main__":
    main()
