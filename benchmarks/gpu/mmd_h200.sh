#!/usr/bin/env bash
# One short H200 lease: representation-space MMD at a paper-like batch (256 rows; the paper's is 512, lr 1e-4, bf16:
# arXiv 2610.06648 §5) for MINUTES of training, checkpoints every 200 steps; the last two come back split under $OUT.
MINUTES=${MINUTES:-2.5}
source "$(dirname "$0")/lease.sh"
didi-seq distill --domain text --method mmd --device ${DEV:-cuda} ${BF16:---bf16} --batch-size ${BATCH:-256} --lr 1e-4 --ema 0.99 \
  --steps 100000 --ckpt-every ${EVERY:-200} --max-minutes $MINUTES --threads 8 --out /tmp/mmd 2>$OUT/train.log >/dev/null
mkdir -p /tmp/keep
for c in /tmp/mmd/checkpoints/*; do
  d=/tmp/keep/$(basename $c); mkdir -p $d && cp $c/{config.json,model.safetensors,provenance.json,README.md} $d/
done
cp /tmp/mmd/metrics.jsonl /tmp/keep/
send_back /tmp/keep
ls -la $OUT /tmp/keep
