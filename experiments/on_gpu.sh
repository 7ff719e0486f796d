#!/usr/bin/env bash
# Issue 15's experiment in one call on a lent GPU machine that has torch but not our other
# packages and no network: install the carried wheels (.whl/), build the stand-in data from the
# carried archive (.device/), benchmark, then experiments/regularisation.py within the time left.
# Results go to $OUT (the device tool brings that folder back).
#   bash experiments/on_gpu.sh [SECONDS [--follow-up]]   # SECONDS: the whole call's limit (default 590)
set -uo pipefail
LIMIT=${1:-590}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
git config --global --add safe.directory "*" 2>/dev/null
# the device's .git is the session's base commit, not this tree's: a copy of ours travels in
# .device/, so that the records name the commit they ran
[ -d .device/git ] && rm -rf .git && cp -r .device/git .git

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    > "$OUT/setup.log" 2>&1 || { tail "$OUT/setup.log"; exit 1; }
export PYTHONPATH=/tmp/site
python3 .device/make_cifar10.py data >> "$OUT/setup.log" 2>&1 &
{
    nvidia-smi
    echo "commit $(git rev-parse HEAD 2>&1)"; git status --short
    python3 -c "import torch, albumentations, torch_lr_finder, torchsummary, nbconvert, ipykernel
print('torch', torch.__version__, 'albumentations', albumentations.__version__, torch.cuda.get_device_name())"
} >> "$OUT/setup.log" 2>&1
wait
tail -4 "$OUT/setup.log"

[ "${2:-}" = --follow-up ] || timeout 100 python3 bench.py --device cuda > "$OUT/bench.txt" 2>&1 || echo "bench: exit $?"
grep -v "it/s" "$OUT/bench.txt"
echo "after setup and bench: ${SECONDS} s"

# what is left, less a margin for the checks after the runs and for packing the results
BUDGET=$((LIMIT - SECONDS - ${MARGIN:-60}))
timeout $((BUDGET + 45)) python3 experiments/regularisation.py --runs runs/gpu --parallel 6 \
    --budget "$BUDGET" ${2:-} 2>&1 | tee "$OUT/experiment.log"

tar czf "$OUT/runs.tgz" --exclude='*.pt' runs/gpu assets
cp S10.ipynb "$OUT/"
cat runs/gpu/test/*.txt 2>/dev/null
echo "done in ${SECONDS} s"
