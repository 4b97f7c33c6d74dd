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
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",  # clibd as python -m clibd_cli
           "WORK": str(tmp_path / "work")}
    for name in ("OUT", "CLIBD", "BOLD_CSV"):
        env.pop(name, None)
    folder = tmp_path / "check"
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-smoke", str(folder)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "all steps passed" in done.stdout and (folder / "gpu_check.log").read_text() == done.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["SUMMARY.md", "gpu_check.log", "results.json"]
    results = json.loads((folder / "results.json").read_text())
    train = results["train"]
    assert train["batch_per_gpu"] == 16 and train["samples_per_s"] > 0 and 0 <= train["data_wait_share"] < 1
    assert train["flops_per_sample"] == pytest.approx(sum(train["flops_per_sample_by_tower"].values()))
    assert all(f > 0 for f in train["flops_per_sample_by_tower"].values()) and train["mfu"] is None
    steps = {step["name"]: step for step in results["steps"]}
    assert list(steps) == ["torchrun-train", "torchrun-embed", "embed-photos", "embed-barcodes", "index", "classify"]
    assert all(steps[name]["items"] > 0 for name in ("torchrun-embed", "embed-photos", "embed-barcodes", "classify"))
    assert json.loads((tmp_path / "work" / "torchrun-train" / "args.json").read_text())["world_size"] == 2
    assert "torchrun embedding = one process" in done.stdout and "max |difference| 0.00e+00" in done.stdout
    assert (folder / "SUMMARY.md").read_text().count("\n") == 2 + 1 + len(steps)
