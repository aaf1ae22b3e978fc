"""Micro-batching: a replica's batch in parts, one after the other, gradients summed."""

import tensorflow as tf


def accumulate(loss_and_gradients, inputs, parts: int):
    """Runs ``loss_and_gradients(part, *part_inputs) -> (gradients, sums, final)``
    on ``parts`` equal parts of ``inputs`` (tensors, batch first) one after the
    other, in a while loop of one iteration at a time so that only one part's
    activations live at once. Returns the gradients and sums added up and the
    parts' final cells concatenated: the same update as the whole batch.
    One part calls ``loss_and_gradients`` directly, with no loop."""
    if parts == 1:
        return loss_and_gradients(0, *inputs)
    batch = inputs[0].shape[0]
    size = batch // parts
    split = [tf.reshape(t, [parts, size, *t.shape[1:]]) for t in inputs]
    # Part 0 outside the loop gives the accumulators their structure; a tensor
    # index, as in the loop, so that a tf.function traces once.
    gradients, sums, final = loss_and_gradients(tf.constant(0), *[t[0] for t in split])
    finals = tf.TensorArray(final.dtype, size=parts).write(0, final)

    def body(i, gradients, sums, finals):
        new_gradients, new_sums, final = loss_and_gradients(i, *[t[i] for t in split])
        return (
            i + 1,
            [g + n for g, n in zip(gradients, new_gradients, strict=True)],
            sums + new_sums,
            finals.write(i, final),
        )

    _, gradients, sums, finals = tf.while_loop(
        lambda i, *_: i < parts,
        body,
        (tf.constant(1), gradients, sums, finals),
        parallel_iterations=1,
    )
    final = finals.stack()
    return gradients, sums, tf.reshape(final, [batch, *final.shape[2:]])
