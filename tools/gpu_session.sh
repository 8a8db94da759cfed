#!/usr/bin/env bash
# Issue 20's one prepared run for a lent GPU (15 minutes of device time in all, one command
# of at most 10 minutes). Prepare here, once (MNIST and normflows into the ignored .gpu/):
#
#     bash tools/gpu_session.sh --prepare
#
# then run it there with the device tool: command "bash tools/gpu_session.sh", carry [".gpu"],
# timeout_s 560. What it makes lands in $OUT (without $OUT: runs/gpu-session):
#   log.txt                  everything printed, with the figures to report
#   mnist_simple.pt, mnist_vardeq.pt   exported (whole test set, 8 importance samples, on the GPU)
#   simple.csv, vardeq.csv   the two runs' metrics
# Copy an exported file to data/pretrained/ only if it meets its goal (simple 1.15, vardeq 1.12);
# else to data/pretrained/partial/, to continue from with --init-from.
#
# GPU_SESSION_TRAIN_S (default 270): seconds of training; both flows train side by side.
# GPU_SESSION_SMOKE=1: a rehearsal on this CPU (a few seconds of each step; no exports, whose
# whole-test-set evaluation takes half an hour on a CPU, and no compilation).
# Run --prepare after the last commit: the tree travels without .git, and .gpu/commit says
# which commit the exported files record.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    set -e
    src="${FLOWLIB_DATA:-../shared/data}/MNIST/raw"
    mkdir -p .gpu/data/MNIST/raw .gpu/site
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
        t10k-labels-idx1-ubyte; do
        gzip -c "$src/$f" >".gpu/data/MNIST/raw/$f.gz"
    done
    git rev-parse HEAD >.gpu/commit  # the tree travels without .git
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps -d "$tmp" normflows==1.7.3
    tar -xzf "$tmp"/normflows-1.7.3.tar.gz -C "$tmp"
    rm -rf .gpu/site/normflows && cp -r "$tmp"/normflows-1.7.3/normflows .gpu/site/
    rm -rf "$tmp"
    du -sh .gpu
    exit 0
fi

OUT="${OUT:-runs/gpu-session}"
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONPATH="$PWD:$PWD/.gpu/site" PYTHONUNBUFFERED=1 FLOWLIB_DATA="$PWD/.gpu/data"
PY="${PYTHON:-python3}"
TRAIN_S="${GPU_SESSION_TRAIN_S:-270}"
DEVICE=cuda BATCH=256 EVAL_IMAGES=2000 QUICK=(--quick)
COMMIT=$(git rev-parse HEAD 2>/dev/null || cat .gpu/commit 2>/dev/null || echo unknown)
if [ "${GPU_SESSION_SMOKE:-}" = 1 ]; then
    DEVICE=cpu BATCH=8 EVAL_IMAGES=16 TRAIN_S=40 QUICK=(--quick --warmup 1 --windows 1 --steps 1 --sample-windows 1)
fi
SMOKE="${GPU_SESSION_SMOKE:-}"
started=$SECONDS
stamp() { echo "=== $* (at ${SECONDS}s)"; }

stamp "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
echo "commit $COMMIT"

# 1. The two missing checkpoints, trained side by side from their partial files (where there
#    are any), stopped with SIGTERM after TRAIN_S seconds (flowlib saves at the end of the step).
train() {  # name model
    local init=data/pretrained/partial/mnist_$1.pt from=()
    [ -f "$init" ] && from=(--init-from "$init")
    timeout "$TRAIN_S" "$PY" -m flowlib train --model "$2" "${from[@]}" \
        --out "runs/gpu-$1" --device "$DEVICE" --batch-size "$BATCH" --ema 0.999 \
        --max-steps 1000000 --eval-every 500 --eval-images "$EVAL_IMAGES" --checkpoint-every 200 \
        --log-every 50 --sample-every 0 --no-progress >"$OUT/train_$1.txt" 2>&1
    echo "$1: training exited with $? (124: stopped by the time limit, as planned)"
}
stamp "training simple and vardeq for ${TRAIN_S}s, batch $BATCH, side by side"
train simple simple &
simple=$!
train vardeq vardeq &
wait "$simple" $!  # not a bare wait: that also waits for the tee of the log
for name in simple vardeq; do
    tail -n 4 "$OUT/train_$name.txt"
    cp "runs/gpu-$name/metrics.csv" "$OUT/$name.csv" 2>/dev/null
done

stamp "exports (whole test set, 8 importance samples, on $DEVICE)"
for name in simple vardeq; do
    [ -f "runs/gpu-$name/checkpoints/last.pt" ] && [ "$SMOKE" != 1 ] || continue
    "$PY" -m flowlib export "runs/gpu-$name" "mnist_$name" --device "$DEVICE" --to "$OUT" \
        --commit "$COMMIT" --data "MNIST, the 60,000 training images" \
        --command "tools/gpu_session.sh: flowlib train --model $name --batch-size $BATCH --ema 0.999 (from data/pretrained/partial/mnist_$name.pt where it existed), stopped after ${TRAIN_S}s"
done

# 2. Throughput: batch 64 and a batch that fills more of the card, float32 and bf16 networks.
stamp "throughput, MNIST Glow, batch 64"
"$PY" benchmarks/train_throughput.py --device "$DEVICE" --config mnist --bf16 "${QUICK[@]}"
stamp "throughput, MNIST Glow, batch 1024"
"$PY" benchmarks/train_throughput.py --device "$DEVICE" --config mnist --bf16 --batch 1024 \
    "${QUICK[@]}"

# 3. CUDA graphs, if time is left (compilation takes a minute or more).
if [ $((SECONDS - started)) -lt 420 ] && [ "$SMOKE" != 1 ]; then
    stamp "torch.compile reduce-overhead, MNIST Glow, batch 64"
    timeout 120 "$PY" benchmarks/compile_gain.py --device "$DEVICE" --mode reduce-overhead \
        --windows 3 --steps 10
fi
stamp "done"
