#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, makes Bishop's inverse-problem data,
# trains on 2 ranks with a checkpoint schedule, evaluates the held-out file and draws the result.
# Idempotent: data already made is kept, a finished run is not trained again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools/setup.sh build demo

mdn=${MDN_BUILD_DIR:-build}/mdn
run=runs/bishop
ckpt=$run/checkpoints/best.h5
mpi=(mpirun -n 2)
if mpirun --version 2>&1 | grep -q "Open MPI"; then
  [[ $EUID -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  mpi+=(--oversubscribe)
fi

echo "== data"
mkdir -p data
[[ -f data/bishop-train.h5 ]] || tools/gen_bishop.py data/bishop-train.h5 --rows 4000 --seed 1
[[ -f data/bishop-test.h5 ]] || tools/gen_bishop.py data/bishop-test.h5 --rows 2000 --seed 2

echo "== train on 2 ranks: configs/bishop.yaml"
MDN=$mdn jobs/train-local.sh -n 2 configs/bishop.yaml

echo "== evaluate $ckpt on the held-out file"
"${mpi[@]}" "$mdn" eval --checkpoint "$ckpt" --data data/bishop-test.h5

echo "== pictures"
tools/plot.py grid "$run/grid.h5" --lo -0.15 --hi 1.15 >/dev/null
"$mdn" predict --checkpoint "$ckpt" --input "$run/grid.h5" --output "$run/grid-predict.h5" >/dev/null
tools/plot.py density "$run/grid-predict.h5" "$run/grid.h5" data/bishop-train.h5 "$run/density.png" >/dev/null
tools/plot.py curves "$run/metrics.jsonl" "$run/curves.png" >/dev/null
"${mpi[@]}" "$mdn" eval --checkpoint "$ckpt" --data data/bishop-test.h5 --json > "$run/eval.json"
tools/plot.py calibration "$run/eval.json" "$run/calibration.png" >/dev/null

nll=$(/usr/bin/python3 -c 'import json, sys; print("%.4f" % json.load(open(sys.argv[1]))["nll"])' "$run/eval.json")
cat <<TXT

Held-out NLL of $ckpt: $nll nats per sample
  (a single Gaussian cannot do better than about -0.66 on this problem; the true conditional density reaches about -1.28)
Pictures:
  $run/density.png   the learned p(y|x) with the training points and the component means
  $run/curves.png    training loss and validation NLL
  $run/calibration.png  the PIT histogram and the coverage of the predicted intervals against their level
Model:  $mdn inspect $ckpt
TXT
