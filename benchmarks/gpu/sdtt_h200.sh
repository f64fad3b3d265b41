#!/usr/bin/env bash
# One lease of an H200 (device time is 15 min per session, all in): the CUDA checks, then an SDTT
# curriculum 64 -> 32 -> 16 -> 8 at the paper's batch (128, bf16; arXiv 2410.21035 §4), sized by a
# 40-step pilot to fit BUDGET_S seconds. Students of each round come back split under $OUT.
BUDGET_S=${BUDGET_S:-300}
source "$(dirname "$0")/lease.sh"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
timeout 200 python3 -m pytest -q -m "slow or not slow" -p no:cacheprovider tests/test_devices.py tests/test_distributed.py -rs 2>&1 | tee $OUT/cuda_tests.log
run() { didi-seq distill --domain text --method sdtt --device ${DEV:-cuda} ${BF16:---bf16} --batch-size ${BATCH:-128} --lr 6e-5 --ema 0.999 \
          --sdtt-start-nfe 64 --sdtt-rounds 3 --threads 8 "$@"; }
run --out /tmp/pilot --steps ${PILOT:-40} --sdtt-steps-per-round ${PILOT:-40} --ckpt-every ${PILOT:-40} 2> /tmp/pilot.log >/dev/null
S_PER_STEP=$(python3 -c "import json; r=[json.loads(l) for l in open('/tmp/pilot/metrics.jsonl')][${PILOT_SKIP:-10}:]; print(sum(x['s_per_step'] for x in r)/len(r))")
PER_ROUND=$(python3 -c "print(max(${MIN_ROUND:-100}, min(10000, int($BUDGET_S / 3 / $S_PER_STEP) // 100 * 100)))")
mkdir -p /tmp/keep
echo "pilot: ${S_PER_STEP} s/step -> ${PER_ROUND} steps per round" | tee /tmp/keep/plan.txt
for r in 1 2 3; do
  extra=(); [ $r -gt 1 ] && extra=(--resume)
  run --out /tmp/sdtt --steps $((r * PER_ROUND)) --sdtt-steps-per-round $PER_ROUND --ckpt-every $PER_ROUND "${extra[@]}" 2>>$OUT/train.log >/dev/null
  latest=/tmp/sdtt/checkpoints/$(ls /tmp/sdtt/checkpoints | tail -1)
  dst=/tmp/keep/nfe$((64 >> r)); mkdir -p $dst && cp $latest/{config.json,model.safetensors,provenance.json,README.md} $dst/
done
cp /tmp/sdtt/metrics.jsonl /tmp/keep/
send_back /tmp/keep
ls -la $OUT
