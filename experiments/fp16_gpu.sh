#!/usr/bin/env bash
# A Colab T4's path (fp16 with the grad scaler) end to end on one CUDA GPU, and the training
# loop's speed, for docs/speed.md. Runs from the repository's root:
#
#   bash experiments/fp16_gpu.sh DATA OUT [BEFORE_REV]
#
# 1. bench.py: the loop as it is (auto, then fp16, each with --compile); with BEFORE_REV (a commit
#    before the loop's rare read-backs, e.g. 4781151), that commit's bench.py too, in a worktree.
# 2. One default 24-epoch run alone on the GPU (OUT/alone): its record's seconds.
# 3. fp16 end to end, seed 1: the notebook through papermill (OUT/notebook), stopped with SIGKILL
#    once its record holds KILL_AFTER epochs and run again to continue; train.py uninterrupted
#    beside it (OUT/straight); their records compared epoch by epoch (OUT/compare.txt).
# SMOKE=1: a few images on any device (DEVICE, default cpu there), to try the script itself.
set -uo pipefail
DATA=${1:?the data folder}
OUT=${2:?the results folder}
BEFORE=${3:-}
SMOKE=${SMOKE:-0}
KILL_AFTER=${KILL_AFTER:-3}
mkdir -p "$OUT"
if [ "$SMOKE" = 1 ]; then
    DEVICE=${DEVICE:-cpu}; KILL_AFTER=1
    TINY=(--subset 256 --eval-subset 256 --batch-size 64 --epochs 2 --finder-steps 6 --no-tta)
    TINY_YAML="subset: 256, eval_subset: 256, batch_size: 64, epochs: 2, finder_steps: 6, tta: false"
    BENCH=(--device "$DEVICE" --batches 2 --batch-size 32)
else
    DEVICE=${DEVICE:-cuda}; TINY=(); TINY_YAML=""; BENCH=(--device "$DEVICE")
fi

echo "== 1. bench"
for precision in auto fp16; do
    timeout 300 python bench.py "${BENCH[@]}" --precision "$precision" --compile > "$OUT/bench_$precision.txt" 2>&1
    grep -v "it/s" "$OUT/bench_$precision.txt"
done
if [ -n "$BEFORE" ]; then
    before=$(mktemp -d)
    git worktree add -f "$before" "$BEFORE" > /dev/null 2>&1
    (cd "$before" && timeout 300 python bench.py "${BENCH[@]}") > "$OUT/bench_before.txt" 2>&1
    grep -v "it/s" "$OUT/bench_before.txt"
fi

echo "== 2. one default run alone"
python train.py --data-dir "$DATA" --device "$DEVICE" --out "$OUT/alone" "${TINY[@]}" > "$OUT/alone.log" 2>&1
python -c "import json; r = json.load(open('$OUT/alone/metrics.json')); print('alone:', round(r['seconds'], 1), 's for', len(r['epochs']), 'epochs')"

echo "== 3. fp16 end to end: the notebook, killed after $KILL_AFTER epochs and continued; train.py beside it"
python train.py --data-dir "$DATA" --device "$DEVICE" --precision fp16 --out "$OUT/straight" "${TINY[@]}" \
    > "$OUT/straight.log" 2>&1 &
straight=$!
PARAMS="{settings: {precision: fp16, data_dir: $DATA, device: $DEVICE${TINY_YAML:+, $TINY_YAML}}, run_dir: $OUT/notebook, smoke: false}"
notebook() {  # papermill in its own process group, so that a kill reaches its kernel too
    setsid python -m papermill S10.ipynb "$OUT/$1.ipynb" --cwd . -y "$PARAMS" > "$OUT/$1.log" 2>&1 &
    echo $!
}
first=$(notebook notebook_killed)
while kill -0 "$first" 2>/dev/null; do
    epochs=$(python -c "import json; print(len(json.load(open('$OUT/notebook/metrics.json'))['epochs']))" 2>/dev/null || echo 0)
    if [ "$epochs" -ge "$KILL_AFTER" ]; then kill -KILL -- -"$first"; echo "killed the notebook after epoch $epochs"; break; fi
    sleep 0.5
done
wait "$first" 2>/dev/null
second=$(notebook notebook_continued)
wait "$second"; echo "the continued notebook: exit $?"
wait "$straight"; echo "train.py, uninterrupted: exit $?"
python - "$OUT" <<'EOF' | tee "$OUT/compare.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
runs = {name: json.loads((out / name / "metrics.json").read_text()) for name in ("notebook", "straight")}
sys.path.insert(0, ".")
from s10.record import CHECKPOINT, load_checkpoint  # noqa: E402
for name, r in runs.items():
    scaler = load_checkpoint(out / name / CHECKPOINT)["scaler"]  # the grad scaler after the last epoch
    print(f"{name}: precision {r['precision']}, resumed {r.get('resumed')}, complete {r['complete']}, "
          f"grad scaler {scaler and {k: scaler[k] for k in ('scale', '_growth_tracker')}}")
print("epoch | notebook (killed, continued) | train.py (straight) | difference")
for a, b in zip(runs["notebook"]["epochs"], runs["straight"]["epochs"]):
    print(f"{a['epoch']:5d} | {a['eval']['acc']:7.2f}% loss {a['train_loss']:.4f} | "
          f"{b['eval']['acc']:7.2f}% loss {b['train_loss']:.4f} | {a['eval']['acc'] - b['eval']['acc']:+.2f}")
EOF
