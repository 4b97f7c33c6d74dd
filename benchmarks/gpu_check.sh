#!/usr/bin/env bash
# One prepared check of clibd on a GPU (issue #20): about 6-8 minutes on one H100/H200-class GPU.
#
#   benchmarks/gpu_check.sh [--cpu-smoke] [FOLDER]        (FOLDER: default $OUT, else ./gpu-check)
#
# Prints, and writes to FOLDER gpu_check.log, SUMMARY.md and results.json (the data, models and
# embeddings go to $WORK, default a temporary folder removed after success):
#   1. clibd-paper training on a synthetic 224-px tri-modal set in bf16 at the largest per-GPU
#      batch up to 500 that fits: samples/s, MFU (FLOPs counted by FlopCounterMode, divided by the
#      GPU's dense bf16 peak), share of step time waiting for data, peak GPU memory;
#   2. `clibd train` and `clibd embed` started by torchrun (NCCL on the GPU);
#   3. `clibd embed` of the photos and of the barcodes on the GPU (items/s);
#   4. `clibd index` and `clibd classify --device cuda`.
# --cpu-smoke runs the same steps with clibd-tiny on a tiny set on the CPU, torchrun with 2 gloo
# processes (tests/test_gpu_check.py runs it). Runs this checkout's clibd with $PYTHON (python3;
# $CLIBD overrides the `clibd` command) and needs clibd's dependencies and the BOLD metadata CSV
# (../shared/data/bold-coi/metadata.csv.gz, or $BOLD_CSV); benchmarks/README.md: how to run it.
set -euo pipefail

smoke=0
folder="${OUT:-gpu-check}"
for arg in "$@"; do
    case "$arg" in
        --cpu-smoke) smoke=1 ;;
        -h|--help) sed -n '2,/^set /{/^set /!p}' "$0"; exit 0 ;;
        -*) echo "gpu_check.sh: unknown option $arg" >&2; exit 2 ;;
        *) folder="$arg" ;;
    esac
done
here="$(cd "$(dirname "$0")" && pwd)"
export PYTHONPATH="$(dirname "$here")${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's clibd, installed or not
python="${PYTHON:-python3}"
if [ -n "${CLIBD:-}" ]; then read -r -a clibd <<< "$CLIBD"; else clibd=("$python" -m clibd_cli); fi
bold=()
[ -n "${BOLD_CSV:-}" ] && bold=(--bold "$BOLD_CSV")
if [ "$smoke" = 1 ]; then
    device=cpu model=clibd-tiny nproc=2 species=12 per_species=6 size=32 max_batch=16 workers=0
    threads=(--threads 1) steps=(--warmup 1 --steps 2)
else
    device=cuda model=clibd-paper nproc=1 species=150 per_species=30 size=224 max_batch=500 workers=8
    threads=() steps=(--warmup 3 --steps 10)
fi
work="${WORK:-$(mktemp -d -t clibd-gpu-check.XXXXXX)}"
mkdir -p "$folder" "$work"
exec > >(tee "$folder/gpu_check.log") 2>&1
echo "gpu_check: results in $folder, work files in $work"
started=$SECONDS
step() { echo; echo "== $* ($((SECONDS - started)) s)"; }

step "environment"
"$python" - <<EOF
import torch, platform
print("torch", torch.__version__, "python", platform.python_version(), "cuda", torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("GPU:", p.name, f"{p.total_memory / 2**30:.0f} GiB", "bf16:", torch.cuda.is_bf16_supported(),
          "NCCL:", torch.cuda.nccl.version() if hasattr(torch.cuda, "nccl") else "n/a")
elif "$device" == "cuda":
    raise SystemExit("gpu_check: no CUDA GPU visible to PyTorch (use --cpu-smoke on a CPU)")
EOF

step "synthetic tri-modal set, ${size}-px photos"
data="$work/synthetic.h5"
"$python" "$here/gpu_check.py" data "$data" --species "$species" --per-species "$per_species" \
    --image-size "$size" "${bold[@]}"

step "training $model in bf16, largest batch up to $max_batch that fits"
"$python" "$here/gpu_check.py" train --model "$model" --data "$data" --out "$work/train" --device "$device" \
    --max-batch "$max_batch" --workers "$workers" "${threads[@]}" "${steps[@]}" --json "$work/train.json"
trained="$("$python" -c "import json,sys; print(json.load(open(sys.argv[1]))['run'])" "$work/train.json")/last"

timed() {  # timed NAME COUNT-FLAG COUNT-FILE -- COMMAND...
    local name="$1"; shift
    "$python" "$here/gpu_check.py" timed --name "$name" --json "$work/timed-$name.json" "$@"
}
step "torchrun: clibd train and clibd embed in $nproc process(es), $([ "$device" = cuda ] && echo NCCL || echo gloo)"
timed torchrun-train -- "$python" -m torch.distributed.run --standalone --nproc-per-node "$nproc" \
    -m clibd_cli --device "$device" "${threads[@]}" train --model "$model" --data "$data" \
    --modalities image,dna,text --max-steps 2 --batch-size 16 --workers "$workers" --val-limit 16 \
    --out "$work/torchrun-train"
grep -q '"world_size": '"$nproc" "$work/torchrun-train/args.json"
timed torchrun-embed --count-h5 "$work/torchrun-barcodes.h5" -- "$python" -m torch.distributed.run \
    --standalone --nproc-per-node "$nproc" -m clibd_cli -q --device "$device" "${threads[@]}" embed \
    -m "$trained" "$data" --modality dna -o "$work/torchrun-barcodes.h5"

step "clibd embed on $device: photos, then barcodes"
timed embed-photos --count-h5 "$work/photos.h5" -- "${clibd[@]}" -q --device "$device" "${threads[@]}" embed \
    -m "$trained" "$data" --modality image -o "$work/photos.h5"
timed embed-barcodes --count-h5 "$work/barcodes.h5" -- "${clibd[@]}" -q --device "$device" "${threads[@]}" embed \
    -m "$trained" "$data" --modality dna -o "$work/barcodes.h5"
"$python" - "$work/barcodes.h5" "$work/torchrun-barcodes.h5" <<'EOF'
import sys
import numpy as np
from clibd_cli.embedding.embeddings_file import read_embeddings
(ids, _, one, _), (ids2, _, two, _) = (read_embeddings(p) for p in sys.argv[1:])
assert ids == ids2, "torchrun embedding: other ids or order than one process"
print(f"torchrun embedding = one process: {len(ids)} ids in the same order, "
      f"max |difference| {np.abs(one - two).max():.2e}")
EOF

step "clibd index and clibd classify on $device"
"$python" "$here/gpu_check.py" queries "$data" "$work/queries.fasta" --split test
timed index --  "${clibd[@]}" -q --device "$device" "${threads[@]}" index -m "$trained" "$data" \
    --split train --split key_unseen -o "$work/index"
timed classify --count-tsv "$work/predictions.tsv" -- "${clibd[@]}" -q --device "$device" "${threads[@]}" \
    classify --index "$work/index" "$work/queries.fasta" -o "$work/predictions.tsv"

step "summary"
"$python" "$here/gpu_check.py" summary "$work" "$folder"
echo "gpu_check: all steps passed in $((SECONDS - started)) s; results in $folder"
[ -z "${WORK:-}" ] && rm -rf "$work"  # a temporary folder of ours; kept after a failure, to look into
exit 0
