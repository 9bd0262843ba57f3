#!/usr/bin/env bash
# Train fervid's two in-the-wild models end to end on one CUDA GPU (H100/H200 class), then evaluate each on its
# validation set with flip averaging:
#   ferplus-csa: FER+ train, 8 classes, soft labels from votes.csv, selected on FER+ val;
#   fer2013-csa: FER2013 train, 7 classes, label smoothing, selected on FER2013 val.
# Both use the CPU recipe of benchmarks/results/training.md (aligned crops cut by CenterFace, SGD-Nesterov, cosine
# schedule, random erasing), with more epochs and the full width. Target: both in under 10 minutes.
#
#   bash benchmarks/train_gpu.sh                  # on a GPU machine, from the repo root
#   DEVICE=cpu EPOCHS=1 FERPLUS=... FER2013=... bash benchmarks/train_gpu.sh   # the same steps on a CPU, smaller
#
# Environment: DEVICE (cuda), EPOCHS (100), WIDTH (1.0), BATCH (64), LR (0.01), PYTHON (python3), FERPLUS and
# FER2013 (the dataset folders in ../shared), OUT (run folders; default under FERVID_DATA_DIR/runs). Installs the
# project (pip install -e .) when it is not importable. Prints one summary line at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-100}
WIDTH=${WIDTH:-1.0}
BATCH=${BATCH:-64}
LR=${LR:-0.01}
PYTHON=${PYTHON:-python3}
FERPLUS=${FERPLUS:-../shared/datasets/ferplus}
FER2013=${FER2013:-../shared/datasets/fer2013}
OUT=${OUT:-${FERVID_DATA_DIR:-$HOME/.local/share/fervid}/runs/gpu-$(date -u +%Y%m%d-%H%M%S)}

"$PYTHON" -c "import fervid.cli.app" 2>/dev/null || "$PYTHON" -m pip install -q -e .
if [[ $DEVICE == cuda* ]]; then
    "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA GPU (DEVICE=cpu runs on the CPU)')"
fi
fervid() { "$PYTHON" -c 'import sys; from fervid.cli.app import main; sys.argv[0] = "fervid"; main()' "$@"; }

summary=()
train() {  # name data classes-option... : train, then evaluate best.pt on val with flip averaging
    local name=$1 data=$2
    shift 2
    local run="$OUT/$name" started=$SECONDS
    fervid train "$data/train" --val "$data/val" --out "$run" --size 48 --width "$WIDTH" --crop aligned \
        --optimizer sgd --lr "$LR" --weight-decay 1e-4 --schedule cosine --epochs "$EPOCHS" --batch-size "$BATCH" \
        --erasing 0.25 --device "$DEVICE" "$@"
    local trained=$((SECONDS - started))
    fervid evaluate "$data/val" --model "$run/best.pt" --flip --device "$DEVICE" --out "$run/evaluate" --no-store \
        | tee "$run/evaluate.txt"
    local accuracy
    accuracy=$(grep -m1 -o 'Accuracy:\*\* [0-9.]*' "$run/evaluate.txt" | grep -o '[0-9.]*$' || echo '?')
    summary+=("$name $accuracy val (flip) in ${trained} s")
}

total=$SECONDS
train ferplus-csa "$FERPLUS" --soft-labels "$FERPLUS/votes.csv"
train fer2013-csa "$FER2013" --smoothing 0.1
echo "train_gpu: ${summary[0]}; ${summary[1]}; ${EPOCHS} epochs, width ${WIDTH}, ${DEVICE}, $((SECONDS - total)) s in all; runs in ${OUT} (package with: fervid models package RUN/best.pt --name NAME --val VAL)"
