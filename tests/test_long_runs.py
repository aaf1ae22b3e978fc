"""Long runs a researcher can trust (train.py): every stop keeps its work, one
run per folder, faults answered in one line, a console and TensorBoard that
speak from the first seconds."""

import contextlib
import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import presets
import pytest
import tensorflow as tf
from helpers import REPO, state_variables

from vnca_tf.common import faults, run_lock, stopping
from vnca_tf.configs import RunConfig
from vnca_tf.training import loop

TINY = [presets.flag("test_mnist"), "--validation_every=100000", "--image_every=100000"]


class Run:
    """train.py in a process of its own; its stdout and stderr lines, each with
    the time it came, read as they come."""

    def __init__(self, args, env=None):
        self.began = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(REPO, "train.py"), *args],
            cwd=REPO,
            env={**(env or os.environ), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = {"out": [], "err": []}
        self._readers = [
            threading.Thread(target=self._read, args=(stream, name), daemon=True)
            for stream, name in ((self.process.stdout, "out"), (self.process.stderr, "err"))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, name):
        for line in stream:
            self.lines[name].append((time.monotonic() - self.began, line.rstrip("\n")))

    def wait_for(self, pattern, stream="out", timeout=240.0):
        """The time (since the start) of the first line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, line in list(self.lines[stream]):
                if re.search(pattern, line):
                    return when
            if self.process.poll() is not None and not any(r.is_alive() for r in self._readers):
                break
            time.sleep(0.05)
        raise AssertionError(
            f"No line {pattern!r} on std{stream}: {self.text(stream)[-3000:]}"
            f"\nstderr: {self.text('err')[-3000:]}"
        )

    def finish(self, timeout=240.0):
        self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return self.process.returncode

    def text(self, stream="out"):
        return "\n".join(line for _, line in self.lines[stream])

    def kill(self):
        self.process.kill()
        self.finish()


@pytest.fixture
def runs():
    """Runs started by a test, killed if the test leaves them running."""
    started = []
    yield lambda *args, **kwargs: started.append(Run(*args, **kwargs)) or started[-1]
    for run in started:
        if run.process.poll() is None:
            run.kill()


def _step_of(checkpoint):
    return int(tf.train.load_checkpoint(checkpoint).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


@pytest.mark.slow
def test_sigint_is_acknowledged_at_once_and_the_step_in_flight_is_checkpointed(
    tmp_path, data_dir, runs
):
    # The signal comes while step 1 builds (seconds of tracing): it is
    # acknowledged before that step ends, which then finishes and is saved.
    run = runs(
        TINY
        + [
            f"--model_dir={tmp_path}",
            f"--data_dir={data_dir}",
            "--num_steps=100000",
            "--checkpoint_every=100000",
        ]
    )
    run.wait_for(r"^Building the training step")
    sent = time.monotonic() - run.began
    run.process.send_signal(signal.SIGINT)
    acknowledged = run.wait_for(
        r"^SIGINT: stopping after step 1, then writing a checkpoint", stream="err"
    )
    assert run.finish() == 130
    assert acknowledged - sent < 2.0  # At once, while step 1 was still being built.
    assert acknowledged < run.wait_for(r"^step 1 took")
    assert run.lines["err"][-1][1] == (
        f"Stopped by SIGINT after step 1: checkpoint "
        f"{tmp_path}/checkpoints/ckpt-1. Run the same command "
        "to resume."
    )
    assert _step_of(f"{tmp_path}/checkpoints/ckpt-1") == 1
    assert not os.path.exists(tmp_path / run_lock.LOCK_FILE)  # The folder is free again.


@pytest.mark.slow
def test_a_second_sigint_quits_at_once(tmp_path, data_dir, runs):
    run = runs(
        TINY
        + [
            f"--model_dir={tmp_path}",
            f"--data_dir={data_dir}",
            "--num_steps=100000",
            "--checkpoint_every=100000",
        ]
    )
    run.wait_for(r"^Building the training step")
    run.process.send_signal(signal.SIGINT)
    run.wait_for(r"^SIGINT: stopping after step 1", stream="err")
    sent = time.monotonic()
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 130
    assert time.monotonic() - sent < 2.0
    assert run.lines["err"][-1][1] == "SIGINT again: quitting at once."
    assert "step 1 took" not in run.text()  # Step 1 was abandoned, unsaved.
    assert not glob.glob(f"{tmp_path}/checkpoints/ckpt-*")
    assert not os.path.exists(tmp_path / run_lock.LOCK_FILE)


@pytest.mark.slow
def test_a_sigterm_mid_run_then_a_rerun_resumes_exactly(tmp_path, data_dir, runs):
    # Op determinism on, a non-doubling model with its pool: stopped by
    # SIGTERM at some step k, resumed to k + 3, it equals k + 3 steps in one go.
    common = [
        presets.flag("test_mnist_damage"),
        f"--data_dir={data_dir}",
        "--deterministic",
        "--checkpoint_every=100000",
        "--validation_every=100000",
        "--image_every=100000",
    ]
    halves, whole = str(tmp_path / "halves"), str(tmp_path / "whole")
    run = runs(common + [f"--model_dir={halves}", "--num_steps=100000"])
    run.wait_for(r"^step 1 took")
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 143
    stopped = re.fullmatch(
        r"Stopped by SIGTERM after step (\d+): checkpoint (\S+)\. Run the "
        r"same command to resume\.",
        run.lines["err"][-1][1],
    )
    assert stopped, run.text("err")
    step = int(stopped.group(1))
    assert stopped.group(2) == f"{halves}/checkpoints/ckpt-{step}" and step >= 1
    resumed = runs(common + [f"--model_dir={halves}", f"--num_steps={step + 3}"])
    assert resumed.finish() == 0, resumed.text("err")
    assert f"Resumed from {halves}/checkpoints/ckpt-{step} at step {step}" in resumed.text()
    straight = runs(common + [f"--model_dir={whole}", f"--num_steps={step + 3}"])
    assert straight.finish() == 0, straight.text("err")
    first, second = (
        tf.train.load_checkpoint(f"{folder}/checkpoints/ckpt-{step + 3}")
        for folder in (whole, halves)
    )
    names = state_variables(f"{whole}/checkpoints/ckpt-{step + 3}")
    assert any("pool/cells" in n for n in names) and any("optimizer" in n for n in names)
    for name in names:
        np.testing.assert_array_equal(first.get_tensor(name), second.get_tensor(name), err_msg=name)
    # The training time carries over the restart.
    seconds = [
        tf.train.load_checkpoint(f"{halves}/checkpoints/ckpt-{s}").get_tensor(
            "train_seconds/.ATTRIBUTES/VARIABLE_VALUE"
        )
        for s in (step, step + 3)
    ]
    assert 0 < seconds[0] < seconds[1]


@pytest.mark.slow
def test_a_second_run_in_the_folder_is_refused_and_a_dead_runs_lock_taken_over(
    tmp_path, data_dir, runs
):
    first = runs(TINY + [f"--model_dir={tmp_path}", f"--data_dir={data_dir}", "--num_steps=100000"])
    first.wait_for(r"^Building the training step")
    second = runs(
        TINY + [f"--model_dir={tmp_path}", f"--data_dir={data_dir}", "--num_steps=3", "--seed=1"]
    )
    assert second.finish() == 2
    holder = json.loads((tmp_path / run_lock.LOCK_FILE).read_text())
    assert holder["pid"] == first.process.pid
    assert second.text("err") == (
        f"Error: {tmp_path} is in use by the run started {holder['started']} on "
        f"{holder['host']} (pid {first.process.pid}): one run per folder. Wait for it to "
        "end (Ctrl-C stops it with a checkpoint), or pick another --model_dir."
    )
    assert second.text() == ""  # Refused before it said or wrote anything.
    first.process.kill()  # Gone without releasing its lock.
    first.finish()
    third = runs(TINY + [f"--model_dir={tmp_path}", f"--data_dir={data_dir}", "--num_steps=3"])
    assert third.finish() == 0, third.text("err")
    assert third.text("err").splitlines()[0] == (
        f"Warning: took over {tmp_path}/{run_lock.LOCK_FILE}, left by the run started "
        f"{holder['started']} on {holder['host']} (pid {first.process.pid}): process "
        f"{first.process.pid} no longer exists."
    )
    assert not os.path.exists(tmp_path / run_lock.LOCK_FILE)


def test_a_lock_from_another_host_is_stale_once_it_is_no_longer_refreshed(tmp_path):
    (tmp_path / run_lock.LOCK_FILE).write_text(
        json.dumps({"host": "elsewhere", "pid": 1, "started": "2026-12-01T00:00:00+00:00"})
    )
    with pytest.raises(
        run_lock.LockedError,
        match="in use by the run started 2026-12-01T00:00:00.00:00 on elsewhere",
    ):
        run_lock.RunLock(str(tmp_path), stale_seconds=60).acquire()
    old = time.time() - 61  # Its host stopped refreshing it a minute ago.
    os.utime(tmp_path / run_lock.LOCK_FILE, (old, old))
    lock = run_lock.RunLock(str(tmp_path), stale_seconds=60, heartbeat_seconds=0.1)
    assert "not refreshed for 61 s" in lock.acquire()
    before = os.path.getmtime(tmp_path / run_lock.LOCK_FILE)
    time.sleep(0.5)  # The holder refreshes it.
    assert os.path.getmtime(tmp_path / run_lock.LOCK_FILE) > before
    lock.release()
    assert not os.path.exists(tmp_path / run_lock.LOCK_FILE)


@pytest.mark.slow
@pytest.mark.parametrize("end", ["timeout", "sigint"])
def test_a_cluster_whose_worker_never_comes_says_so_and_ends(end, tmp_path, data_dir, runs):
    from test_training import _free_ports

    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    env = {
        **os.environ,
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}),
    }
    timeout = 12 if end == "timeout" else 600
    run = runs(
        TINY
        + [
            f"--model_dir={tmp_path / 'run'}",
            f"--data_dir={data_dir}",
            f"--worker_timeout={timeout}",
        ],
        env=env,
    )
    said = run.wait_for(
        rf"^Waiting for the cluster: worker 1 at 127\.0\.0\.1:{ports[1]} "
        r"does not answer yet \(\d+ s so far; giving up after "
        rf"{timeout} s\)"
    )
    assert said < 30  # Within seconds of TensorFlow's start.
    if end == "sigint":
        sent = time.monotonic() - run.began
        run.process.send_signal(signal.SIGINT)
        ended = run.wait_for(
            r"^SIGINT while waiting for the cluster: quitting at once", stream="err"
        )
        assert ended - sent < 3.0
    else:
        run.wait_for(
            rf"^Error: worker 1 at 127\.0\.0\.1:{ports[1]} did not join the "
            rf"cluster within {timeout} s \(--worker_timeout\)\.",
            stream="err",
        )
    # TensorFlow's wait holds the interpreter: the watcher ends it with SIGKILL.
    assert run.finish() == -signal.SIGKILL
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.slow
def test_resuming_at_or_past_the_end_changes_nothing(tmp_path, data_dir, runs):
    done = runs(TINY + [f"--model_dir={tmp_path}", f"--data_dir={data_dir}", "--num_steps=4"])
    assert done.finish() == 0
    config = (tmp_path / "config.json").read_bytes()
    again = runs(TINY + [f"--model_dir={tmp_path}", f"--data_dir={data_dir}", "--num_steps=3"])
    assert again.finish() == 0, again.text("err")
    assert again.text().splitlines()[-1] == (
        f"{tmp_path} is already at step 4 of --num_steps=3: nothing to do (config.json unchanged)."
    )
    assert (tmp_path / "config.json").read_bytes() == config
    assert [os.path.basename(p) for p in sorted(glob.glob(f"{tmp_path}/checkpoints/ckpt-*"))] == [
        "ckpt-4.data-00000-of-00001",
        "ckpt-4.index",
    ]


@pytest.mark.slow
def test_the_console_speaks_from_the_first_seconds_and_tensorboard_from_the_first_step(
    tmp_path, data_dir, runs
):
    run = runs(
        TINY
        + [
            f"--model_dir={tmp_path}",
            f"--data_dir={data_dir}",
            "--num_steps=100000",
            "--log_every=100000",
            "--checkpoint_every=100000",
            "--console_seconds=1",
        ]
    )
    times = [
        run.wait_for(pattern)
        for pattern in (
            r"^Training test_mnist on binarized_mnist",
            r"^Loading binarized_mnist \(train\) \.\.\.$",
            r"^Loaded 50,000 training images in \d+\.\d s$",
            r"^Validation: 80 images drawn with seed 0 from binarized_mnist validation; "
            r"the best checkpoint is kept by their loss$",
            r"^Building the training step \(tracing the graph\) \.\.\.$",
            r"^step 1 took \d+\.\d s \(building the step included\)$",
            r"^step 1/100,000 \[\.+\] \| loss \d+\.\d\d \(ELBO -\d+\.\d\d nats\)$",
            r"^step [\d,]+/100,000 .* \| \d.* steps/s \| ETA \d",
        )
    ]
    assert times == sorted(times)
    assert times[1] < 60  # The load is announced once TensorFlow has started.
    # Scalars of step 1 are in TensorBoard's files while the run goes on,
    # although --log_every is 100,000.
    steps = []
    deadline = time.monotonic() + 60
    while 1 not in steps and time.monotonic() < deadline:
        for path in glob.glob(f"{tmp_path}/train/events.out.tfevents.*"):
            steps = [
                event.step
                for event in tf.compat.v1.train.summary_iterator(path)
                for value in event.summary.value
                if value.tag == "loss"
            ]
        time.sleep(0.5)
    assert steps[:1] == [1] and run.process.poll() is None
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 143


@pytest.mark.slow
def test_scalars_come_by_time_whatever_log_every_is(tmp_path, data_dir):
    def logged_steps(folder, **train):
        preset = presets.get("test_mnist")
        preset = preset.__class__(
            **{
                **preset.__dict__,
                "train": preset.train.__class__(
                    **{
                        **preset.train.__dict__,
                        "log_every": 1000,
                        "validation_every": 1000,
                        "image_every": 1000,
                        "checkpoint_every": 1000,
                        **train,
                    }
                ),
            }
        )
        loop.Trainer(preset, str(tmp_path / folder), run=RunConfig(data_dir=data_dir)).train(
            5, progress=False
        )
        (path,) = glob.glob(f"{tmp_path / folder}/train/events.out.tfevents.*")
        return [
            event.step
            for event in tf.compat.v1.train.summary_iterator(path)
            for value in event.summary.value
            if value.tag == "loss"
        ]

    assert logged_steps("hourly", log_minutes=60) == [1, 5]  # The first and the last.
    assert logged_steps("always", log_minutes=1e-9) == [1, 2, 3, 4, 5]


def _mount_tmpfs(folder, options):
    """Mounts a tmpfs on ``folder``; False where this machine does not allow it."""
    os.makedirs(folder, exist_ok=True)
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
        ).returncode
        == 0
    )


@contextlib.contextmanager
def _tmpfs(folder, options):
    mounted = _mount_tmpfs(folder, options)
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_full_disk_ends_in_one_line_naming_the_last_intact_checkpoint(
    tmp_path, data_dir, runs, monkeypatch
):
    disk = tmp_path / "disk"
    args = TINY + [
        f"--model_dir={disk / 'run'}",
        f"--data_dir={data_dir}",
        "--num_steps=50",
        "--checkpoint_every=2",
    ]
    checkpoints = f"{disk}/run/checkpoints"
    failed = (
        rf"Writing the checkpoint of step 6 to {checkpoints} failed: the disk is full "
        r"\(.*No space left on device\); free some space\."
    )
    with _tmpfs(disk, "size=2500k") as mounted:  # Room for two checkpoints of ~1 MB.
        if mounted:
            run = runs(args)
            assert run.finish() == 2
            assert re.fullmatch(
                rf"Error: {failed} The last intact checkpoint is "
                rf"{checkpoints}/ckpt-4; once that is fixed, run the same "
                r"command to resume from it\.",
                run.text("err"),
            ), run.text("err")
        else:  # No mount here: the same error, injected into a save.
            trainer = loop.Trainer(
                presets.get("test_mnist"), str(disk / "run"), run=RunConfig(data_dir=data_dir)
            )
            trainer.train(4, progress=False)
            monkeypatch.setattr(trainer.state.managers["latest"], "save", _no_space)
            with pytest.raises(faults.FaultError) as raised:
                trainer.train(6, progress=False)
            assert re.fullmatch(failed, str(raised.value)), str(raised.value)
            assert trainer.last_checkpoint() == f"{checkpoints}/ckpt-4"
        assert not glob.glob(f"{checkpoints}/*_temp*")  # No leftover blocks a resume.
        if mounted:  # With room again, the same command resumes from ckpt-4.
            subprocess.run(["mount", "-o", "remount,size=50m", str(disk)], check=True)
            os.makedirs(f"{checkpoints}/ckpt-6_temp")  # A leftover of a crash.
            rerun = runs(
                TINY
                + [
                    f"--model_dir={disk / 'run'}",
                    f"--data_dir={data_dir}",
                    "--num_steps=8",
                    "--checkpoint_every=2",
                ]
            )
            assert rerun.finish() == 0, rerun.text("err")
            assert f"Resumed from {checkpoints}/ckpt-4 at step 4" in rerun.text()
            assert _step_of(f"{checkpoints}/ckpt-8") == 8


def _no_space(*args, **kwargs):
    raise tf.errors.ResourceExhaustedError(
        None, None, "/x/ckpt-6_temp/part-00000; No space left on device"
    )


def _forbidden_folder(tmp_path):
    """A folder where this process may not create anything: one without write
    permission, or for root (whom permissions do not stop) one in sysfs."""
    if os.geteuid() == 0:
        return "/sys/vnca_tf_test"
    folder = tmp_path / "forbidden"
    os.makedirs(folder)
    os.chmod(folder, 0o555)
    return str(folder)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["read-only", "no permission"])
def test_a_folder_that_cannot_be_written_ends_in_one_line(fault, tmp_path, data_dir, runs):
    parent = tmp_path / "readonly"
    with _tmpfs(parent, "ro,size=1m") as mounted:
        if fault == "no permission" or not mounted:
            parent, fault = _forbidden_folder(tmp_path), "no permission"
        run = runs(TINY + [f"--model_dir={parent}/run", f"--data_dir={data_dir}", "--num_steps=2"])
        assert run.finish() == 2
    reason = "the file system is read-only" if fault == "read-only" else "no permission"
    assert re.fullmatch(
        rf"Error: Taking the run's folder {parent}/run failed: {reason} "
        r"\(.*\); pick a (writable folder|folder you may write to)\. No "
        r"checkpoint had been written yet\.",
        run.text("err"),
    ), run.text("err")


@pytest.mark.slow
def test_a_stop_request_is_answered_after_the_step_in_flight(tmp_path, data_dir):
    # In-process: the Stopper's handler (what the signal thread calls), and
    # the loop's answer: the checkpoint of the last step, then Stopped.
    stopper = stopping.Stopper(stream=open(os.devnull, "w"))
    preset = presets.get("test_mnist")
    trainer = loop.Trainer(preset, str(tmp_path), run=RunConfig(data_dir=data_dir))
    original = trainer.step_function

    def step_then_signal(batch):
        metrics = original(batch)
        if int(trainer.state.step.numpy()) == 3:
            stopper.handle(signal.SIGTERM)
        return metrics

    trainer.step_function = step_then_signal
    with pytest.raises(loop.Stopped) as stopped:
        trainer.train(10, progress=False, stop=stopper)
    assert stopped.value.step == 3 and stopped.value.checkpoint.endswith("ckpt-3")
    assert stopper.exit_code == 143 and stopper.signal_name == "SIGTERM"
