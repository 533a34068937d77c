"""MoELayer: a sparsely-gated mixture of feed-forward experts with static shapes."""

import contextlib

import keras
from keras import ops

from keras_multimodel.errors import InputError
from keras_multimodel.layers import layer_utils, moe_routing

TERMS = ("loss", "dropped_fraction")  # what `call(..., return_terms=True)` returns


@keras.saving.register_keras_serializable(package="keras_multimodel")
class MoELayer(keras.layers.Layer):
    """Sparsely-gated mixture of experts with residual and LayerNorm.

    Each token is routed by noisy top-k gating (Shazeer et al., 2017) to `top_k` of
    `num_experts` feed-forward experts `Dense(hidden_dim, relu) -> Dense(channels)`;
    their outputs are weighted by the gates and summed, and the block returns
    `LayerNorm(x + Dropout(mixture))`.

    Dispatch is sparse with static shapes, so it compiles under XLA: each expert has
    `C = ceil(capacity_factor * top_k * tokens / num_experts)` slots, a token's slot
    comes from a cumulative count (first choices before second choices), token rows
    are gathered into an `(E, C, d)` buffer, all experts run as one batched matmul,
    and outputs are gathered back per token. Only the chosen experts are computed.
    An assignment over capacity is dropped: the token keeps its residual path.
    `dropped_fraction` (a non-trainable weight) holds the fraction of real tokens'
    assignments dropped by the latest call. Evaluation uses `eval_capacity_factor`;
    `None` there (or for training) means no drops at all, at the cost of `C = tokens`
    slots per expert (cheap while decoding, when tokens = batch size).

    **Routing groups.** Tokens are routed within groups of equal size, each with its
    own capacity and balancing loss (the loss is the mean over groups; GShard's
    "local groups"). Under data parallelism there is one group per data shard, so
    routing, dispatch and the experts' work stay on each device: the MoE's work per
    device falls with the number of devices instead of every device computing
    every expert on the whole batch. `num_groups=None` (the default) means one group
    per data shard: on JAX, the size of the batch axis of the active
    `keras.distribution` (1 without one); under `tf.distribute`, one group per
    replica. A fixed `num_groups` (groups per global batch) makes one device compute
    exactly what a data-parallel run computes. A training batch must split into the
    groups (whole sequences each); outside training a batch that does not, or whose
    size is unknown (an exported model), is routed as one group. When the expert kernels are sharded
    over a mesh axis (`MultiModel.get_layout_map`), the expert buffer is
    resharded along the expert axis (an all-to-all when the data and experts share
    the axis: expert parallelism).

    Padded positions (mask False) are neither routed nor counted. The balancing loss
    `loss_coef * (cv²(importance) + cv²(load))` is added with `add_loss` once per call,
    or, with `return_terms=True`, returned beside the output for the caller to add
    (how `MultiModel` collects it: explicit, and the same on every backend and
    under `tf.distribute`). Collect the terms with `return_terms=True` (and add them
    in `compute_loss`) in two cases where Keras's `add_loss` miscounts: on JAX,
    `fit` keeps only the last `add_loss` of a layer called more than once in one
    forward pass (each call is the outermost under `stateless_call` and clears the
    layer's earlier losses); under a `tf.distribute` strategy the replicas share
    the layer's list of losses while they trace the step in turns.
    Gate and noise weights start at zero and the router runs in float32 under
    mixed precision.

    Args:
        num_experts: E, number of experts.
        hidden_dim: width of each expert's hidden layer.
        top_k: experts per token (k), `1 <= top_k <= num_experts`. With `top_k=1`
            the gate weight is always 1, so the router learns only from the
            balancing loss (as in the paper's formulation).
        capacity_factor: slots per expert relative to a perfectly balanced load,
            during training; None for no drops.
        eval_capacity_factor: the same outside training (evaluation, inference);
            None for no drops.
        loss_coef: weight of the balancing loss.
        noisy_gating: add trainable Gaussian noise to the gate logits in training.
        dropout: dropout rate on the mixture output before the residual.
        activation: activation of the experts' hidden layer.
        epsilon: LayerNormalization epsilon.
        kernel_initializer: initializer of each expert's kernels, applied per expert;
            defaults to Glorot uniform over one expert's fan-in and fan-out.
        seed: seed of the gating noise.
        num_groups: routing groups per global batch, or None for one per data
            shard (see above). The tokens of a call must divide into them.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        x: `(batch, length, channels)` or `(tokens, channels)`.
        mask: optional padding mask `(batch, length)` (or `(tokens,)`).
        training: whether gating noise, training capacity and dropout apply.
        return_terms: return the balancing loss instead of adding it.

    Returns:
        A tensor of the same shape as `x`; with `return_terms=True`, the pair
        `(outputs, {"loss": balancing loss, "dropped_fraction": fraction})` of
        float32 scalars, and nothing is added with `add_loss`.

    Example:
    >>> import numpy as np
    >>> moe = MoELayer(num_experts=4, hidden_dim=32, top_k=2)
    >>> x = np.random.rand(2, 6, 8).astype("float32")
    >>> tuple(moe(x).shape), len(moe.losses)
    ((2, 6, 8), 1)
    >>> outputs, terms = moe(x, return_terms=True)
    >>> sorted(terms), len(moe.losses)
    (['dropped_fraction', 'loss'], 0)
    """

    def __init__(
        self,
        num_experts,
        hidden_dim,
        top_k=2,
        capacity_factor=1.25,
        eval_capacity_factor=2.0,
        loss_coef=1e-2,
        noisy_gating=True,
        dropout=0.0,
        activation="relu",
        epsilon=1e-6,
        kernel_initializer=None,
        seed=None,
        num_groups=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        name = "MoELayer"
        self.num_experts = layer_utils.check_positive_int(name, "num_experts", num_experts)
        self.hidden_dim = layer_utils.check_positive_int(name, "hidden_dim", hidden_dim)
        self.top_k = layer_utils.check_positive_int(name, "top_k", top_k)
        if self.top_k > self.num_experts:
            raise InputError(
                f"{name}: `top_k` must be at most `num_experts`; received top_k={top_k} "
                f"with num_experts={num_experts}. Lower `top_k` or add experts."
            )
        for arg, value in (
            ("capacity_factor", capacity_factor),
            ("eval_capacity_factor", eval_capacity_factor),
        ):
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise InputError(
                    f"{name}: `{arg}` must be a positive number, or None for no drops; "
                    f"received {arg}={value!r}."
                )
        self.capacity_factor = capacity_factor
        self.eval_capacity_factor = eval_capacity_factor
        if not isinstance(loss_coef, (int, float)) or loss_coef < 0:
            raise InputError(
                f"{name}: `loss_coef` must be a number >= 0; received loss_coef={loss_coef!r}."
            )
        self.loss_coef = float(loss_coef)
        self.noisy_gating = bool(noisy_gating)
        self.dropout = layer_utils.check_rate(name, "dropout", dropout)
        self.activation = keras.activations.get(activation)
        self.epsilon = epsilon
        self.kernel_initializer = (
            keras.initializers.get(kernel_initializer) if kernel_initializer is not None else None
        )
        self.seed = seed
        if num_groups is not None:
            num_groups = layer_utils.check_positive_int(name, "num_groups", num_groups)
        self.num_groups = num_groups
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        self._routing_observers = ()

    def _expert_initializer(self):
        if self.kernel_initializer is not None:
            base = layer_utils.clone_initializer(self.kernel_initializer)
            return lambda shape, dtype=None: ops.stack(
                [base(shape[1:], dtype=dtype) for _ in range(shape[0])]
            )
        # Glorot uniform per expert: Keras counts the expert axis into the fans.
        return keras.initializers.VarianceScaling(
            scale=float(self.num_experts), mode="fan_avg", distribution="uniform"
        )

    def build(self, input_shape):
        layer_utils.check_rank(
            "MoELayer",
            input_shape,
            (2, 3),
            layout="(batch, length, channels) or (tokens, channels)",
        )
        channels = input_shape[-1]
        experts, hidden = self.num_experts, self.hidden_dim
        router = {"initializer": "zeros", "autocast": False}  # float32 under mixed precision
        self.gate_kernel = self.add_weight(name="gate_kernel", shape=(channels, experts), **router)
        self.noise_kernel = None
        if self.noisy_gating:
            self.noise_kernel = self.add_weight(
                name="noise_kernel", shape=(channels, experts), **router
            )
        self.expert_kernel_in = self.add_weight(
            name="expert_kernel_in",
            shape=(experts, channels, hidden),
            initializer=self._expert_initializer(),
        )
        self.expert_bias_in = self.add_weight(
            name="expert_bias_in", shape=(experts, hidden), initializer="zeros"
        )
        self.expert_kernel_out = self.add_weight(
            name="expert_kernel_out",
            shape=(experts, hidden, channels),
            initializer=self._expert_initializer(),
        )
        self.expert_bias_out = self.add_weight(
            name="expert_bias_out", shape=(experts, channels), initializer="zeros"
        )
        self.dropped_fraction = self.add_weight(
            name="dropped_fraction",
            shape=(),
            initializer="zeros",
            trainable=False,
            autocast=False,
            aggregation="mean",
        )
        self.norm = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=self.dtype_policy, name="norm"
        )
        self.norm.build(input_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def route(self, x, mask=None, training=False):
        """Gating only: the `moe_routing.Routing` of `x` `(..., channels)` as flat tokens.

        Routed in one group; `gates` and `experts` are `(N, k)`, `importance` and
        `load` `(E,)`.
        """
        tokens = ops.reshape(x, (-1, ops.shape(x)[-1]))  # (N, d)
        routing = self._route(tokens[None], self._valid(tokens, mask)[None], training)
        return _flat_routing(routing)

    def routing_groups(self, num_tokens=None):
        """The number of routing groups a call over `num_tokens` tokens uses.

        `num_groups`, or one per data shard (see the class docstring). Under
        `tf.distribute` each replica routes its share, `num_groups / replicas`.
        """
        replicas = layer_utils.replicas_in_sync()
        if self.num_groups is None:
            groups = layer_utils.data_parallel_degree() if replicas == 1 else 1
        elif self.num_groups % replicas:
            raise InputError(
                f"MoELayer {self.name!r}: num_groups={self.num_groups} must be a multiple of "
                f"the {replicas} replicas of the tf.distribute strategy (each replica routes "
                "num_groups / replicas groups). Change num_groups, or None for one per replica."
            )
        else:
            groups = self.num_groups // replicas
        if isinstance(num_tokens, int) and num_tokens % groups:
            raise InputError(
                f"MoELayer {self.name!r}: {num_tokens} tokens do not split into {groups} "
                "routing groups of equal size. Make the batch size a multiple of the "
                "number of groups (the data-parallel degree: keras_multimodel.data.mixture "
                "takes `batch_multiple`), or set `num_groups`."
            )
        return groups

    def _route(self, tokens, valid, training):
        tokens = ops.cast(tokens, "float32")  # the router runs in float32
        clean_logits = ops.matmul(tokens, self.gate_kernel)  # (N, E)
        noise = noise_logits = None
        if training and self.noisy_gating:
            noise_logits = ops.matmul(tokens, self.noise_kernel)  # (N, E)
            noise = keras.random.normal(ops.shape(clean_logits), seed=self.seed_generator)
        return moe_routing.noisy_top_k_routing(
            clean_logits, noise_logits, valid, self.top_k, noise=noise
        )

    def _call_groups(self, input_shape, training):
        """Routing groups of a `call`: whole sequences per group.

        Training needs the batch to split into the groups (an error names the fix).
        Outside training (evaluation, `predict`, `generate`, an exported model) a
        batch that does not split, or whose size is unknown, is routed as one group.
        """
        rows = input_shape[0]  # sequences (rank 3) or tokens (rank 2)
        static = isinstance(rows, int)
        groups = self.routing_groups()
        if groups == 1 or (static and rows % groups == 0):
            return groups
        if not training:
            return 1
        if static:
            raise InputError(
                f"MoELayer {self.name!r}: a batch of {rows} does not split into {groups} "
                "routing groups of whole sequences. Make the batch size a multiple of the "
                "number of groups (the data-parallel degree: keras_multimodel.data.mixture "
                "takes `batch_multiple`), or set `num_groups`."
            )
        return groups  # an unknown batch in training: the reshape checks it

    def _valid(self, tokens, mask):
        if mask is None:
            return ops.ones(ops.shape(tokens)[:1], dtype="float32")
        return ops.cast(ops.reshape(mask, (-1,)), "float32")

    def _expert_axis(self):
        """Mesh axis the expert kernels are sharded over (JAX distribution), or None."""
        distribution = _active_distribution()
        if distribution is None:
            return None
        layout = distribution.get_variable_layout(self.expert_kernel_in)
        return None if layout is None else layout.axes[0]

    def _constrain(self, tensor, *axes):
        """Under a JAX distribution, asks the compiler to lay `tensor` out along `axes`."""
        distribution = _active_distribution()
        if distribution is None or all(axis is None for axis in axes):
            return tensor
        layout = keras.distribution.TensorLayout(axes, distribution.device_mesh)
        return keras.distribution.distribute_tensor(tensor, layout)

    def _experts(self, inputs, layout=(None, None, None, None)):
        # inputs (G, E, C, d) -> (G, E, C, d): one contraction per layer over all
        # experts, batched over the expert axis (so a sharded expert axis stays local).
        # (Weights cast to the inputs' dtype: `step` runs outside Keras's autocast,
        # and torch's einsum does not promote mixed dtypes.)
        kernel_in, kernel_out, bias_in, bias_out = (
            ops.cast(w, inputs.dtype)
            for w in (self.expert_kernel_in, self.expert_kernel_out,
                      self.expert_bias_in, self.expert_bias_out)
        )  # fmt: skip
        if inputs.shape[0] == 1:  # one group: a batched matmul (faster on TF than einsum)
            hidden = ops.matmul(inputs[0], kernel_in)[None]  # (1, E, C, h)
        else:
            hidden = ops.einsum("gecd,edh->gech", inputs, kernel_in)  # (G, E, C, h)
        hidden = self._constrain(hidden, *layout)
        hidden = self.activation(hidden + bias_in[:, None, :])
        if inputs.shape[0] == 1:
            outputs = ops.matmul(hidden[0], kernel_out)[None]  # (1, E, C, d)
        else:
            outputs = ops.einsum("gech,ehd->gecd", hidden, kernel_out)  # (G, E, C, d)
        return outputs + bias_out[:, None, :]

    def mixture(self, tokens, valid, training=False, no_drops=False, groups=None):
        """The expert mixture alone, before residual and LayerNorm.

        Args:
            tokens: `(N, channels)`.
            valid: `(N,)` float32, 1 for real tokens and 0 for padding.
            training: whether gating noise and the training capacity apply.
            no_drops: give every expert all of its group's slots, whatever the
                capacity factors.
            groups: routing groups (default: `routing_groups(N)`); consecutive
                tokens share a group.

        Returns:
            `(mixture, routing, dispatch)`: the `(N, channels)` gate-weighted sum of
            the kept experts' outputs, the `moe_routing.Routing` as flat tokens
            (gates `(N, k)`, importance `(E,)` summed over groups) and the
            `moe_routing.Dispatch` (per group).
        """
        num_tokens = ops.shape(tokens)[0]
        groups = self.routing_groups(num_tokens) if groups is None else groups
        channels = ops.shape(tokens)[-1]
        # (G, N/G, d): a group per data shard, where the batch already lies.
        batch_axis = _batch_axis(groups)
        grouped = ops.reshape(tokens, (groups, -1, channels))
        grouped = self._constrain(grouped, batch_axis, None, None)
        valid = ops.reshape(valid, (groups, -1))  # (G, N/G)
        routing = self._route(grouped, valid, training)
        factor = self.capacity_factor if training else self.eval_capacity_factor
        factor = None if no_drops else factor
        capacity = moe_routing.expert_capacity(
            ops.shape(grouped)[1], self.num_experts, self.top_k, factor
        )
        plan = moe_routing.dispatch(routing.experts, valid, self.num_experts, capacity)
        expert_inputs = moe_routing.gather_expert_inputs(grouped, plan, self.num_experts)
        expert_axis = self._expert_axis()
        layout = (None, None, None, None)
        if expert_axis is not None:  # expert parallelism: move tokens to their experts
            layout = (None if expert_axis == batch_axis else batch_axis, expert_axis, None, None)
            expert_inputs = self._constrain(expert_inputs, *layout)
        expert_outputs = self._experts(expert_inputs, layout)  # (G, E, C, d)
        if expert_axis is not None:  # and back to their data shard
            expert_outputs = self._constrain(expert_outputs, batch_axis, None, None, None)
        mixture = moe_routing.combine_expert_outputs(expert_outputs, plan, routing.gates)
        return ops.reshape(mixture, (num_tokens, channels)), _flat_routing(routing), plan

    def call(self, x, mask=None, training=None, return_terms=False):
        input_shape = ops.shape(x)
        tokens = ops.reshape(x, (-1, input_shape[-1]))  # (N, d)
        valid = self._valid(tokens, mask)
        groups = self._call_groups(input_shape, training)
        mixture, routing, plan = self.mixture(tokens, valid, training, groups=groups)
        for observer in self._routing_observers:
            observer(routing, valid, input_shape)
        mixture = ops.reshape(ops.cast(mixture, x.dtype), input_shape)
        outputs = self.norm(x + self.dropout_layer(mixture, training=training))
        terms = {
            "loss": self.loss_coef * routing.aux_loss,
            "dropped_fraction": ops.cast(plan.dropped_fraction, "float32"),
        }
        self.dropped_fraction.assign(terms["dropped_fraction"])
        if return_terms:
            return outputs, terms
        self.add_loss(terms["loss"])
        return outputs

    @contextlib.contextmanager
    def observe_routing(self, observer):
        """Within the context, every `call` passes its routing to `observer`.

        `observer(routing, valid, input_shape)` gets the `moe_routing.Routing` of
        the call's flat tokens, their `(N,)` validity (1 real, 0 padding) and the
        input's shape. Meant for eager inspection (e.g.
        `keras_multimodel.models.expert_load`); inside a compiled function the
        observer sees symbolic tensors. `step` (decoding) is not observed.

        >>> import numpy as np
        >>> moe = MoELayer(num_experts=4, hidden_dim=8, top_k=2)
        >>> seen = []
        >>> with moe.observe_routing(lambda routing, valid, shape: seen.append(routing)):
        ...     _ = moe(np.ones((2, 3, 8), "float32"))
        >>> tuple(seen[0].experts.shape)
        (6, 2)
        """
        self._routing_observers = (*self._routing_observers, observer)
        try:
            yield self
        finally:
            self._routing_observers = tuple(o for o in self._routing_observers if o is not observer)

    def step(self, x, mask=None):
        """Inference without drops, aux loss or state updates (decoding, `generate`).

        Every real token gets all its `top_k` experts (capacity = tokens), so a
        token's output does not depend on the other tokens in the call: one decoding
        position at a time gives the same outputs as the whole sequence at once.

        Args:
            x: `(batch, length, channels)` or `(tokens, channels)`.
            mask: optional padding mask.

        Returns:
            A tensor of the same shape as `x`.
        """
        x = ops.cast(x, self.compute_dtype)
        input_shape = ops.shape(x)
        tokens = ops.reshape(x, (-1, input_shape[-1]))  # (N, d)
        valid = self._valid(tokens, mask)
        num_tokens = tokens.shape[0]  # an int, None, or a symbolic dimension (export)
        if isinstance(num_tokens, int) and num_tokens * self.top_k < self.num_experts:
            # Few tokens (one decoding step): fetch only the chosen experts' weights
            # instead of running every expert's N slots.
            routing = _flat_routing(self._route(tokens[None], valid[None], False))
            mixture = self._mixture_of_chosen_experts(tokens, routing)
        else:
            # Without drops a token's output does not depend on its group.
            mixture, _, _ = self.mixture(tokens, valid, no_drops=True, groups=1)
        return self.norm(x + ops.reshape(ops.cast(mixture, x.dtype), input_shape))

    def _mixture_of_chosen_experts(self, tokens, routing):
        """No-drop mixture that gathers each token's k experts' weights: `(N, d)`.

        Reads N * k experts' weights instead of all E, the better plan when
        N * k < E (decoding a few sequences).
        """
        experts = routing.experts  # (N, k)

        def chosen(weight):  # the chosen experts' weights, in the tokens' dtype
            return ops.cast(ops.take(weight, experts, axis=0), tokens.dtype)

        kernel_in = chosen(self.expert_kernel_in)  # (N, k, d, h)
        hidden = ops.einsum("nd,nkdh->nkh", tokens, kernel_in)
        hidden = self.activation(hidden + chosen(self.expert_bias_in))
        kernel_out = chosen(self.expert_kernel_out)  # (N, k, h, d)
        outputs = ops.einsum("nkh,nkhd->nkd", hidden, kernel_out)
        outputs = outputs + chosen(self.expert_bias_out)  # (N, k, d)
        gates = ops.cast(routing.gates, outputs.dtype)[..., None]  # 0 for padding
        return ops.sum(outputs * gates, axis=1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, x, mask=None, training=None, return_terms=False):
        outputs = keras.KerasTensor(x.shape, dtype=self.compute_dtype)
        if not return_terms:
            return outputs
        terms = {name: keras.KerasTensor((), dtype="float32") for name in TERMS}
        return outputs, terms

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_experts": self.num_experts,
                "hidden_dim": self.hidden_dim,
                "top_k": self.top_k,
                "capacity_factor": self.capacity_factor,
                "eval_capacity_factor": self.eval_capacity_factor,
                "loss_coef": self.loss_coef,
                "noisy_gating": self.noisy_gating,
                "dropout": self.dropout,
                "activation": keras.activations.serialize(self.activation),
                "epsilon": self.epsilon,
                "kernel_initializer": (
                    keras.initializers.serialize(self.kernel_initializer)
                    if self.kernel_initializer is not None
                    else None
                ),
                "seed": self.seed,
                "num_groups": self.num_groups,
            }
        )
        return config


def _flat_routing(routing):
    """A grouped `Routing` as flat tokens: gates and experts `(G * N, k)`, sums `(E,)`."""
    top_k = routing.gates.shape[-1]
    return moe_routing.Routing(
        gates=ops.reshape(routing.gates, (-1, top_k)),
        experts=ops.reshape(routing.experts, (-1, top_k)),
        aux_loss=routing.aux_loss,
        importance=ops.sum(routing.importance, axis=0),
        load=ops.sum(routing.load, axis=0),
    )


def _active_distribution():
    """The `keras.distribution` in effect (JAX), or None."""
    if keras.backend.backend() != "jax":
        return None
    return keras.distribution.distribution()


def _batch_axis(groups):
    """The mesh axis to lay routing groups along: the batch axis, when each data shard
    holds whole groups."""
    distribution = _active_distribution()
    degree = layer_utils.data_parallel_degree()
    if distribution is None or degree == 1 or groups % degree:
        return None
    return distribution.batch_dim_name
