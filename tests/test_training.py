import dataclasses
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import presets
import pytest
import tensorflow as tf
from helpers import REPO, mirrored_strategy, state_variables

from vnca_tf import data, loading
from vnca_tf.configs import RunConfig
from vnca_tf.models import build_model, storage
from vnca_tf.models.seeds import split_seed
from vnca_tf.serving.loaded import LoadedModel
from vnca_tf.training import run_folder
from vnca_tf.training.distribution import choose_strategy, describe_lost_peer
from vnca_tf.training.loop import NonFiniteError, Trainer
from vnca_tf.training.pool import Pool


def _preset(name, **train):
    preset = presets.get(name)
    defaults = dict(
        log_every=5,
        validation_every=1000,
        image_every=1000,
        checkpoint_every=1000,
        validation_batches=2,
    )
    return dataclasses.replace(
        preset, train=dataclasses.replace(preset.train, **{**defaults, **train})
    )


def _weights(trainer):
    return [v.numpy() for v in trainer.state.model.weights]


def _run(args, env=None, **kwargs):
    env = {**(env or os.environ), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        **kwargs,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_mnist", "test_mnist_damage", "test_mnist_baseline"])
def test_a_few_dozen_steps_lower_the_loss(name, data_dir, tmp_path):
    pool = 32 if name == "test_mnist_damage" else 0
    preset = _preset(name, learning_rate=1e-3, batch_size=16, pool_size=pool)
    trainer = Trainer(
        preset,
        str(tmp_path),
        run=RunConfig(data_dir=data_dir),
        validation_dataset=data.load_split(
            "binarized_mnist", "test", data_dir=data_dir, image_size=preset.model.image_shape[0]
        ).take(64),
    )
    before = trainer.validation_loss()
    trainer.train(40, progress=False)
    after = trainer.validation_loss()
    assert after < before - 100, (before, after)  # Nats per image.
    if trainer.state.pool is not None:  # Pool and damage training ran.
        assert int(trainer.state.pool.size.numpy()) == 32
        cells = trainer.state.pool.cells.numpy()
        assert np.isfinite(cells).all() and np.abs(cells).max() > 0


def test_training_and_validation_losses_are_one_computation(tmp_path, data_dir):
    # The Trainer's loss and the validation loss (negative_elbo) both come from
    # VAE.loss_terms: on the same batch, noise and weights they are equal, for a
    # non-doubling model with a drawn step count and stochastic updates.
    preset = _preset("test_mnist_damage", batch_size=8, pool_size=0)
    images = (
        data.load_split("binarized_mnist", "test", data_dir=data_dir, image_size=28).take(8).cache()
    )
    trainer = Trainer(preset, str(tmp_path), dataset=images, validation_dataset=images)
    batch = next(iter(images.batch(8)))
    seed = tf.constant([3, 4])
    noise_seed, decode_seed = split_seed(seed, 2)
    noise = tf.random.stateless_normal([8, preset.model.latent_size], noise_seed)
    _, sums, _ = trainer.step_function.loss_and_gradients(
        0,
        batch,
        noise,
        decode_seed=decode_seed,
        first_row=0,
        num_steps=trainer.state.model.draw_num_steps(decode_seed),
    )
    validation = trainer.state.model.negative_elbo(batch, seed=seed)
    np.testing.assert_allclose(
        sums.numpy(),
        [float(tf.reduce_sum(validation[k])) for k in ("loss", "reconstruction", "kl")] + [0, 0],
        rtol=1e-5,
    )


@pytest.mark.slow
def test_a_corrupt_latest_checkpoint_is_skipped_for_the_newest_intact_one(
    tmp_path, data_dir, capsys
):
    preset = _preset("test_mnist", checkpoint_every=2, validation_every=2, image_every=6)
    run_folder.save_config(str(tmp_path), preset)
    first = Trainer(preset, str(tmp_path), run=RunConfig(data_dir=data_dir))
    first.train(6)
    out = capsys.readouterr().out.splitlines()
    checkpoint_lines = [line for line in out if ": checkpoint " in line]
    assert checkpoint_lines == [
        f"step {step}: checkpoint {tmp_path}/checkpoints/ckpt-{step}" for step in (2, 4, 6)
    ]
    assert sum("validation loss" in line for line in out) == 3
    # Images at the run's first checkpoint, then every image_every and at the end.
    assert [line for line in out if "images for TensorBoard" in line] == [
        f"step {step}: images for TensorBoard in {tmp_path}/train" for step in (2, 6)
    ]
    assert any(line.startswith("step 6/6 [####################] | loss ") for line in out)
    weights = _weights(first)

    def truncate(step):
        path = tmp_path / "checkpoints" / f"ckpt-{step}.data-00000-of-00001"
        os.truncate(path, os.path.getsize(path) // 2)
        return f"{tmp_path}/checkpoints/ckpt-{step}"

    skipped = truncate(6)
    second = Trainer(preset, str(tmp_path), run=RunConfig(data_dir=data_dir))
    second.train(6)
    captured = capsys.readouterr()
    assert captured.err.startswith(f"Warning: skipped the checkpoint {skipped}: it does not read (")
    assert captured.out.splitlines()[0] == f"Resumed from {tmp_path}/checkpoints/ckpt-4 at step 4"
    for a, b in zip(_weights(second), weights, strict=True):  # Steps 5 and 6 again, the same.
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    truncate(6)  # Evaluation and export take the newest intact one too.
    _, _, record = loading.restore(str(tmp_path))
    assert record["steps"] == 4 and skipped in capsys.readouterr().err
    for step in (2, 4):
        truncate(step)
    with pytest.raises(run_folder.RunFolderError, match="None of the checkpoints"):
        loading.restore(str(tmp_path))


@pytest.mark.slow
def test_checkpoints_are_also_written_by_time(tmp_path, data_dir, capsys):
    preset = _preset("test_mnist", checkpoint_every=1000, checkpoint_minutes=1e-9)
    trainer = Trainer(preset, str(tmp_path), run=RunConfig(data_dir=data_dir))
    trainer.train(3)
    assert [os.path.basename(p) for p in trainer.state.managers["latest"].checkpoints] == [
        "ckpt-1",
        "ckpt-2",
        "ckpt-3",
    ]
    assert (
        f"step 1: checkpoint {tmp_path}/checkpoints/ckpt-1 (1e-09 minutes since the last)"
    ) in capsys.readouterr().out


@pytest.mark.slow
def test_two_replicas_make_the_same_update_as_one_device(tmp_path, data_dir):
    images = data.load_split("binarized_mnist", "test", data_dir=data_dir).take(64).cache()
    preset = _preset("test_mnist", batch_size=8, learning_rate=1e-3)
    mirrored = mirrored_strategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    results, start = [], None
    for strategy, folder in ((tf.distribute.get_strategy(), "one"), (mirrored, "two")):
        trainer = Trainer(
            preset, str(tmp_path / folder), strategy, dataset=images, validation_dataset=images
        )
        if start is None:
            start = _weights(trainer)
        else:
            trainer.state.model.set_weights(start)
        metrics = trainer.train(3, progress=False)
        results.append((_weights(trainer), metrics))
    (one, one_metrics), (two, two_metrics) = results
    assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(one, start, strict=True))
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert one_metrics["loss"] == pytest.approx(two_metrics["loss"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_mnist", "test_mnist_damage"])
def test_microbatches_and_recompute_make_the_same_update(name, tmp_path, data_dir):
    # Doubling and non-doubling (with pool and damage) VNCAs: 3 steps with each
    # replica batch in 4 parts, or in 2 parts with per-step recomputation, equal
    # 3 plain steps.
    pool = 16 if name == "test_mnist_damage" else 0
    preset = _preset(name, batch_size=8, learning_rate=1e-3, pool_size=pool)
    images = (
        data.load_split(
            "binarized_mnist", "test", data_dir=data_dir, image_size=preset.model.image_shape[0]
        )
        .take(64)
        .cache()
    )
    results, start = [], None
    for folder, options in (
        ("plain", {}),
        ("parts", dict(microbatches=4)),
        ("recomputed", dict(microbatches=2, recompute=True)),
    ):
        trainer = Trainer(
            preset,
            str(tmp_path / folder),
            dataset=images,
            validation_dataset=images,
            run=RunConfig(**options),
        )
        if start is None:
            start = _weights(trainer)
        else:
            trainer.state.model.set_weights(start)
        metrics = trainer.train(3, progress=False)
        pool_cells = None if trainer.state.pool is None else trainer.state.pool.cells.numpy()
        results.append((_weights(trainer), metrics, pool_cells))
    plain, plain_metrics, plain_pool = results[0]
    assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(plain, start, strict=True))
    if pool:
        assert np.abs(plain_pool).max() > 0  # The pool served the last steps.
    for weights, metrics, pool_cells in results[1:]:
        for a, b in zip(plain, weights, strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
        assert metrics["loss"] == pytest.approx(plain_metrics["loss"], rel=1e-5)
        if pool:
            np.testing.assert_allclose(pool_cells, plain_pool, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="microbatches must divide the 8 images"):
        Trainer(preset, str(tmp_path / "bad"), dataset=images, run=RunConfig(microbatches=3))


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(model_dir, data_dir, flags, outputs=subprocess.PIPE):
    """Two workers of test_mnist on loopback, each ``train.py`` with ``flags``
    (a function of the worker's index) and its own TF_CONFIG."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    return [
        subprocess.Popen(
            [
                sys.executable,
                os.path.join(REPO, "train.py"),
                presets.flag("test_mnist"),
                f"--model_dir={model_dir}",
                f"--data_dir={data_dir}",
                "--validation_every=100",
                "--image_every=100",
                *flags(index),
            ],
            env={
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                ),
            },
            cwd=REPO,
            stdout=outputs(index) if callable(outputs) else outputs,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(2)
    ]


@pytest.mark.slow
def test_multi_worker_training_keeps_workers_in_sync_and_equals_one_device(tmp_path, data_dir):
    workers = _start_workers(
        tmp_path,
        data_dir,
        lambda index: [
            "--num_steps=4",
            "--checkpoint_every=2",
            # Checkpoints by time too: the workers must agree on when.
            f"--checkpoint_minutes={0.5 / 60 * index + 1e-6}",
        ],
    )
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-3000:]
    assert "MultiWorkerMirroredStrategy strategy, 2 replica(s)" in outputs[0]
    assert "step 1: checkpoint" in outputs[0]  # Worker 0's minutes, taken by both.
    chief = tf.train.load_checkpoint(str(tmp_path / "checkpoints"))
    (other,) = glob.glob(str(tmp_path / "workers" / "worker_1" / "checkpoints"))
    other = tf.train.load_checkpoint(other)
    # The model's weights are saved under the optimizer's path to them (the
    # shortest); compare every value but the per-worker records.
    names = state_variables(str(tmp_path / "checkpoints"))
    assert sum(n.startswith("optimizer/_trainable_variables/") for n in names) == 20
    assert chief.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 4
    for name in names:
        np.testing.assert_array_equal(chief.get_tensor(name), other.get_tensor(name), err_msg=name)
    # And the two workers made the updates one device makes with the same
    # global batch (the same data, noise and seeds; float sums apart).
    preset = _preset("test_mnist", num_steps=4, checkpoint_every=2)
    one = str(tmp_path / "one_device")
    Trainer(preset, one, run=RunConfig(data_dir=data_dir)).train(4, progress=False)
    alone = tf.train.load_checkpoint(os.path.join(one, "checkpoints"))
    moved = 0
    for name in names:
        if name.startswith("optimizer/_trainable_variables/"):
            np.testing.assert_allclose(
                chief.get_tensor(name), alone.get_tensor(name), rtol=1e-4, atol=1e-6, err_msg=name
            )
            moved += 1
    assert moved == 20


# What TensorFlow 2.21 said on worker 0 when worker 1 was killed, and frozen.
_KILLED = (
    "Collective ops is aborted by: recvmsg:Connection reset by peer\nAdditional GRPC error "
    "information from remote target /job:worker/replica:0/task:1 while calling "
    "/tensorflow.WorkerService/RecvBuf:"
)
_FROZEN = (
    "Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks "
    "are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks "
    "have crashed."
)


def test_a_lost_peer_is_named_from_tensorflows_error_or_the_silent_address():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        alive, gone = f"127.0.0.1:{listening.getsockname()[1]}", f"127.0.0.1:{_free_ports(1)[0]}"
        cluster, me = {"worker": [alive, gone]}, ("worker", 0)
        closed = "whose connection closed (the process ended)"
        assert describe_lost_peer(_KILLED, cluster, me) == f"worker 1 at {gone}, {closed}"
        assert describe_lost_peer(_FROZEN, cluster, me) == (
            f"worker 1 at {gone}, which stopped sending heartbeats (a frozen or vanished host)"
        )
        # The chief lost, as worker 1 says it.
        lost_chief = _KILLED.replace("task:1", "task:0")
        assert describe_lost_peer(lost_chief, cluster, ("worker", 1)).startswith(
            f"worker 0 at {alive}, "
        )
        # Named by nobody: the peer that does not answer; if all answer, not a lost peer.
        assert describe_lost_peer("Socket closed", cluster, me) == f"worker 1 at {gone}, {closed}"
        assert describe_lost_peer("Socket closed", {"worker": [alive, alive]}, me) is None


@pytest.mark.slow
def test_a_lost_worker_ends_the_survivor_with_one_line_naming_it_and_the_checkpoint(
    tmp_path, data_dir
):
    logs = [open(tmp_path / f"worker_{index}.log", "w+") for index in range(2)]
    workers = _start_workers(
        tmp_path / "run",
        data_dir,
        lambda index: ["--num_steps=100000", "--checkpoint_every=5"],
        outputs=lambda index: logs[index],
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not glob.glob(
            str(tmp_path / "run/checkpoints/ckpt-5.index")
        ):
            time.sleep(0.2)
        workers[1].send_signal(signal.SIGKILL)  # Mid-run, after the first checkpoint.
        workers[1].wait()
        killed = time.time()
        assert workers[0].wait(timeout=120) == 2
        noticed = time.time() - killed
    finally:
        for worker in workers:
            worker.kill()
    logs[0].seek(0)
    lines = logs[0].read().splitlines()
    for log in logs:
        log.close()
    assert "Traceback" not in "\n".join(lines) and noticed < 60
    newest = tf.train.latest_checkpoint(str(tmp_path / "run/checkpoints"))
    assert re.fullmatch(
        r"Error: Lost worker 1 at 127\.0\.0\.1:\d+, whose connection closed \(the process "
        rf"ended\), at step \d+\. The newest intact checkpoint is {re.escape(newest)}; start "
        r"every worker again with the same command to resume from it\.",
        lines[-1],
    ), lines[-3:]


@pytest.mark.slow
def test_summaries_are_written_and_served_by_tensorboard(tmp_path, data_dir):
    preset = _preset(
        "test_mnist_damage", log_every=2, validation_every=4, image_every=4, checkpoint_every=4
    )
    Trainer(preset, str(tmp_path), run=RunConfig(data_dir=data_dir)).train(4, progress=False)
    port = _free_ports(1)[0]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            f"--logdir={tmp_path}",
            "--host=127.0.0.1",
            f"--port={port}",
            "--load_fast=false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/data/plugin"
        scalars = images = None
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                scalars = json.load(urllib.request.urlopen(f"{base}/scalars/tags", timeout=5))
                images = json.load(urllib.request.urlopen(f"{base}/images/tags", timeout=5))
                if scalars.get("train") and images.get("train"):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert scalars and images, "TensorBoard did not answer"
        assert {
            "loss",
            "reconstruction",
            "kl",
            "elbo_nats",
            "bits_per_dim",
            "gradient_norm",
            "learning_rate",
            "steps_per_s",
            "pool_size",
            "nonfinite_updates",
        } <= set(scalars["train"])
        assert {"loss", "elbo_nats", "bits_per_dim"} <= set(scalars["validation"])
        assert {
            "samples/samples",
            "samples/means",
            "reconstructions/samples",
            "reconstructions/means",
            "growth/means",
            "damage/recovery",
        } <= set(images["train"])
        series = json.load(
            urllib.request.urlopen(f"{base}/scalars/scalars?run=train&tag=loss", timeout=5)
        )
        assert [point[1] for point in series] == [1, 2, 4]  # The first step, then log_every.
    finally:
        server.terminate()
        server.wait(timeout=30)


def _poison(trainer, bad_steps):
    """Makes the gradients of the given steps (1-based) NaN, the loss finite."""
    original = trainer.step_function.loss_and_gradients

    def poisoned(*args, **kwargs):
        gradients, sums, final = original(*args, **kwargs)
        step = trainer.state.step + 1
        bad = tf.reduce_any(tf.equal(step, tf.constant(bad_steps, tf.int64)))
        factor = tf.where(bad, float("nan"), 1.0)
        return [g * factor for g in gradients], sums, final

    trainer.step_function.loss_and_gradients = poisoned


def _poison_likelihood(trainer, bad_step):
    """Makes log p(x|z) of the first image of step ``bad_step`` (1-based) NaN,
    and so the gradient, as a data fault does."""
    model = trainer.state.model
    original = model.loss_terms

    def poisoned(images, noise, beta=1.0, *args, **kwargs):
        terms = original(images, noise, beta, *args, **kwargs)
        first = tf.range(tf.shape(images)[0]) == 0
        bad = first & tf.equal(trainer.state.step + 1, bad_step)
        reconstruction = terms["reconstruction"] * tf.where(bad, float("nan"), 1.0)
        return dict(terms, reconstruction=reconstruction, loss=reconstruction + beta * terms["kl"])

    model.loss_terms = poisoned


def _scalar_series(model_dir, tag):
    """{step: value} of a scalar in a run's train/ TensorBoard events."""
    series = {}
    for path in glob.glob(os.path.join(model_dir, "train", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    series[event.step] = float(tf.make_ndarray(value.tensor))
    return series


@pytest.mark.slow
def test_non_finite_updates_are_skipped_counted_and_explained(tmp_path, data_dir, capsys):
    preset = _preset("test_mnist", max_nonfinite=3)
    trainer = Trainer(preset, str(tmp_path), run=RunConfig(data_dir=data_dir))
    _poison(trainer, [3])
    _poison_likelihood(trainer, 4)
    trainer.train(6)
    assert int(trainer.state.nonfinite_total.numpy()) == 2
    assert int(trainer.state.optimizer.iterations.numpy()) == 4  # Two updates skipped.
    assert all(np.isfinite(w).all() for w in _weights(trainer))
    out = capsys.readouterr().out
    assert (
        "step 3: update skipped, not finite: the gradient only (every image's loss was "
        "finite: a fault in the backward pass); 1 non-finite in a row (the run stops at 3), "
        "1 skipped in the run"
    ) in out
    assert (
        "step 4: update skipped, not finite: the likelihood of 1 of 8 images (and so the "
        "gradient); 2 non-finite in a row (the run stops at 3), 2 skipped in the run"
    ) in out
    assert _scalar_series(str(tmp_path), "nonfinite/gradient") == {3: 1.0, 4: 1.0}
    assert _scalar_series(str(tmp_path), "nonfinite/float16_overflow") == {3: 0.0, 4: 0.0}
    assert _scalar_series(str(tmp_path), "nonfinite/likelihood") == {3: 0.0, 4: 1.0}
    assert _scalar_series(str(tmp_path), "nonfinite/kl") == {3: 0.0, 4: 0.0}


@pytest.mark.slow
def test_a_run_of_non_finite_updates_stops_with_the_checkpoint_intact(tmp_path, data_dir):
    preset = _preset("test_mnist", max_nonfinite=3, checkpoint_every=2)
    trainer = Trainer(preset, str(tmp_path), run=RunConfig(data_dir=data_dir))
    _poison(trainer, list(range(5, 100)))
    trainer.train(4, progress=False)
    good = _weights(trainer)
    # Steps 5, 6, 7 are skipped (the checkpoint of step 6 holds step 4's weights).
    with pytest.raises(
        NonFiniteError,
        match=r"3 non-finite updates in a row \(at step 7: not finite: the gradient only"
        r".*ckpt-6 is intact",
    ):
        trainer.train(20, progress=False)
    restored = Trainer(preset, str(tmp_path), run=RunConfig(data_dir=data_dir))
    assert restored.restore() == 6
    assert int(restored.state.nonfinite_total.numpy()) == 2
    for a, b in zip(_weights(restored), good, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_kill_9_loses_at_most_the_steps_since_the_last_checkpoint(tmp_path, data_dir):
    model_dir = str(tmp_path)
    args = [
        presets.flag("test_mnist"),
        f"--model_dir={model_dir}",
        f"--data_dir={data_dir}",
        "--num_steps=100000",
        "--checkpoint_every=5",
        "--validation_every=100000",
        "--image_every=100000",
        "--log_every=5",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "train.py"), *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not glob.glob(f"{model_dir}/checkpoints/ckpt-15.index"):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    latest = tf.train.latest_checkpoint(f"{model_dir}/checkpoints")
    assert latest is not None
    saved = int(tf.train.load_checkpoint(latest).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    assert saved >= 15 and saved % 5 == 0
    result = _run(
        args[:3]
        + [
            f"--num_steps={saved + 5}",
            "--checkpoint_every=5",
            "--validation_every=100000",
            "--image_every=100000",
        ]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = tf.train.load_checkpoint(tf.train.latest_checkpoint(f"{model_dir}/checkpoints"))
    assert resumed.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == saved + 5
    # config.json keeps the settings the run started with, and a history of starts.
    record = json.load(open(f"{model_dir}/config.json"))
    assert record["train"]["num_steps"] == 100000 and "--log_every=5" in record["run"]["command"]
    assert [start["step"] for start in record["starts"]] == [0, saved]
    first, second = record["starts"]
    assert first["command"] == record["run"]["command"] and first["changes"] == []
    assert "--log_every" not in second["command"] and second["time"] >= first["time"]
    assert second["changes"] == [
        f"train.num_steps: 100000 -> {saved + 5}",
        "train.log_every: 5 -> 100",
    ]
    assert f"resumed with: train.num_steps: 100000 -> {saved + 5}" in result.stdout
    other = _run(args[:3] + [f"--num_steps={saved + 10}", "--batch_size=4"])
    assert other.returncode == 2 and other.stderr.splitlines() == [
        f"Error: {model_dir} holds a run with train.batch_size=8; this start asks for 4, which "
        "would make the rest of it another run. Resume with the run's settings, or start a "
        f"new run from its weights: --init_from={model_dir} --model_dir=NEW_FOLDER."
    ]


def _changed(preset, model=None, **train):
    return dataclasses.replace(
        preset,
        model=dataclasses.replace(preset.model, **(model or {})),
        train=dataclasses.replace(preset.train, **train),
    )


def test_a_resume_is_the_same_run_or_refused_naming_the_change(tmp_path):
    preset, run = presets.get("test_mnist"), RunConfig(data_dir="/data")
    model_dir = str(tmp_path)
    run_folder.save_config(model_dir, preset, dataclasses.asdict(run), {"command": "first"})
    # No checkpoint yet: nothing to resume, a start with other settings is a new run.
    assert run_folder.check_resumable(model_dir, _changed(preset, batch_size=4), run) == []
    checkpoint = tf.train.Checkpoint(step=tf.Variable(3))
    tf.train.CheckpointManager(checkpoint, run_folder.checkpoint_folder(model_dir), 1).save()
    accepted = run_folder.check_resumable(
        model_dir,
        _changed(preset, num_steps=40, log_every=5, checkpoint_minutes=1.5, init_from="moved"),
        dataclasses.replace(run, data_dir="/moved", strategy="mirrored", jit_compile="on"),
    )
    assert accepted == [
        "train.num_steps: 20 -> 40",
        "train.init_from: '' -> 'moved'",
        "train.log_every: 100 -> 5",
        "train.checkpoint_minutes: 10.0 -> 1.5",
        "run.jit_compile: 'auto' -> 'on'",
        "run.data_dir: '/data' -> '/moved'",
    ]
    advice = f"--init_from={model_dir} --model_dir=NEW_FOLDER."
    for changed, changed_run, message in [
        (_changed(preset, batch_size=16), run, "train.batch_size=8; this start asks for 16"),
        (_changed(preset, seed=1), run, "train.seed=0; this start asks for 1"),
        (
            _changed(preset, learning_rate_drops=(10,)),
            run,
            "learning_rate_drops=\\(\\); this start asks for \\(10,\\)",
        ),
        (_changed(preset, beta=2.0, seed=3), run, "train.beta=1.0; .* \\(and 1 more changes\\)"),
        (_changed(preset, {"max_steps": 9}), run, "model.max_steps=64; this start asks for 9"),
        (
            preset,
            dataclasses.replace(run, precision="mixed_bfloat16"),
            "run.precision='float32'; this start asks for 'mixed_bfloat16'",
        ),
        (preset, dataclasses.replace(run, data_source="tfds"), "run.data_source='auto'"),
    ]:
        with pytest.raises(run_folder.RunFolderError, match=message) as refused:
            run_folder.check_resumable(model_dir, changed, changed_run)
        assert "would make the rest of it another run" in str(refused.value)
        assert str(refused.value).endswith(advice)
    # A pool run resumes on the replica count of its last start only.
    pool = _changed(presets.get("test_mnist_damage"), pool_size=16)
    run_folder.save_config(model_dir, pool, dataclasses.asdict(run), {"replicas": 1})
    run_folder.check_replicas(model_dir, pool, 1)
    run_folder.check_replicas(model_dir, preset, 2)  # No pool: the same updates.
    with pytest.raises(run_folder.RunFolderError, match="a pool run trained on 1 replica.s.; "):
        run_folder.check_replicas(model_dir, pool, 2)
    run_folder.save_config(model_dir, preset, dataclasses.asdict(run), {"command": "first"})
    for changed, message in [
        (
            _changed(preset, {"hidden_size": 8}),
            "another model .*changed hidden_size \\(16 there, 8",
        ),
        (dataclasses.replace(preset, dataset="mnist"), "another model \\(test_mnist on binarized"),
    ]:
        with pytest.raises(run_folder.RunFolderError, match=message):
            run_folder.check_resumable(model_dir, changed, run)


def test_a_resume_refuses_a_checkpoint_whose_model_variables_do_not_match(tmp_path, data_dir):
    preset = _preset("test_mnist")
    other = build_model(dataclasses.replace(preset.model, num_residual_blocks=2))
    checkpoint = tf.train.Checkpoint(model=other, step=tf.Variable(3, dtype=tf.int64))
    tf.train.CheckpointManager(checkpoint, run_folder.checkpoint_folder(str(tmp_path)), 1).save()
    trainer = Trainer(preset, str(tmp_path), run=RunConfig(data_dir=data_dir))
    with pytest.raises(
        storage.WeightsMismatchError,
        match=r"does not fit this run's model: 4 of its variables have no place in the model: "
        r"model/update_net/body_1/",
    ):
        trainer.restore()


@pytest.mark.slow
def test_cli_prints_and_saves_its_configuration_and_explains_bad_flags(tmp_path, data_dir):
    result = _run(
        [
            presets.flag("test_mnist"),
            f"--model_dir={tmp_path}",
            f"--data_dir={data_dir}",
            "--num_steps=2",
            "--batch_size=4",
            "--beta=2.5",
            "--validation_every=100",
            "--image_every=100",
        ]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.load(open(tmp_path / "config.json"))
    assert saved["name"] == "test_mnist" and saved["train"]["beta"] == 2.5
    assert saved["train"]["batch_size"] == 4
    head = result.stdout.splitlines()[:4]  # The run in a few lines; the rest in config.json.
    assert head[0].startswith("Training test_mnist on binarized_mnist: doubling VNCA")
    assert "2 steps of batch 4, learning rate 0.0001, beta 2.5, clip 10" in head[1]
    assert saved["run"]["command"].startswith(f"python train.py {presets.flag('test_mnist')} ")
    unknown = _run(["--preset=mnsit", f"--model_dir={tmp_path}"])
    assert unknown.returncode != 0 and "Known presets" in unknown.stderr
    parts = _run(
        [
            presets.flag("test_mnist"),
            f"--model_dir={tmp_path / 'p'}",
            "--batch_size=8",
            "--microbatches=3",
        ]
    )
    assert parts.returncode != 0 and "microbatches must divide the 8 images" in parts.stderr
    assert "Traceback" not in parts.stderr
    other = _run([presets.flag("test_celeb_a"), f"--model_dir={tmp_path}", "--num_steps=1"])
    assert other.returncode != 0 and "another model" in other.stderr
    missing = _run(
        [
            presets.flag("test_mnist"),
            f"--model_dir={tmp_path / 'x'}",
            f"--data_dir={tmp_path / 'empty'}",
            "--num_steps=1",
        ]
    )
    assert missing.returncode == 2 and "binarized_mnist_{train,valid,test}.amat" in missing.stderr
    assert not (tmp_path / "x").exists()  # A failed start leaves no half-made folder.


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--batch_size=0"], {}, "batch_size must be >= 1, got 0."),
        (["--num_steps=-3"], {}, "num_steps must be >= 1, got -3."),
        (["--learning_rate=nan"], {}, "learning_rate must be a finite number > 0, got nan."),
        ([], {"TF_CONFIG": "{'cluster': nope"}, "TF_CONFIG is not valid JSON"),
        (
            [],
            {"TF_CONFIG": '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief"}}'},
            "TF_CONFIG's task must name this host's type and index",
        ),
        (["--model_dir={file}"], {}, "is a file, not a folder"),
        (["--learning_rate_drops=5,x"], {}, "--learning_rate_drops takes step numbers"),
        (["--learning_rate_drops=30"], {}, "learning_rate_drops must be increasing steps"),
        (["--init_from={file}"], {}, "is neither a SavedModel version folder"),
        (
            ["--init_from=saved_models/mnist_cpu/1"],
            {},
            "do not fit this model: changed latent_size (128 there, 16 here),",
        ),
        ([], {}, "Give exactly one of --dataset"),
    ],
)
def test_bad_input_gets_one_line_and_no_traceback(args, env, message, tmp_path):
    (tmp_path / "file").write_text("")
    args = [arg.format(file=tmp_path / "file") for arg in args]
    preset = [] if message.startswith("Give") else [presets.flag("test_mnist")]
    result = _run(preset + [f"--model_dir={tmp_path / 'run'}"] + args, env={**os.environ, **env})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_strategy_choice(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert choose_strategy("auto") is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="Unknown strategy 'tpu'"):
        choose_strategy("tpu")


@pytest.mark.slow
def test_the_learning_rate_drops_at_its_step_across_a_resume(tmp_path, data_dir):
    preset = _preset("test_mnist", checkpoint_every=2, learning_rate_drops=(3,))
    rate = preset.train.learning_rate
    whole = Trainer(preset, str(tmp_path / "whole"), run=RunConfig(data_dir=data_dir))
    whole.train(5, progress=False)
    first = Trainer(preset, str(tmp_path / "halves"), run=RunConfig(data_dir=data_dir))
    first.train(2, progress=False)
    assert float(first.state.optimizer.learning_rate) == pytest.approx(rate)
    # Resumed at step 2 (its checkpoint holds the rate it ran at): steps 3-5 at
    # a tenth, as in the run that did not stop.
    second = Trainer(preset, str(tmp_path / "halves"), run=RunConfig(data_dir=data_dir))
    second.train(5, progress=False)
    assert float(second.state.optimizer.learning_rate) == pytest.approx(rate / 10)
    for a, b in zip(_weights(second), _weights(whole), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("damaged, expected", [(0.5, 2), (1.0, 4), (0.0, 0)])
def test_pool_damages_its_share_of_the_pooled_half_batch(damaged, expected):
    pool = Pool(8, (4, 4, 1), (4, 4, 2), damage_size=2, replica_batch=8, damaged=damaged)
    images = tf.ones([8, 4, 4, 1], tf.uint8)
    pool.refill(0, images, tf.ones([8, 4, 4, 2]), seed=[0, 1])
    mixed, start, use_start = pool.mix(images, replica=0, seed=tf.constant([2, 3]))
    np.testing.assert_array_equal(use_start.numpy(), [False] * 4 + [True] * 4)
    zeroed = (start.numpy()[4:] == 0).all(-1).sum((1, 2))
    np.testing.assert_array_equal(zeroed, [4] * expected + [0] * (4 - expected))


def test_an_odd_batch_takes_its_smaller_half_from_the_pool_as_the_authors_do():
    pool = Pool(8, (4, 4, 1), (4, 4, 2), damage_size=2, replica_batch=5)
    pool.refill(0, tf.fill([8, 4, 4, 1], 7), tf.ones([8, 4, 4, 2]), seed=[0, 1])
    images = tf.zeros([5, 4, 4, 1], tf.uint8)
    mixed, start, use_start = pool.mix(images, replica=0, seed=tf.constant([2, 3]))
    np.testing.assert_array_equal(use_start.numpy(), [False] * 3 + [True] * 2)
    np.testing.assert_array_equal(mixed.numpy().max((1, 2, 3)), [0, 0, 0, 7, 7])
    assert start.shape == (5, 4, 4, 2) and (start.numpy()[:3] == 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("batch_size, replicas, pool_size", [(5, 1, 11), (7, 1, 15), (10, 2, 16)])
def test_pool_runs_train_on_every_batch_size_and_replica_count(
    batch_size, replicas, pool_size, tmp_path, data_dir
):
    preset = _preset("test_mnist_damage", batch_size=batch_size, pool_size=16, damage_size=2)
    devices = [f"/cpu:{index}" for index in range(replicas)]
    strategy = mirrored_strategy(devices) if replicas > 1 else None
    trainer = Trainer(preset, str(tmp_path), strategy, run=RunConfig(data_dir=data_dir))
    metrics = trainer.train(3, progress=False)
    assert np.isfinite(metrics["loss"]) and metrics["skipped"] == 0
    # Served from step 2 on: size = batch, then + batch - served (half of each
    # replica's batch, rounded down) per step, at most the capacity.
    assert int(trainer.state.pool.size.numpy()) == pool_size


def test_init_from_a_saved_model_starts_from_its_function():
    path = os.path.join(REPO, "saved_models", "mnist_heal_cpu", "1")
    model = build_model(presets.get("mnist_heal_cpu").model)
    assert run_folder.read_initial_weights(model, path).endswith("variables/variables")
    z = tf.random.stateless_normal([4, model.config.latent_size], [0, 1])
    np.testing.assert_allclose(
        model.decode_mean(z, seed=tf.constant([0, 0])), LoadedModel(path).decode_mean(z), atol=1e-5
    )
    # A fine-tune may run the same weights for another number of steps.
    longer = build_model(dataclasses.replace(model.config, min_steps=32, max_steps=64))
    run_folder.read_initial_weights(longer, path)
    for a, b in zip(longer.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_fine_tune_starts_from_a_run_and_resumes_from_its_own_checkpoints(tmp_path, data_dir):
    source_preset = _preset("test_mnist_damage", pool_size=16)
    source = Trainer(source_preset, str(tmp_path / "source"), run=RunConfig(data_dir=data_dir))
    source.train(2, progress=False)
    run_folder.save_config(str(tmp_path / "source"), source_preset)  # As train.py does.
    preset = _preset("test_mnist_damage", pool_size=16, init_from=str(tmp_path / "source"))
    tune = Trainer(preset, str(tmp_path / "tune"), run=RunConfig(data_dir=data_dir))
    assert tune.prepare() == 0 and tune.state.initialized_from.endswith("ckpt-2")
    for a, b in zip(_weights(tune), _weights(source), strict=True):
        np.testing.assert_array_equal(a, b)
    tune.train(3, progress=False)
    # Resuming reads the fine-tune's own checkpoint, not init_from again.
    resumed = Trainer(preset, str(tmp_path / "tune"), run=RunConfig(data_dir=data_dir))
    assert resumed.prepare() == 3 and resumed.state.initialized_from is None
    for a, b in zip(_weights(resumed), _weights(tune), strict=True):
        np.testing.assert_array_equal(a, b)
