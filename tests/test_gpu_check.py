"""benchmarks/gpu_check.sh runs end to end: ``--cpu-smoke`` with clibd-tiny on the CPU, torchrun
with 2 gloo processes (the GPU run is the same script with clibd-paper, NCCL and CUDA)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_peak_by_gpu_name():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert gpu_check.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_check.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_check.peak_tflops("NVIDIA H200") == 989.0
    assert gpu_check.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_check.peak_tflops("Tesla T4") is None


@pytest.mark.slow
def test_cpu_smoke_runs_every_step(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "CLIBD": str(Path(sys.executable).with_name("clibd")),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-smoke", str(tmp_path / "check")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    folder = tmp_path / "check"
    assert "all steps passed" in done.stdout and (folder / "gpu_check.log").read_text() == done.stdout
    train = json.loads((folder / "train.json").read_text())
    assert train["batch_per_gpu"] == 16 and train["samples_per_s"] > 0 and 0 <= train["data_wait_share"] < 1
    assert train["flops_per_sample"] == pytest.approx(sum(train["flops_per_sample_by_tower"].values()))
    assert all(f > 0 for f in train["flops_per_sample_by_tower"].values()) and train["mfu"] is None
    steps = {json.loads(p.read_text())["name"]: json.loads(p.read_text()) for p in folder.glob("timed-*.json")}
    assert set(steps) == {"torchrun-train", "torchrun-embed", "embed-photos", "embed-barcodes", "index", "classify"}
    assert all(steps[name]["items"] > 0 for name in ("torchrun-embed", "embed-photos", "embed-barcodes", "classify"))
    assert json.loads((folder / "torchrun-train" / "args.json").read_text())["world_size"] == 2
    assert "torchrun embedding = one process" in done.stdout and "max |difference| 0.00e+00" in done.stdout
    assert (folder / "SUMMARY.md").read_text().count("\n") == 2 + 1 + len(steps)
