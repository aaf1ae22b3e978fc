"""Adam as PyTorch computes it, which is what the authors trained with.

Keras' Adam adds its epsilon to sqrt(v) before the bias correction:
    p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps),
PyTorch's after it:
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
The two agree for large gradients; for small ones (v near eps^2) they do not,
and at step 1 Keras' default eps = 1e-7 acts like 3.2e-6 in PyTorch's form.
``TorchAdam`` is Keras' Adam with PyTorch's form and default eps = 1e-8; its
variables (iterations, momentums, velocities) are Keras' Adam's, so it is
checkpointed and distributed like it.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable("vnca_tf")
class TorchAdam(keras.optimizers.Adam):
    """Adam with PyTorch's epsilon convention (eps added to sqrt(v_hat)).

    Only the update rule differs from keras.optimizers.Adam; amsgrad is not
    supported (the authors did not use it).
    """

    def __init__(
        self,
        learning_rate=1e-3,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        name="torch_adam",
        **kwargs,
    ):
        if kwargs.pop("amsgrad", False):
            raise ValueError("TorchAdam does not implement amsgrad.")
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=False,
            name=name,
            **kwargs,
        )

    def update_step(self, gradient, variable, learning_rate):
        """p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        beta_1_power = ops.power(ops.cast(self.beta_1, variable.dtype), step)
        beta_2_power = ops.power(ops.cast(self.beta_2, variable.dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(1 - beta_2_power)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / (1 - beta_1_power)), denominator))

    def get_config(self):
        config = super().get_config()
        del config["amsgrad"]
        return config


def learning_rate_at(step: int, base: float, drops=()) -> float:
    """The learning rate of training step ``step`` (1-based): ``base``, a tenth
    of it after each step in ``drops``. The Trainer assigns it to the
    optimizer's learning-rate variable, which every checkpoint already holds
    (a Keras schedule would drop that variable and break them)."""
    return base * 0.1 ** sum(drop < step for drop in drops)
