#!/usr/bin/env bash
# The whole clibd workflow on a 3,000-record sample of the public BOLD barcodes, on a CPU in a
# few minutes: prepare -> train a tiny model -> embed -> index -> classify -> evaluate.
#
#   examples/end_to_end.sh [OUT_DIR]        (default: e2e-output; STEPS=N sets the training steps)
#
# Run again into the same OUT_DIR (after a Ctrl-C, say), it resumes the training run there, with the
# same STEPS (another value is refused: the run planned its steps; use a new OUT_DIR).
#
# The tiny model trains for a few hundred steps only, so its accuracy is far below the bundled
# clibd-fast-bold model's: this shows the commands and the files, not the accuracy.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-e2e-output}
clibd=${CLIBD:-$(command -v clibd || echo "$here/../.venv/bin/clibd")}
mkdir -p "$out"
step() { printf '\n== %s\n' "$*" >&2; }

step "prepare: BOLD CSV (BIOSCAN-5M layout) -> dataset HDF5 with the CLIBD splits"
"$clibd" prepare --format bioscan-5m "$here/bold-sample.csv.gz" -o "$out/bold-sample.h5"

step "train: align a tiny DNA encoder with the taxonomy labels (contrastive, CPU)"
resume=
[ -d "$out/run/last" ] && resume=--resume  # a rerun goes on from where an earlier one stopped (or ended)
"$clibd" --seed 0 train --model clibd-tiny --data "$out/bold-sample.h5" --modalities dna,text \
  --max-steps "${STEPS:-300}" --batch-size 32 --lr 1e-3 --val-limit 500 --out "$out/run" $resume

step "embed: vectors of the example barcodes, for your own analyses"
"$clibd" embed --model "$out/run/best" "$here/barcodes.fasta" -o "$out/barcodes.h5"

step "index: embed the labelled reference barcodes (train split) into an HNSW index"
"$clibd" index --model "$out/run/best" "$out/bold-sample.h5" --split train -o "$out/reference"

step "classify: the example barcodes -> one TSV row each (order -> species, with confidences)"
"$clibd" classify --index "$out/reference" "$here/barcodes.fasta" -o "$out/predictions.tsv"
cut -f 1,3-7 "$out/predictions.tsv" >&2

step "evaluate: the paper's protocol on the held-out splits, with the k-mer baseline"
"$clibd" evaluate --model "$out/run/best" --data "$out/bold-sample.h5" --on test --baselines kmer \
  -o "$out/report"  # prints where its report.html is
