#!/usr/bin/env bash
# How the bundled default model (models/pretrained/clibd-small-bold) and reference
# (clibd_cli/bundled/default-reference) were made, end to end. Maintainers only.
#
#   benchmarks/build_default_model.sh [WORK_DIR]      (default: build/default-model)
#
# 2-core CPU, no GPU: prepare 4 s, training ~75 min (1,800 steps of 64 = 1.8 epochs; one
# torch thread), export + reference index ~15 min. Deterministic for the given seed on the same
# hardware and library versions (bf16 autocast on CPU).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$here/build/default-model}
clibd=${CLIBD:-$here/.venv/bin/clibd}
python=${PYTHON:-$here/.venv/bin/python}
mkdir -p "$work"

"$clibd" prepare --format bioscan-5m "$here/../shared/data/bold-coi/metadata.csv.gz" -o "$work/bold.h5"
# Train on the pretrain + train splits (DNA and label text); val/test/unseen stay held out.
"$clibd" --threads 1 --seed 0 train --model clibd-small --data "$work/bold.h5" --out "$work/run" \
  --modalities dna,text --batch-size 64 --max-steps 1800 --lr 5e-4 --precision bf16 \
  --val-every 600 --val-limit 4000 --workers 1 --log-every 20
# fp16 weights into the package; reference index of the train split, packed (int8) into the package.
"$python" "$here/benchmarks/export_default_model.py" "$work/run/best" "$work/bold.h5" --workdir "$work"
