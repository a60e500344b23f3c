#!/usr/bin/python3
"""mdn against PyTorch on the same MDNs, and the speed targets (README, "Performance").

Runs, in one session and alternating between the sides compared:
  * the single-threaded products at the shapes of the three cases: mdn's at every level this CPU
    runs, Eigen's as mdn used it before, OpenBLAS, BLIS and oneDNN (tools/bench/bench_products);
    the best single-core SGEMM of the machine is the larger of mdn's and OpenBLAS's at 1024^3
  * three cases, mdn train (1 rank, exact, the level `run.cpu: auto` chooses) and the PyTorch
    reference (tools/bench/torch_mdn.py, 1 thread, OpenBLAS): samples/s, their ratio, the test
    NLL of each, GFLOP/s and their share of the best SGEMM (timed right before and right after
    each run); and the medium and large steps alone against mdn's 1024^3 product, alternating in
    one process (tools/bench/bench_step)
      small   Bishop, D=1, L=1, hidden [32, 32] tanh, K=5, B=256
      medium  D=8, L=2, hidden [256, 256, 256] tanh, K=5, B=512
      large   D=8, L=2, hidden [1024, 1024, 1024] tanh, K=5, B=1024
  * every lower level this CPU runs (run.cpu), on the same cases
  * this build (generic tuning) against a -march=native build of the same sources
    (BUILD/native/, configured with MDN_KERNEL_FLAGS; --no-native skips it), alternating pairs
  * exact against fast reduction: medium, 2 ranks, micro-batch 256
  * 1 rank against 2 (medium): weak scaling (256 rows per rank) and the same global batch (512),
    against the two-core ceiling (two SGEMMs at once) and the lock-step one (two SGEMMs meeting
    after every product, as training's ranks do after every step), with the allreduce's share
  * peak memory per rank, and the share of reading and normalising 10 M rows x 10 columns in an epoch
  * full against diagonal covariance: the medium model with L = 4 outputs (correlated
    known-density data), 1 rank, alternating pairs (--covariance runs this part alone)

    tools/bench/bench.py [--build build] [--work build/bench] [--rounds 2] [--quick] [--no-native]
                         [--covariance]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = "/usr/bin/python3"


def sh(cmd, env=None, cwd=None):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(cmd, cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r.stdout


def mpirun(n):
    env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    return ["mpirun", "-n", str(n), "--bind-to", "core"], env


CASES = {
    "small": dict(train="small-train.h5", test="small-test.h5", hidden=[32, 32], K=5, B=256, m=256, lr=0.005,
                  epochs=3, D=1, L=1),
    "medium": dict(train="med-train.h5", test="med-test.h5", hidden=[256, 256, 256], K=5, B=512, m=512, lr=0.001,
                   epochs=3, D=8, L=2),
    "large": dict(train="med-train.h5", test="med-test.h5", hidden=[1024, 1024, 1024], K=5, B=1024, m=512, lr=0.001,
                  epochs=2, D=8, L=2),
}


def head_rows(c):
    off = c["L"] * (c["L"] - 1) // 2 if c.get("covariance") == "full" else 0
    return c["K"] * (1 + 2 * c["L"] + off)


def flops_per_sample(c):
    widths = [c["D"]] + c["hidden"] + [head_rows(c)]
    weights = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    return 6 * weights + 60 * c["K"] * c["L"]  # forward + backward GEMMs, and the mixture head


def config(c, run_dir, train, test, m, epochs, reduction="exact", B=None, log=20):
    return (f"run: {{dir: {run_dir}, seed: 1}}\n"
            f"data: {{train: {train}, valid: {test}}}\n"
            f"model: {{hidden: {c['hidden']}, components: {c['K']}, activation: tanh, "
            f"covariance: {c.get('covariance', 'diagonal')}}}\n"
            f"train: {{epochs: {epochs}, batch_size: {B or c['B']}, micro_batch: {m}, reduction: {reduction}}}\n"
            f"optimizer: {{name: adam, lr: {c['lr']}}}\n"
            f"checkpoint: {{every_epochs: null, keep_best: false}}\n"
            f"log: {{every_steps: {log}}}\n")


def run_mdn(a, name, cfg, ranks=1, sets=(), build=None):
    run_dir = os.path.join(a.work, "runs", name)
    sh(["rm", "-rf", run_dir])
    path = os.path.join(a.work, name + ".yaml")
    with open(path, "w") as f:
        f.write(cfg.replace("{dir: RUN", "{dir: " + run_dir))
    cmd = [os.path.join(build or a.build, "mdn"), "train", path]
    for s in sets:
        cmd += ["--set", s]
    env = {}
    if ranks > 1:
        pre, env = mpirun(ranks)
        cmd = pre + cmd
    sh(cmd, env=env, cwd=a.work)
    recs = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    train = [r for r in recs if r["kind"] == "train"][1:]  # the first interval warms up
    valid = [r["valid_nll"] for r in recs if r["kind"] == "valid"]
    summary = [r for r in recs if r["kind"] == "summary"][-1]
    start = [r for r in recs if r["kind"] == "start"][-1]
    step_time = [r["t_compute"] + r["t_comm"] + r["t_io"] for r in train]
    return dict(rate=statistics.median(r["samples_per_s"] for r in train), cpu=start["cpu"],
                nll=valid[-1] if valid else float("nan"),
                comm_share=statistics.median(r["t_comm"] / t for r, t in zip(train, step_time) if t > 0),
                rss=max(summary["peak_rss_mib"]), t_read=summary["t_read"], seconds=summary["seconds"])


def run_torch(a, c):
    out = sh([PY, os.path.join(ROOT, "tools/bench/torch_mdn.py"), "--train", os.path.join(a.work, c["train"]),
              "--test", os.path.join(a.work, c["test"]), "--hidden", ",".join(map(str, c["hidden"])),
              "--components", str(c["K"]), "--batch", str(c["B"]), "--lr", str(c["lr"]),
              "--epochs", str(c["epochs"])], env={"OMP_NUM_THREADS": "1"})
    return json.loads(out.strip().splitlines()[-1])


def gemm(a, ranks, size=1024, lockstep=False, seconds=3):
    pre, env = mpirun(ranks) if ranks > 1 else ([], {})
    out = sh(pre + [os.path.join(a.build, "tools", "bench_gemm"), str(size), str(seconds), "auto"] +
             (["lockstep"] if lockstep else []), env=env)
    return json.loads(out.strip().splitlines()[-1])


def products(a):
    """bench_products: its table (printed) and the per-product figures."""
    out = sh([os.path.join(a.build, "tools", "bench_products"), "--rounds", "5" if a.quick else "9", "--json"])
    lines = out.strip().splitlines()
    return "\n".join(lines[:-1]), json.loads(lines[-1])


def native_build(a):
    """A -march=native build of the same sources in BUILD/native/, for the comparison only."""
    d = os.path.join(a.build, "native")
    sh(["cmake", "-S", ROOT, "-B", d, "-DCMAKE_BUILD_TYPE=Release", "-DMDN_BUILD_TESTS=OFF",
        "-DCMAKE_CXX_FLAGS=-march=native", "-DMDN_KERNEL_FLAGS=-march=native -mtune=native"])
    sh(["cmake", "--build", d, "-j", str(os.cpu_count() or 2), "--target", "mdn"])
    return d


def data(a):
    os.makedirs(a.work, exist_ok=True)
    gen = [
        ("small-train.h5", ["tools/gen_bishop.py", "--rows", "100000", "--seed", "1"]),
        ("small-test.h5", ["tools/gen_bishop.py", "--rows", "10000", "--seed", "2"]),
        ("med-train.h5", ["tools/gen_known_density.py", "--rows", "100000", "--inputs", "8", "--outputs", "2", "--seed", "1"]),
        ("med-test.h5", ["tools/gen_known_density.py", "--rows", "10000", "--inputs", "8", "--outputs", "2", "--seed", "2"]),
        ("med4-train.h5", ["tools/gen_known_density.py", "--rows", "100000", "--inputs", "8", "--outputs", "4",
                           "--covariance", "full", "--seed", "1"]),
        ("med4-test.h5", ["tools/gen_known_density.py", "--rows", "10000", "--inputs", "8", "--outputs", "4",
                          "--covariance", "full", "--seed", "2"]),
    ]
    for name, cmd in gen:
        path = os.path.join(a.work, name)
        if not os.path.exists(path):
            sh([PY, os.path.join(ROOT, cmd[0]), path] + cmd[1:])
    big = os.path.join(a.work, "io-10M.h5")
    if not os.path.exists(big) and not a.quick:
        import h5py
        import numpy as np
        rng = np.random.default_rng(3)
        with h5py.File(big + ".part", "w") as f:
            x = f.create_dataset("x", (10_000_000, 8), "f4")
            y = f.create_dataset("y", (10_000_000, 2), "f4")
            for s in range(0, 10_000_000, 1_000_000):
                x[s:s + 1_000_000] = rng.normal(size=(1_000_000, 8)).astype("f4")
                y[s:s + 1_000_000] = rng.normal(size=(1_000_000, 2)).astype("f4")
        os.rename(big + ".part", big)


def machine(a):
    # The model name alone may not tell the generation (a virtual machine may report "AMD EPYC"
    # for all of them): the family and model numbers do.
    info = {}
    for line in open("/proc/cpuinfo"):
        key, _, value = line.partition(":")
        if not line.strip():
            break
        info[key.strip()] = value.strip()
    cpu = f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
    caches = sh(["lscpu"]).splitlines()
    caches = ", ".join(l.split(":")[0].replace(" cache", "") + " " + l.split(":")[1].strip().split(" (")[0]
                       for l in caches if "cache:" in l) or "cache sizes not reported"
    mem = int(open("/proc/meminfo").readline().split()[1]) // (1024 * 1024)
    version = sh([os.path.join(a.build, "mdn"), "--version"]).strip().splitlines()
    import torch
    blas = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    return (f"{cpu}; {os.cpu_count()} cores; {caches}; {mem} GiB; {platform.platform()}\n"
            f"{version[0]}, {version[1].strip()}\n{version[2].strip()}\n{version[3].strip()}\n"
            f"PyTorch {torch.__version__}, 1 thread, BLAS {blas}")


def covariance(a):
    """Full against diagonal covariance, the medium model with L = 4, alternating pairs."""
    base = dict(CASES["medium"], train="med4-train.h5", test="med4-test.h5", L=4)
    rates = {"diagonal": [], "full": []}
    nll = {}
    for i in range(max(5, a.rounds)):
        for form in (["full", "diagonal"] if i % 2 == 0 else ["diagonal", "full"]):
            c = dict(base, covariance=form)
            r = run_mdn(a, "cov-" + form, config(c, "RUN", c["train"], c["test"], c["m"], c["epochs"]))
            rates[form].append(r["rate"])
            nll[form] = r["nll"]
    ratios = sorted(f / d for f, d in zip(rates["full"], rates["diagonal"]))
    d, f = statistics.median(rates["diagonal"]), statistics.median(rates["full"])
    print(f"full vs diagonal covariance (medium, L=4, K=5, 1 rank; {len(ratios)} alternating pairs; head outputs "
          f"{head_rows(dict(base, covariance='full'))} vs {head_rows(base)}):")
    print(f"  diagonal {d:,.0f}, full {f:,.0f} samples/s: full runs at {100 * statistics.median(ratios):.0f}% of "
          f"diagonal (pairs: {', '.join(f'{100 * r:.0f}%' for r in ratios)}); test NLL after {base['epochs']} epochs: "
          f"full {nll['full']:.4f}, diagonal {nll['diagonal']:.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="fewer epochs, no 10 M-row file")
    ap.add_argument("--no-native", action="store_true", help="skip the -march=native comparison build")
    ap.add_argument("--covariance", action="store_true", help="only full against diagonal covariance")
    a = ap.parse_args()
    a.build, a.work = os.path.abspath(a.build), os.path.abspath(a.work)
    if a.quick:
        for c in CASES.values():
            c["epochs"] = 2
    data(a)
    print(machine(a))
    print()
    if a.covariance:
        covariance(a)
        return

    # The products; the best single-core SGEMM of the machine (1024^3): mdn's or OpenBLAS's.
    table, prods = products(a)
    print(table)
    by_name = {p["name"]: p for p in prods["products"]}
    mdn_best = max((p for p in prods["products"] if p["name"].startswith("mdn ")), key=lambda p: p["1024^3"])
    openblas = by_name.get("OpenBLAS", {}).get("1024^3", 0.0)
    best = max(mdn_best["1024^3"], openblas)
    print(f"best single-core SGEMM (1024^3): {best:.1f} GFLOP/s ({mdn_best['name']} {mdn_best['1024^3']:.1f}, "
          f"OpenBLAS {openblas:.1f})")

    # The two-core ceiling, interleaved with single-core runs (this kind of machine is noisy).
    # Then the same in lock-step: a barrier after every product of about a medium step's length
    # (512^3), in wall time, against one rank's wall time: a pause of either core holds both.
    singles, pairs, locked = [], [], []
    for _ in range(3):
        singles.append(gemm(a, 1)["gflops_sum"])
        pairs.append(gemm(a, 2)["gflops_sum"])
        one = gemm(a, 1, 512)["gflops_wall_sum"]
        locked.append(gemm(a, 2, 512, True)["gflops_wall_sum"] / one)
    peak1, peak2 = statistics.median(singles), statistics.median(pairs)
    ceiling = peak2 / peak1
    lockstep = statistics.median(locked)
    print(f"mdn's product, 1024^3, one rank: {peak1:.1f} GFLOP/s; two ranks at once: {peak2:.1f} GFLOP/s in sum "
          f"(two-core ceiling: {ceiling:.2f}x)")
    print(f"two ranks in lock-step (a barrier after every 512^3 product, in wall time): {lockstep:.2f}x one rank = "
          f"{100 * lockstep / ceiling:.0f}% of the ceiling (rounds: {', '.join(f'{x:.2f}x' for x in locked)})\n")

    rows = []
    results = {}
    level = None
    # "% best" pairs each training run with the best SGEMM timed right before it and right after
    # it (the mean of the two): this machine's speed moves between minutes (the products table's
    # 1024^3 and bench_gemm's can differ by 15% in one run). The best is mdn's product at 1024^3
    # then, times OpenBLAS's lead over it in the table when OpenBLAS leads; the figure is the
    # median of the runs' ratios.
    lead = max(1.0, openblas / mdn_best["1024^3"])
    for name, c in CASES.items():
        mdn_runs, torch_runs, shares = [], [], []
        for _ in range(a.rounds):
            cfg = config(c, "RUN", c["train"], c["test"], c["m"], c["epochs"])
            before = gemm(a, 1, 1024, seconds=1)["gflops_sum"]
            mdn_runs.append(run_mdn(a, name, cfg))
            now = lead * (before + gemm(a, 1, 1024, seconds=1)["gflops_sum"]) / 2
            shares.append(mdn_runs[-1]["rate"] * flops_per_sample(c) / 1e9 / now)
            torch_runs.append(run_torch(a, c))
        level = mdn_runs[-1]["cpu"]
        m = statistics.median(r["rate"] for r in mdn_runs)
        t = statistics.median(r["samples_per_s"] for r in torch_runs)
        gf = m * flops_per_sample(c) / 1e9
        share = statistics.median(shares)
        results[name] = dict(mdn=m, torch=t, ratio=m / t, gflops=gf, peak_share=share,
                             mdn_nll=mdn_runs[-1]["nll"], torch_nll=torch_runs[-1]["test_nll"], rss=mdn_runs[-1]["rss"])
        rows.append((name, m, t, m / t, mdn_runs[-1]["nll"], torch_runs[-1]["test_nll"], gf, 100 * share,
                     mdn_runs[-1]["rss"]))
    print(f"mdn at level {level} (run.cpu: auto)")
    print(f"{'case':8} {'mdn samples/s':>14} {'PyTorch':>10} {'ratio':>6} {'mdn NLL':>9} {'PyTorch NLL':>12} "
          f"{'GFLOP/s':>8} {'% best':>7} {'RSS MiB':>8}")
    for r in rows:
        print(f"{r[0]:8} {r[1]:14,.0f} {r[2]:10,.0f} {r[3]:5.2f}x {r[4]:9.4f} {r[5]:12.4f} {r[6]:8.1f} {r[7]:6.1f}% "
              f"{r[8]:8.0f}")
    print("(same data, architecture, K, batch, Adam and epochs; NLL on the test file after training, nats per sample;\n"
          " % best: median over the runs of their GFLOP/s over the best single-core SGEMM timed right before and after each)")
    # The steps alone, alternating with mdn's 1024^3 product in one process: no drift between the two.
    for name in ("medium", "large"):
        out = sh([os.path.join(a.build, "tools", "bench_step"), name, level]).strip().splitlines()[-1]
        ratio = float(out.split("step/product ")[1].split()[0])
        quartiles = out.split("(quartiles ")[1].rstrip(")")
        print(f"{name} step alone against mdn's 1024^3 product, alternating in one process: {ratio:.3f} "
              f"(quartiles {quartiles}); against the best SGEMM (OpenBLAS's lead {lead:.3f}): {100 * ratio / lead:.1f}%")
    print()

    # Every lower level this machine runs.
    levels = [p["name"][4:] for p in prods["products"] if p["name"].startswith("mdn ")]
    lower = levels[:levels.index(level)] if level in levels else []
    if lower:
        print("lower levels, the same cases (samples/s, and against " + level + "):")
        for lv in reversed(lower):
            parts = []
            for name, c in CASES.items():
                cfg = config(c, "RUN", c["train"], c["test"], c["m"], c["epochs"])
                r = run_mdn(a, name + "-" + lv, cfg, sets=["run.cpu=" + lv])["rate"]
                parts.append(f"{name} {r:,.0f} ({r / results[name]['mdn']:.2f}x)")
            print(f"  {lv:10} " + ", ".join(parts))
        print()

    # This portable build against a -march=native build of the same sources.
    if not a.no_native:
        nat = native_build(a)
        print(f"this build (generic tuning) against -march=native, alternating pairs (medium, large):")
        for name in ("medium", "large"):
            c = CASES[name]
            cfg = config(c, "RUN", c["train"], c["test"], c["m"], c["epochs"])
            ratios = []
            for i in range(5):
                order = ["native", "default"] if i % 2 == 0 else ["default", "native"]
                got = {}
                for side in order:
                    got[side] = run_mdn(a, name + "-" + side, cfg, build=nat if side == "native" else None)["rate"]
                ratios.append(got["default"] / got["native"])
            print(f"  {name}: default / native = {statistics.median(ratios):.3f} "
                  f"(pairs: {', '.join(f'{r:.3f}' for r in sorted(ratios))})")
        print()

    med = CASES["medium"]
    ratios = []
    exact, fast = [], []
    for i in range(max(7, a.rounds)):
        order = ["fast", "exact"] if i % 2 == 0 else ["exact", "fast"]
        got = {}
        for mode in order:
            got[mode] = run_mdn(a, mode, config(med, "RUN", med["train"], med["test"], 256, 3, mode, 512), 2)["rate"]
        fast.append(got["fast"])
        exact.append(got["exact"])
        ratios.append(got["fast"] / got["exact"] - 1)
    e, f = statistics.median(exact), statistics.median(fast)
    print(f"exact vs fast reduction (medium, 2 ranks, B=512, micro-batch 256; {len(ratios)} alternating pairs): "
          f"exact {e:,.0f}, fast {f:,.0f} samples/s: exact costs {100 * statistics.median(ratios):.1f}% "
          f"(pairs: {', '.join(f'{100 * r:.1f}%' for r in sorted(ratios))})")

    one_256, two_512, one_512 = [], [], []
    share = []
    for _ in range(max(5, a.rounds)):
        one_256.append(run_mdn(a, "w1", config(med, "RUN", med["train"], med["test"], 256, 3, "exact", 256))["rate"])
        r2 = run_mdn(a, "w2", config(med, "RUN", med["train"], med["test"], 256, 3, "exact", 512), 2)
        two_512.append(r2["rate"])
        share.append(r2["comm_share"])
        one_512.append(run_mdn(a, "s1", config(med, "RUN", med["train"], med["test"], 256, 3, "exact", 512))["rate"])
    r1w, r2, r1s = statistics.median(one_256), statistics.median(two_512), statistics.median(one_512)
    print(f"1 -> 2 ranks (medium, exact, micro-batch 256), two-core ceiling {ceiling:.2f}x:")
    print(f"  weak scaling (256 rows per rank): {r1w:,.0f} -> {r2:,.0f} samples/s = {r2 / r1w:.2f}x, "
          f"{100 * (r2 / r1w) / ceiling:.0f}% of the ceiling, {100 * (r2 / r1w) / lockstep:.0f}% of the lock-step one "
          f"(rounds: {', '.join(f'{100 * t / o / ceiling:.0f}%' for o, t in zip(one_256, two_512))})")
    print(f"  same global batch (512):          {r1s:,.0f} -> {r2:,.0f} samples/s = {r2 / r1s:.2f}x, "
          f"{100 * (r2 / r1s) / ceiling:.0f}% of the ceiling")
    print(f"  allreduce share of the step on 2 ranks: {100 * statistics.median(share):.1f}%")

    if not a.quick:
        big = os.path.join(a.work, "io-10M.h5")
        cfg = (f"run: {{dir: RUN, seed: 1}}\ndata: {{train: {big}}}\nmodel: {{hidden: [64, 64], components: 5}}\n"
               f"train: {{epochs: 1, batch_size: 4096, micro_batch: 1024}}\n"
               f"checkpoint: {{every_epochs: null, keep_best: false}}\nlog: {{every_steps: 500}}\n")
        r = run_mdn(a, "io", cfg, 2)
        epoch = r["seconds"]
        print(f"reading and normalising 10 M rows x 10 columns on 2 ranks: {r['t_read']:.2f} s; one epoch of "
              f"training on them (hidden [64, 64], K=5): {epoch:.2f} s; the read is {100 * r['t_read'] / (r['t_read'] + epoch):.0f}% "
              f"of read + epoch; peak memory {r['rss']:.0f} MiB per rank")
    print(f"peak memory per rank: " + ", ".join(f"{k} {v['rss']:.0f} MiB" for k, v in results.items()))
    covariance(a)


if __name__ == "__main__":
    main()
