"""The scripts' console: progress line, events, one-line errors, quiet start-up."""

import io
import os
import subprocess
import sys
import time

import presets
import pytest
from helpers import REPO

from vnca_tf.common import cli
from vnca_tf.common.console import Console, duration
from vnca_tf.training.reporting import long_run_note


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_rate_and_eta_count_training_steps_only_and_skip_the_tracing_step():
    console = Console(100, stream=io.StringIO())
    assert console.steps_per_second is None
    console.step_done(30.0)  # The first step traces the graphs.
    assert console.steps_per_second is None
    assert "ETA" not in console.progress_line(1, "loss 1.00")
    for _ in range(4):
        console.step_done(0.5)
    assert console.steps_per_second == 2.0  # Validation and checkpoint time never enter.
    assert console.progress_line(20, "loss 1.00").endswith("2 steps/s | ETA 0:00:40")
    assert duration(3 * 86_400 + 3_661) == "3 days, 1:01:01"


def test_a_terminal_gets_a_line_redrawn_every_step_and_events_above_it():
    stream = _Terminal()
    console = Console(10, stream=stream)
    console.step_done(1.0)
    console.progress(1, "loss 5.00")
    console.progress(2, "loss 4.00")
    console.event("step 2: checkpoint x/ckpt-2")
    console.close()
    text = stream.getvalue()
    assert text.count("\r") >= 3 and "step 2/10 [##" in text
    before, after = text.split("step 2: checkpoint x/ckpt-2\n")
    assert before.endswith("\r") and after.startswith("step 2/10")  # Redrawn below it.
    assert text.endswith("\n")


def test_a_log_file_gets_a_progress_line_every_log_seconds_and_every_event():
    stream = io.StringIO()
    console = Console(1000, stream=stream, log_seconds=3600)
    for step in range(1, 6):
        console.step_done(0.1)
        console.progress(step, "loss 1.00", force=step == 5)
    console.event("step 5: validation loss 1.0")
    lines = stream.getvalue().splitlines()
    assert [line.split(" [")[0] for line in lines[:2]] == ["step 1/1,000", "step 5/1,000"]
    assert lines[2] == "step 5: validation loss 1.0" and "\r" not in stream.getvalue()
    Console(10, stream=stream, enabled=False).event("nothing")
    assert "nothing" not in stream.getvalue()


def test_start_up_noise_is_dropped_and_real_errors_kept():
    no_gpu = "\n".join(
        [
            "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",  # noqa: E501 (a verbatim log line)
            "I0000 00:00:1.2 1 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results",  # noqa: E501 (a verbatim log line)
            "I0000 00:00:1.3 1 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",  # noqa: E501 (a verbatim log line)
            "I0000 00:00:1.4 1 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.",  # noqa: E501 (a verbatim log line)
            "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.",  # noqa: E501 (a verbatim log line)
            "E0000 00:00:1.5 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",  # noqa: E501 (a verbatim log line)
            "E0000 00:00:1.6 1 some_op.cc:1] Out of memory while trying to allocate 4.0 GiB",
        ]
    )
    assert cli.kept_lines(no_gpu) == [no_gpu.splitlines()[-1]]
    broken_driver = "E0000 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_UNKNOWN"
    assert cli.kept_lines(broken_driver) == [broken_driver]  # A GPU machine: not noise.


def test_quiet_startup_passes_on_what_is_not_noise(capfd):
    with cli.quiet_startup():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 real.cc:1] a real error\n")
    assert capfd.readouterr().err == "E0000 real.cc:1] a real error\n"


@pytest.mark.slow
def test_scripts_start_quietly_and_answer_bad_input_in_one_line(tmp_path):
    """A script that imports TensorFlow and fails: one line on stderr."""
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "export.py"),
            f"--model_dir={tmp_path}",
            f"--export_dir={tmp_path / 'export'}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"},
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"Error: {tmp_path} is not a training folder: it has no config.json. Pass the "
        "--model_dir that train.py wrote to."
    ]


def test_the_watchdog_says_what_a_quiet_console_is_doing():
    stream = io.StringIO()
    console = Console(10, stream=stream, quiet_seconds=0.3)
    with console.working("loading celeb_a"):
        time.sleep(1.0)
    console.event("Loaded")
    time.sleep(0.6)  # Quiet, but doing nothing named: no line.
    console.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("... loading celeb_a (0:00:0") and lines[0].endswith(" so far)")
    assert 1 <= len(lines) - 1 <= 3 and lines[-1] == "Loaded"
    assert all(line.startswith("... loading celeb_a") for line in lines[:-1])


def test_a_run_of_more_than_a_day_here_gets_a_line_naming_a_cpu_preset():
    celeb_a = presets.get("celeb_a").model
    note = long_run_note(83.2, 99_998, 0, celeb_a)
    assert note == (
        "Note: at 83.2 s a step on the CPU (no GPU found), the 99,998 steps left "
        "take about 96 days here. On a machine like this, try --preset=mnist_cpu "
        "(made for a CPU)."
    )
    damage = presets.get("celeb_a_damage").model
    assert "--preset=mnist_damage_cpu" in long_run_note(47.0, 99_998, 2, damage)
    assert "on 2 GPU(s)" in long_run_note(47.0, 99_998, 2, damage)
    assert long_run_note(0.5, 99_998, 0, celeb_a) is None  # 14 hours: no line.
    baseline = long_run_note(20.0, 99_998, 0, presets.get("celeb_a_baseline").model)
    assert baseline.endswith(
        "On a machine like this, train it on GPUs: no convolutional baseline preset is "
        "made for a CPU."
    )
