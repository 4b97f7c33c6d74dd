#!/usr/bin/env bash
# How the bundled default model (models/pretrained/clibd-fast-bold) and reference
# (clibd_cli/bundled/default-reference) were made, end to end. Maintainers only.
#
#   benchmarks/build_default_model.sh [WORK_DIR]      (default: build/default-model)
#
# 2-core CPU, no GPU: prepare 4 s; training 4 epochs (992 steps of 256) of the kmer-bag
# tower (5- and 7-mers: the clibd-fast preset), one torch thread plus one data-loading process,
# ~28 min (see the model card);
# export + reference index ~1 min. Deterministic for the given seed on the same hardware and
# library versions.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$here/build/default-model}
clibd=${CLIBD:-$here/.venv/bin/clibd}
python=${PYTHON:-$here/.venv/bin/python}
mkdir -p "$work"

"$clibd" prepare --format bioscan-5m "$here/../shared/data/bold-coi/metadata.csv.gz" -o "$work/bold.h5"
# Train on the pretrain + train splits (DNA and label text); val/test/unseen stay held out.
# Positives: every record with the same label string in the batch (multi-hot targets), plus one
# term per rank against the label strings cut at order, family and genus (--label-ranks).
"$clibd" --threads 1 --seed 0 train --model clibd-fast --data "$work/bold.h5" --out "$work/run" \
  --modalities dna,text --positives label --label-ranks order,family,genus \
  --batch-size 256 --epochs 4 --lr 2e-3 --warmup 0.1 \
  --val-limit 4000 --workers 1 --log-every 20
# fp16 weights into the package; reference index of the train split, calibrated on val + val_unseen,
# packed (int8) into the package.
"$python" "$here/benchmarks/export_default_model.py" "$work/run/best" "$work/bold.h5" --workdir "$work"
