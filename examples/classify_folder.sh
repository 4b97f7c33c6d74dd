#!/usr/bin/env bash
# Classify every FASTA/FASTQ file in a folder (.fasta .fa .fna .fas .fastq .fq, any case; gzip, bzip2
# or xz ok), one TSV per input, as a lab's batch job.
#
#   examples/classify_folder.sh RUNS_DIR OUT_DIR [clibd classify options...]
#   examples/classify_folder.sh runs/ predictions/                      # bundled BOLD reference
#   examples/classify_folder.sh runs/ predictions/ --index coi_ref/ --min-confidence 0.9
#
# A file already classified (its TSV exists) is skipped, so an interrupted batch resumes where it
# stopped; each TSV appears only when complete, with clibd's messages about it (the estimated
# share of new species, why a record is invalid) in OUT_DIR/NAME.log. A file that fails (or shares
# its NAME with another) is reported and the batch goes on. Exit status: 1 if any failed or RUNS_DIR
# holds none, 2 if RUNS_DIR is not a folder, 130 if interrupted (Ctrl-C). Set CLIBD to clibd if not
# on PATH.
set -uo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
runs=${1%/} out=${2%/}  # RUNS/ and RUNS alike
shift 2
if [ ! -d "$runs" ]; then
  echo "classify_folder.sh: $runs is not a folder" >&2
  exit 2
fi
clibd=${CLIBD:-$(command -v clibd || echo "$(dirname "$0")/../.venv/bin/clibd")}
mkdir -p "$out"
failed=0 done=0 skipped=0 inputs=0
claimed=$'\n'  # the names whose TSV an input of this batch writes, one a line
shopt -s nullglob nocaseglob  # BOLD's downloads are .fas; RUN1.FASTA as run1.fasta
for input in "$runs"/*.{fasta,fa,fna,fas,fastq,fq}{,.gz,.bz2,.xz}; do
  name=$(basename "$input")
  case ${name,,} in *.gz | *.bz2 | *.xz) name=${name%.*} ;; esac
  name=${name%.*}
  tsv="$out/$name.tsv"
  inputs=$((inputs + 1))
  case $claimed in
    *$'\n'"$name"$'\n'*)  # a.fasta and a.fastq.gz: one TSV cannot hold both
      failed=$((failed + 1))
      echo "  failed: $input: another input of this name also goes to $tsv; rename one" >&2
      continue ;;
  esac
  claimed+="$name"$'\n'
  if [ -s "$tsv" ]; then
    skipped=$((skipped + 1))
    continue
  fi
  echo "classifying $input" >&2
  "$clibd" classify "$@" "$input" -o "$tsv" 2> "$out/$name.log"
  status=$?
  if [ "$status" -eq 0 ]; then
    done=$((done + 1))
    [ -s "$out/$name.log" ] || rm -f "$out/$name.log"
  elif [ "$status" -eq 130 ] || [ "$status" -eq 143 ]; then  # Ctrl-C, kill: stop; a rerun resumes with this file
    echo "interrupted: $done classified; rerun to go on" >&2
    exit 130
  else
    failed=$((failed + 1))
    echo "  failed: $(tail -n 1 "$out/$name.log")" >&2
  fi
done
if [ "$inputs" -eq 0 ]; then
  echo "classify_folder.sh: no FASTA/FASTQ files in $runs" >&2
  exit 1
fi
echo "$done classified, $skipped already done, $failed failed (TSVs in $out)" >&2
[ "$failed" -eq 0 ]
