#!/usr/bin/env bash
# The GPU section of benchmarks/throughput.py on one CUDA GPU, in a few minutes: classification at batch 64, 256
# and 1024 with float16 autocast (crops/s and the fraction of an fp16 matmul's peak), end-to-end frames/s of a GPU
# worker (sampled and every frame) and the GPU's utilisation meanwhile. Installs what it needs (the project with
# onnxruntime-gpu, so that detection runs on the GPU too) when it is missing, writes
# benchmarks/results/throughput_gpu.md and prints one summary line.
#
#   bash benchmarks/gpu_check.sh        # from anywhere; PYTHON=... to pick the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

"$PYTHON" -c "import fervid.cli.app" 2>/dev/null || "$PYTHON" -m pip install -q -e .
"$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: torch sees no CUDA GPU')"
if ! "$PYTHON" -c "import sys, onnxruntime as o; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
    # onnxruntime and onnxruntime-gpu install the same module: replace the CPU build.
    "$PYTHON" -m pip uninstall -q -y onnxruntime || true
    "$PYTHON" -m pip install -q 'onnxruntime-gpu>=1.17' || echo "gpu_check: onnxruntime-gpu did not install: detection stays on the CPU"
fi

log=$(mktemp)
timeout 480 "$PYTHON" benchmarks/throughput.py --quick --device cuda --only gpu \
    --output "${OUTPUT:-benchmarks/results/throughput_gpu.md}" | tee "$log"
grep -m1 '^GPU summary' "$log" || { echo "gpu_check: no GPU summary (see above)"; exit 1; }
