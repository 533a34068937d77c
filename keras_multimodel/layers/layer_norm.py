"""Layer normalisation over the last axis with its gradient written out.

Differentiating `keras.ops.layer_normalization` on JAX and TensorFlow takes the
gradient of a mean and of a variance (itself a mean of centred squares) apart,
several small kernels per call; every `ConvBlock` step, attention and MoE block
normalises, so they add up (`benchmarks/main_job_step.py --profile_dir`). The
gradient written out is two reductions and one elementwise pass.
"""

import keras
from keras import ops


def layer_norm(x, gamma, beta, epsilon=1e-3):
    """`(x - mean) / sqrt(var + epsilon) * gamma + beta` over the last axis of `x`.

    Computed in float32 (as Keras's `LayerNormalization`) and returned in `x`'s dtype.
    `gamma` and `beta` have `x`'s last dimension.

    >>> import numpy as np
    >>> x = np.array([[1.0, 2.0, 3.0]], "float32")
    >>> np.round(keras.ops.convert_to_numpy(layer_norm(x, np.ones(3), np.zeros(3), 0.0)), 4)
    array([[-1.2247,  0.    ,  1.2247]], dtype=float32)
    """
    x = ops.convert_to_tensor(x)
    dtype = x.dtype
    gamma, beta = ops.cast(gamma, "float32"), ops.cast(beta, "float32")
    reduced = tuple(range(len(x.shape) - 1))

    @ops.custom_gradient
    def normalise(x, gamma, beta):
        mean = ops.mean(x, axis=-1, keepdims=True)
        centred = x - mean
        inverse = ops.rsqrt(ops.mean(ops.square(centred), axis=-1, keepdims=True) + epsilon)
        normalised = centred * inverse

        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            scaled = upstream * gamma
            dx = inverse * (
                scaled
                - ops.mean(scaled, axis=-1, keepdims=True)
                - normalised * ops.mean(scaled * normalised, axis=-1, keepdims=True)
            )
            dgamma = ops.sum(upstream * normalised, axis=reduced)
            return dx, dgamma, ops.sum(upstream, axis=reduced)

        return normalised * gamma + beta, grad

    return ops.cast(normalise(ops.cast(x, "float32"), gamma, beta), dtype)


@keras.saving.register_keras_serializable(package="keras_multimodel")
class LayerNorm(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` over the last axis, its gradient written out.

    The same weights (`gamma`, `beta`), settings and outputs; on JAX and TensorFlow
    the backward pass is `layer_norm`'s. Other settings (another axis,
    `center=False`, `scale=False`, `rms_scaling`) and torch, whose Keras backend
    already calls `torch.nn.functional.layer_norm`, run Keras's own.

    >>> import numpy as np
    >>> layer = LayerNorm(epsilon=1e-6)
    >>> np.round(keras.ops.convert_to_numpy(layer(np.array([[2.0, 4.0]], "float32"))), 3)
    array([[-1.,  1.]], dtype=float32)
    """

    def call(self, inputs):
        last_axis = self.axis in (-1, [-1], len(inputs.shape) - 1, [len(inputs.shape) - 1])
        fused = self.center and self.scale and not self.rms_scaling and last_axis
        if not fused or keras.backend.backend() == "torch":
            return super().call(inputs)
        outputs = layer_norm(inputs, self.gamma, self.beta, self.epsilon)
        return ops.cast(outputs, self.compute_dtype)
