#!/usr/bin/env bash
# A metabarcoding run in two steps: dereplicate each sample's reads with vsearch, then classify
# the unique barcodes of all samples at once with clibd and summarise reads per taxon and sample.
#
#   examples/pipeline/run.sh READS_DIR OUT_DIR [clibd classify options...]
#   examples/pipeline/run.sh examples/pipeline/reads out/                  # bundled BOLD reference
#   examples/pipeline/run.sh reads/ out/ --index coi_ref/ --min-confidence 0.9
#
# READS_DIR holds one FASTA/FASTQ file per sample (gzip or bzip2 ok), named after the sample.
# OUT_DIR gets derep/SAMPLE.fasta (unique sequences, ids SAMPLE.N;size=READS), predictions.tsv (one
# row per unique sequence), summary.tsv, summary.html and summary.SAMPLE.krona.txt (reads per taxon).
# Set CLIBD and VSEARCH to the executables if they are not on PATH. The same steps as a
# Snakemake workflow: examples/pipeline/Snakefile.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
reads=$1 out=$2
shift 2
clibd=${CLIBD:-$(command -v clibd || echo "$(dirname "$0")/../../.venv/bin/clibd")}
vsearch=${VSEARCH:-vsearch}
mkdir -p "$out/derep"
shopt -s nullglob nocaseglob  # BOLD's downloads are .fas; POND.FASTQ as pond.fastq
samples=()
for input in "$reads"/*.{fasta,fa,fna,fas,fastq,fq}{,.gz,.bz2}; do  # what vsearch reads (not xz)
  name=$(basename "$input")
  case ${name,,} in *.gz | *.bz2) name=${name%.*} ;; esac
  name=${name%.*}
  for earlier in ${samples[@]+"${samples[@]}"}; do
    if [ "$earlier" = "$out/derep/$name.fasta" ]; then  # a.fasta and a.fastq.gz: one sample twice
      echo "run.sh: $input is a second file of sample $name; rename one" >&2
      exit 1
    fi
  done
  "$vsearch" --fastx_uniques "$input" --fastaout "$out/derep/$name.fasta" --sizeout --relabel "$name." \
    --threads 1 --quiet
  samples+=("$out/derep/$name.fasta")
done
if [ ${#samples[@]} -eq 0 ]; then
  echo "run.sh: no FASTA/FASTQ files in $reads" >&2
  exit 1
fi
"$clibd" -q classify "$@" "${samples[@]}" -o "$out/predictions.tsv" --summary "$out/summary.tsv"
echo "${#samples[@]} samples: $out/predictions.tsv, $out/summary.tsv, $out/summary.html" >&2
