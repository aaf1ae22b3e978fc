"""What only a GPU runs: XLA, float16 with loss scaling, MirroredStrategy over
GPUs, checkpoints moving between GPU and CPU, and the exported graphs on the
device. Marked ``gpu``; skipped where TensorFlow finds no GPU (conftest.py).
``benchmarks/gpu_check.py`` runs them on a GPU machine."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import binary_images, mirrored_strategy, quiet_preset

from vnca_tf.configs import RunConfig
from vnca_tf.serving.export import export
from vnca_tf.serving.loaded import LoadedModel
from vnca_tf.training.loop import Trainer

pytestmark = pytest.mark.gpu
RANDOM = ("sample", "log_likelihood")  # Signatures whose latents are drawn.


def _images(count=64, side=32):
    rng = np.random.default_rng(0)
    return tf.data.Dataset.from_tensor_slices(binary_images(rng, count, side)).cache()


def _weights(trainer):
    return [v.numpy() for v in trainer.state.model.weights]


def _trained(folder, strategy=None, run=None, steps=3, start=None, **train):
    """A Trainer of test_mnist on random images after ``steps`` steps from
    the weights ``start`` (its own random ones if None)."""
    images = _images()
    trainer = Trainer(
        quiet_preset("test_mnist", batch_size=8, **train),
        str(folder),
        strategy,
        run=run or RunConfig(),
        dataset=images,
        validation_dataset=images,
    )
    if start is not None:
        trainer.state.model.set_weights(start)
    metrics = trainer.train(steps, progress=False) if steps else {}
    return trainer, metrics


def test_a_step_under_xla_equals_the_step_without_it(tmp_path):
    start = _trained(tmp_path / "start", steps=0)[0]
    compiled = []
    for jit in ("off", "on"):
        trainer, metrics = _trained(
            tmp_path / jit, run=RunConfig(jit_compile=jit), start=_weights(start), steps=1
        )
        compiled.append((_weights(trainer), metrics))
    (off, off_metrics), (on, on_metrics) = compiled
    for a, b in zip(off, on, strict=True):  # Adam's first step moves each weight by ~1e-3.
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5)
    assert on_metrics["loss"] == pytest.approx(off_metrics["loss"], rel=1e-5)
    assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(off, _weights(start), strict=True))


def test_float16_trains_20_steps_with_an_adapting_loss_scale(tmp_path):
    trainer, metrics = _trained(
        tmp_path, run=RunConfig(precision="mixed_float16"), steps=20, max_nonfinite=20
    )
    assert trainer.state.model.update_net.perceive.compute_dtype == "float16"
    assert np.isfinite(metrics["loss"])
    assert all(np.all(np.isfinite(w)) for w in _weights(trainer))
    scale = trainer.state.loss_scale
    # It starts at 2^15: any overflow halved it and skipped only that update;
    # otherwise it counts the finite steps towards its next doubling.
    skipped = int(trainer.state.nonfinite_total.numpy())
    assert float(scale.scale.numpy()) == 2.0**15 / 2**skipped
    assert int(scale.finite_steps.numpy()) >= 20 - skipped - 1
    assert skipped < 10


def test_mirrored_over_every_gpu_makes_the_one_device_update(tmp_path):
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    start = _weights(_trained(tmp_path / "start", steps=0)[0])
    one, one_metrics = _trained(
        tmp_path / "one", tf.distribute.OneDeviceStrategy(gpus[0]), start=start
    )
    every, every_metrics = _trained(tmp_path / "every", mirrored_strategy(gpus), start=start)
    for a, b in zip(_weights(one), _weights(every), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    assert every_metrics["loss"] == pytest.approx(one_metrics["loss"], rel=1e-5)


@pytest.mark.parametrize("first, then", [("/gpu:0", "/cpu:0"), ("/cpu:0", "/gpu:0")])
def test_a_checkpoint_moves_between_gpu_and_cpu_exactly(first, then, tmp_path):
    writer, _ = _trained(tmp_path, tf.distribute.OneDeviceStrategy(first), steps=2)
    reader = _trained(tmp_path, tf.distribute.OneDeviceStrategy(then), steps=0)[0]
    assert reader.restore() == 2
    for a, b in zip(_weights(writer), _weights(reader), strict=True):
        np.testing.assert_array_equal(b, a)  # Bit for bit.
    for a, b in zip(
        writer.state.optimizer.variables, reader.state.optimizer.variables, strict=True
    ):
        np.testing.assert_array_equal(b.numpy(), a.numpy())
    metrics = reader.train(3, progress=False)  # Step 3 runs where it was moved.
    assert np.isfinite(metrics["loss"]) and reader.current_step == 3


def test_the_exported_signatures_and_browser_graphs_run_on_the_gpu(tmp_path):
    trainer, _ = _trained(tmp_path / "run", steps=1)
    path = export(trainer.state.model, trainer.preset, str(tmp_path / "export"))
    loaded = LoadedModel(path)
    images = binary_images(np.random.default_rng(1), 2, 32)
    latents = tf.random.stateless_normal([2, trainer.preset.model.latent_size], [0, 1])
    seed = tf.constant(3, tf.int64)

    def every_signature():
        s = loaded.signatures
        cells = s["browser_initial_cells"](latents=latents)["cells"]
        stepped = s["browser_step"](cells=cells, mask=tf.ones([*cells.shape[:3], 1]))["cells"]
        return {
            "sample": s["serving_default"](num_samples=tf.constant(2), seed=seed)["means"],
            "reconstruct": s["reconstruct"](images=images, seed=seed)["means"],
            "encode": s["encode"](images=images)["mean"],
            "decode": s["decode"](latents=latents, seed=seed)["means"],
            "log_likelihood": s["log_likelihood"](images=images, k=tf.constant(4), seed=seed)[
                "log_likelihood"
            ],
            "grow": s["grow"](latents=latents, seed=seed)["frames"],
            "browser_encode": s["browser_encode"](images=images)["latents"],
            "browser_double": s["browser_double"](cells=stepped)["cells"],
            "browser_picture": s["browser_picture"](cells=stepped)["image"],
        }

    with tf.device("/gpu:0"):
        on_gpu = every_signature()
    with tf.device("/cpu:0"):
        on_cpu = every_signature()
    assert "GPU" in on_gpu["grow"].device
    for name, value in on_gpu.items():
        assert np.all(np.isfinite(value)), name
        if name not in RANDOM:  # Drawn numbers may differ between devices.
            np.testing.assert_allclose(value, on_cpu[name], rtol=1e-3, atol=1e-3, err_msg=name)
