#!/usr/bin/env bash
# Classify examples/barcodes.fasta against the public BOLD barcodes shipped in ../shared:
# prepare the dataset, build a reference index of its `train` split with the model-free
# k-mer profile embedding (about 1.5 min on 2 cores, done once), then classify.
# Usage: examples/quickstart.sh [OUTPUT_DIR] [QUERY.fasta]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-demo-output}
queries=${2:-$here/barcodes.fasta}
bold=${BOLD:-$here/../../shared/data/bold-coi/metadata.csv.gz}
clibd=${CLIBD:-$(command -v clibd || echo "$here/../.venv/bin/clibd")}

mkdir -p "$out"
if [ ! -f "$out/bold.h5" ]; then
  "$clibd" -q prepare --format bioscan-5m "$bold" -o "$out/bold.h5" > /dev/null
fi
if [ ! -f "$out/bold_kmer_ref/manifest.json" ]; then
  echo "building the BOLD reference index (once)..." >&2
  "$clibd" -q index --model kmer "$out/bold.h5" --split train -o "$out/bold_kmer_ref" > /dev/null
fi
"$clibd" classify --index "$out/bold_kmer_ref" "$queries"
