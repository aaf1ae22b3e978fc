"""benchmarks/gpu_check.py as far as a CPU takes it: its arguments, the dry
run's JSON, and how it reads what each GPU step leaves behind."""

import importlib.util
import json
import os
import subprocess
import sys

import presets
import pytest
from helpers import REPO

from vnca_tf.configs import RunConfig
from vnca_tf.training.loop import Trainer

SCRIPT = os.path.join(REPO, "benchmarks", "gpu_check.py")
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def _run(*flags):
    return subprocess.run([sys.executable, SCRIPT, *flags], capture_output=True, text=True)


@pytest.mark.slow
def test_a_dry_run_lists_the_devices_and_records_the_gpu_steps_as_skipped(tmp_path):
    result = _run("--dry_run", f"--output={tmp_path}")
    assert result.returncode == 0, result.stderr
    report = json.load(open(tmp_path / "gpu_check.json"))
    steps = report["steps"]
    assert report["dry_run"] is True
    assert list(steps) == ["install", "devices", "gpu_tests", "benchmarks", "train"]
    assert steps["devices"]["status"] == "ok"
    assert "/physical_device:CPU:0" in steps["devices"]["results"]["devices"]
    assert steps["devices"]["results"]["tensorflow"].startswith("2.")
    for step in ("install", "gpu_tests", "benchmarks", "train"):
        assert steps[step]["status"] == "skipped" and steps[step]["reason"] == "--dry_run"
    assert "--only=" + ",".join(gpu_check.BENCHMARK_CASES) in steps["benchmarks"]["command"]
    assert "--num_steps=200" in steps["train"]["command"]
    assert steps["gpu_tests"]["command"][2:6] == ["pytest", "-q", "-m", "gpu"]


@pytest.mark.parametrize(
    "flags, message",
    [
        ([], "--data_dir is required (or --dry_run)"),
        (["--data_dir=/nonexistent"], "no binarized_mnist/ in --data_dir=/nonexistent"),
        (["--dry_run", "--repeats=0"], "--repeats must be >= 1, got 0"),
        (["--dry_run", f"--output={SCRIPT}"], "is a file; give a folder"),
    ],
)
def test_bad_arguments_are_one_line(flags, message):
    result = _run(*flags)
    assert result.returncode == 2 and result.stdout == ""
    assert message in result.stderr.strip().splitlines()[-1]  # argparse: usage, then error.


@pytest.mark.slow
def test_without_a_gpu_the_real_run_stops_after_the_devices(tmp_path, data_dir):
    result = _run(f"--data_dir={data_dir}", "--no_install", f"--output={tmp_path}")
    assert result.returncode == 1
    assert result.stderr.strip() == gpu_check.NO_GPU
    steps = json.load(open(tmp_path / "gpu_check.json"))["steps"]
    assert steps["install"]["reason"] == "--no_install"
    assert steps["devices"]["status"] == "failed" and list(steps) == ["install", "devices"]


@pytest.mark.slow
def test_the_results_of_each_gpu_step_are_read(tmp_path, data_dir):
    (tmp_path / "gpu_tests.xml").write_text(
        '<testsuites><testsuite tests="6" failures="1" errors="0" skipped="0">'
        "</testsuite></testsuites>"
    )
    assert gpu_check.read_results("gpu_tests", str(tmp_path), "") == {
        "tests": 6,
        "failures": 1,
        "errors": 0,
        "skipped": 0,
    }
    (tmp_path / "benchmarks.json").write_text(json.dumps({"results": [{"case": "x"}]}))
    assert gpu_check.read_results("benchmarks", str(tmp_path), "") == [{"case": "x"}]
    # What train.py's Trainer writes, in this process (train.py itself runs in
    # test_training's test_cli_prints_and_saves_its_configuration_and_explains_bad_flags),
    # read as the GPU check reads it.
    run = RunConfig(data_dir=data_dir)
    Trainer(presets.get("test_mnist"), str(tmp_path / "train"), run=run).train(2, progress=False)
    read = gpu_check.read_results("train", str(tmp_path), "step 2/2 | 12.5 steps/s | ETA 0:00")
    assert read["steps_per_s"] == 12.5
    assert read["scalars_written"]["loss"] == 2  # Steps 1 and 2.
