#!/usr/bin/python3
"""The gradient reduction over a network (README, "Several nodes"): two nodes of a simulated
cluster (tools/cluster.sh: network namespaces, TCP between them), one rank each, their links
shaped to 1 Gbit/s and 10 Gbit/s (tc tbf) and unshaped. For the medium and large models of
bench.py, in exact and fast mode, alternating: samples/s, the bytes each node sends a step, the
bandwidth that achieves while the step reduces, and the reduction's share of the step.

The bytes are the node's transmitted bytes (its interface's counter: TCP/IP headers, MPI's own
small messages and the rows exchanged at each epoch start included) over the steps of the run.

    tools/bench/bench_network.py [--build build] [--work build/bench] [--rounds 2] [--quick]
Needs root (network namespaces).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the cases, the data and the configs)

ROOT = bench.ROOT
TOOL = os.path.join(ROOT, "tools", "cluster.sh")
RATES = [("1 Gbit/s", "1gbit", 1e9), ("10 Gbit/s", "10gbit", 1e10), ("unshaped", None, None)]


def tx_bytes(net, node):
    """The bytes node's eth0 has sent (/proc/net/dev shows the reading process's namespace)."""
    for line in bench.sh([TOOL, "exec", net, str(node), "cat", "/proc/net/dev"]).splitlines():
        name, _, fields = line.partition(":")
        if name.strip() == "eth0":
            return int(fields.split()[8])
    sys.exit(f"bench_network: node {node} has no eth0")


def run(a, net, name, cfg):
    run_dir = os.path.join(a.work, "runs", "net-" + name)
    bench.sh(["rm", "-rf", run_dir])
    path = os.path.join(a.work, "net-" + name + ".yaml")
    with open(path, "w") as f:
        f.write(cfg.replace("{dir: RUN", "{dir: " + run_dir))
    before = [tx_bytes(net, k) for k in (1, 2)]
    env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    bench.sh([TOOL, "mpirun", net, "--nodes", "2", "--per-node", "1", "-n", "2", "--bind-to", "none",
              os.path.join(a.build, "mdn"), "train", path], env=env, cwd=a.work)
    sent = [tx_bytes(net, k) - b for k, b in zip((1, 2), before)]
    recs = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    train = [r for r in recs if r["kind"] == "train"][1:]  # the first interval warms up
    summary = [r for r in recs if r["kind"] == "summary"][-1]
    steps = max(r["step"] for r in recs if r["kind"] == "train")
    step_time = [r["t_compute"] + r["t_comm"] + r["t_io"] for r in train]
    comm = [r["t_comm"] for r in train]
    # t_comm and the step time are per logging interval; per step by the interval's steps.
    per_step_comm = statistics.median(c / t for c, t in zip(comm, step_time) if t > 0)
    rate = statistics.median(r["samples_per_s"] for r in train)
    start = [r for r in recs if r["kind"] == "start"][-1]
    return dict(rate=rate, bytes=max(sent) / steps, share=per_step_comm, route=start["reduction_route"],
                step_s=summary["seconds"] / steps, steps=steps)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="one epoch per run")
    a = ap.parse_args()
    a.build, a.work = os.path.abspath(a.build), os.path.abspath(a.work)
    a.quick = True  # bench.data: no 10 M-row file
    if os.geteuid() != 0:
        sys.exit("bench_network: needs root (network namespaces)")
    bench.data(a)
    net = os.path.join(a.work, "net")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"{cpu}; {os.cpu_count()} cores; 2 simulated nodes, 1 rank each (tools/cluster.sh), links shaped by tc tbf")
    cases = {
        # One micro-batch per rank and step, as the benchmark's weak scaling: M = 2.
        "medium": dict(bench.CASES["medium"], m=256, epochs=1),
        "large": dict(bench.CASES["large"], m=512, epochs=1),
    }
    rows = []
    try:
        for label, tc_rate, bits in RATES:
            bench.sh([TOOL, "up", net, "2"] + (["--rate", tc_rate] if tc_rate else []))
            for name, c in cases.items():
                got = {"exact": [], "fast": []}
                for i in range(a.rounds):
                    for mode in (["exact", "fast"] if i % 2 == 0 else ["fast", "exact"]):
                        cfg = bench.config(c, "RUN", c["train"], c["test"], c["m"], c["epochs"], mode, c["B"], 10)
                        got[mode].append(run(a, net, f"{name}-{mode}", cfg))
                for mode in ("exact", "fast"):
                    rs = got[mode]
                    rate = statistics.median(r["rate"] for r in rs)
                    nbytes = statistics.median(r["bytes"] for r in rs)
                    share = statistics.median(r["share"] for r in rs)
                    step = c["B"] / rate
                    achieved = nbytes * 8 / (share * step) if share > 0 else float("nan")
                    rows.append((label, name, mode, rate, nbytes, achieved, bits, share, rs[-1]["route"]))
    finally:
        subprocess.run([TOOL, "down", net], check=False)
    print(f"{'link':10} {'model':7} {'mode':6} {'samples/s':>10} {'MB/step':>8} {'Gbit/s':>7} {'of link':>8} "
          f"{'reduce':>7}")
    by = {}
    for label, name, mode, rate, nbytes, achieved, bits, share, route in rows:
        of = f"{100 * achieved / bits:.0f}%" if bits else "-"
        print(f"{label:10} {name:7} {mode:6} {rate:10,.0f} {nbytes / 1e6:8.3f} {achieved / 1e9:7.2f} {of:>8} "
              f"{100 * share:6.1f}%")
        by[(label, name, mode)] = (rate, nbytes)
    print("(MB/step: bytes each node sends a step; Gbit/s: those bytes over the step's reduction time; reduce: the "
          "reduction's share of the step)")
    for label, _, _ in RATES:
        for name in cases:
            e, f = by[(label, name, "exact")], by[(label, name, "fast")]
            print(f"  {label:10} {name:7} exact/fast: bytes {e[1] / f[1]:.2f}x, samples/s {e[0] / f[0]:.2f}x")
    print(f"routes: exact: {rows[0][8]}; fast: MPI allreduce of floats")


if __name__ == "__main__":
    main()
