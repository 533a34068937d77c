"""MultiModel: modality nets around one encoder-mixer-decoder body, trained with `fit`."""

import keras
import keras_hub
import numpy as np
from keras import ops

from keras_multimodel import compat
from keras_multimodel.errors import InputError
from keras_multimodel.layers.layer_utils import replicas_in_sync
from keras_multimodel.models.body import Decoder, Encoder, IOMixer
from keras_multimodel.models.generation import GenerationMixin
from keras_multimodel.models.presets import BodyConfig
from keras_multimodel.models.scoring import ScoringMixin, token_hits
from keras_multimodel.models.training import TrainingMixin
from keras_multimodel.task import Task, TaskPlan

BATCH_KEYS = ("inputs", "targets", "task_id")
MOE_OUTPUTS = "moe"  # the key of the MoE's terms in `call`'s outputs


@keras.saving.register_keras_serializable(package="keras_multimodel")
class MultiModel(GenerationMixin, ScoringMixin, TrainingMixin, keras.Model):
    """One model for many tasks and modalities (Kaiser et al., 2017).

    Each task's input modality net (bottom) maps raw inputs to a sequence
    `(B, S, d)`; the **encoder** (ConvBlocks with an MoELayer in the middle)
    encodes it; the **I/O mixer** attends from the shifted targets to it; the
    **decoder** (causal ConvBlocks and attention, MoE in the middle) produces one
    output per target position, and the target modality net (top) maps it to
    logits. The first decoder input is the task's **command token**, so one decoder
    serves every task; a label target is a single decoder position.

    **Batches.** `call` and `fit` take `{group: {"inputs", "targets", "task_id"}}`
    with one sub-batch per group of tasks sharing input and target nets (see
    `model.groups`); `keras_multimodel.data.mixture` builds such datasets. `call`
    returns `{group: logits}` and, when the body has MoE layers, the MoE's terms of
    that call under the key `"moe"`: `{"loss": the balancing losses (summed, each
    already weighted), "dropped_fraction": the mean dropped fraction}`. The loss
    comes to `compute_loss` in the outputs, as in flax's returned collections: no
    state is shared between calls, replicas or backends. `predict` returns the
    logits only.
    `compile(optimizer=...)` needs no loss: the loss is the sum over tasks of
    `loss_weight * (mean target-token loss)` plus the MoE balancing losses, and the
    logs show `{task}_loss` and `{task}_accuracy` (labels) or
    `{task}_token_accuracy` (sequences) for every task, `moe_loss` (the balancing
    losses, already weighted, as added to the loss) and `moe_dropped_fraction` (the
    fraction of real tokens' expert assignments over capacity, mean over MoE layers
    and sub-batches). `keras_multimodel.models.expert_load` counts which experts
    each task's tokens go to.

    Args:
        tasks: list of `keras_multimodel.Task`.
        preset: "tiny", "base" or "paper" (see `keras_multimodel.models.presets`):
            the body's sizes, unless `body_config` gives them.
        tokenizer: optional keras-hub tokenizer of the text tasks (e.g. from
            `keras_multimodel.data.train_tokenizer`). It is saved with the model,
            and `generate` then takes strings for text inputs and returns strings
            for text targets.
        name: the model's name (a base `keras.Model` argument).
        dtype: its dtype policy (a base `keras.Model` argument), e.g.
            `"mixed_bfloat16"`.
        body_config: a `BodyConfig` (or its dict) instead of a preset.
        **overrides: body settings to change, e.g. `hidden_size=128`.

    The config (`get_config`, `model.keras`) stores every resolved body setting,
    not the preset's name, so a saved model rebuilds the same way whatever later
    happens to the presets.

    Example:
    >>> import numpy as np
    >>> import keras_multimodel as kmm
    >>> from keras_multimodel.modalities import ClassLabel, Image
    >>> model = kmm.MultiModel([kmm.Task("digits", Image(channels=1), ClassLabel(10))])
    >>> model.groups
    {'image_to_class_label': ['digits']}
    >>> model.generate("digits", np.zeros((2, 28, 28, 1), "uint8")).shape
    (2,)
    """

    def __init__(
        self,
        tasks,
        preset="tiny",
        tokenizer=None,
        name="multimodel",
        dtype=None,
        body_config=None,
        **overrides,
    ):
        super().__init__(name=name, dtype=dtype)
        if tokenizer is not None and not isinstance(tokenizer, keras_hub.tokenizers.Tokenizer):
            raise InputError(
                "MultiModel: `tokenizer` must be a keras_hub tokenizer (e.g. from "
                f"keras_multimodel.data.train_tokenizer); received {type(tokenizer).__name__}."
            )
        self.tokenizer = tokenizer
        self.plan = TaskPlan(tasks)
        self.tasks = self.plan.tasks
        if body_config is None:
            config = BodyConfig.from_preset(preset, **overrides)
        elif isinstance(body_config, BodyConfig):
            config = body_config.replace(**overrides)
        else:
            config = BodyConfig.from_dict(body_config).replace(**overrides)
        self.body_config = config
        d = config.hidden_size

        # === Modality nets: one per distinct configuration ===
        self.nets = {
            name: spec.bind(d, name=name, dtype=self.dtype_policy)
            for name, spec in self.plan.nets.items()
        }
        # === Body ===
        self.command_embedding = keras.layers.Embedding(
            len(self.plan.commands), d, dtype=self.dtype_policy, name="command_embedding"
        )
        self.command_embedding.build((None,))
        self.encoder = Encoder(config, dtype=self.dtype_policy, name="encoder")
        self.mixer = IOMixer(config, dtype=self.dtype_policy, name="io_mixer")
        self.decoder = Decoder(config, dtype=self.dtype_policy, name="decoder")
        for part in (self.encoder, self.mixer, self.decoder):
            part.build()
        self._command_of_task = np.array(
            [self.plan.command_index[t.name] for t in self.tasks], "int32"
        )
        # === Per-task logs ===
        self.task_losses = [keras.metrics.Mean(name=f"{t.name}_loss") for t in self.tasks]
        self.task_accuracies = [keras.metrics.Mean(name=t.metric_name) for t in self.tasks]
        self.moe_loss_tracker = keras.metrics.Mean(name="moe_loss")
        self.moe_dropped_tracker = keras.metrics.Mean(name="moe_dropped_fraction")
        self._generate_functions = {}
        self.built = True

    @property
    def moe_layers(self):
        """The body's `MoELayer`s: `[encoder.moe, decoder.moe]` (none without MoE)."""
        return [moe for moe in (self.encoder.moe, self.decoder.moe) if moe is not None]

    @property
    def groups(self):
        """`{group name: [task names]}`, the sub-batches a batch holds."""
        return {group: list(names) for group, names in self.plan.groups.items()}

    def nets_of(self, task_name):
        """The `(input net, target net)` of a task."""
        task = self.plan.task(task_name)
        return self.nets[self.plan.input_net[task.name]], self.nets[self.plan.target_net[task.name]]

    # ----- forward -------------------------------------------------------------------
    def _check_batch(self, batch):
        if not isinstance(batch, dict) or not batch:
            raise InputError(
                "MultiModel takes a dict {group: {'inputs', 'targets', 'task_id'}}; build it "
                "with keras_multimodel.data.mixture(...). Received "
                f"{type(batch).__name__}. Groups of this model: {list(self.plan.groups)}."
            )
        for group, sub_batch in batch.items():
            if group not in self.plan.groups:
                raise InputError(
                    f"Unknown group {group!r} in the batch. This model's groups: {self.groups}."
                )
            if not isinstance(sub_batch, dict) or set(sub_batch) != set(BATCH_KEYS):
                keys = sorted(sub_batch) if isinstance(sub_batch, dict) else type(sub_batch)
                raise InputError(
                    f"Group {group!r}: a sub-batch is a dict with keys {list(BATCH_KEYS)}; "
                    f"received {keys}."
                )

    def encode(self, input_net, inputs, training=None, return_moe_terms=False):
        """Raw inputs -> `(encoded (B, S, d), mask (B, S))`.

        With `return_moe_terms=True`, `(encoded, mask, terms)`: the list of the
        encoder MoE's terms (see `MoELayer`'s `return_terms`).
        """
        x, mask = input_net.bottom(inputs, training=training)
        if return_moe_terms:
            encoded, terms = self.encoder(x, mask=mask, training=training, return_moe_terms=True)
            return encoded, mask, terms
        return self.encoder(x, mask=mask, training=training), mask

    def shifted_targets(self, target_net, tokens, command):
        """Decoder inputs `(B, T, d)`: the command token, then targets 0..T-2 embedded."""
        first = self.command_embedding(command)[:, None, :]  # (B, 1, d)
        if not target_net.is_sequence:
            return first
        rest = target_net.targets_bottom(tokens[:, :-1])  # (B, T-1, d)
        return ops.concatenate([first, ops.cast(rest, first.dtype)], axis=1)

    def decode(
        self,
        shifted,
        encoded,
        mask,
        encoded_mask,
        training=None,
        decoding=False,
        return_moe_terms=False,
    ):
        """Mixer and decoder over whole target sequences: `(B, T, d)` outputs.

        With `return_moe_terms=True`, `(outputs, terms)` as for `encode`.
        """
        mixed = self.mixer(
            shifted, encoded, mask=mask, encoded_mask=encoded_mask, training=training
        )
        return self.decoder(
            mixed,
            encoded,
            mask=mask,
            encoded_mask=encoded_mask,
            training=training,
            decoding=decoding,
            return_moe_terms=return_moe_terms,
        )

    def call(self, batch, training=None):
        """`{group: sub-batch}` -> `{group: logits (B, T, classes)}`, and the MoE's
        terms under `"moe"` (see the class docstring)."""
        self._check_batch(batch)
        outputs = {}
        terms = []
        for group, sub_batch in batch.items():
            input_net, target_net = self.nets_of(self.plan.groups[group][0])
            encoded, encoded_mask, encoder_terms = self.encode(
                input_net, sub_batch["inputs"], training, return_moe_terms=True
            )
            tokens = target_net.target_tokens(sub_batch["targets"])  # (B, T)
            mask = target_net.target_mask(tokens)
            command = ops.take(self._command_of_task, ops.cast(sub_batch["task_id"], "int32"))
            shifted = self.shifted_targets(target_net, tokens, command)
            decoded, decoder_terms = self.decode(
                shifted, encoded, mask, encoded_mask, training, return_moe_terms=True
            )
            outputs[group] = target_net.top(decoded)
            terms += encoder_terms + decoder_terms
        if terms:
            outputs[MOE_OUTPUTS] = {
                "loss": ops.sum(ops.stack([t["loss"] for t in terms])),
                "dropped_fraction": ops.mean(ops.stack([t["dropped_fraction"] for t in terms])),
            }
        return outputs

    def predict_step(self, *args):
        # `predict` returns the logits (Keras concatenates its outputs over batches).
        # The JAX trainer's step is `(state, data) -> (outputs, state)`, as its guide
        # to customizing `fit` documents; the others' `data -> outputs`.
        result = super().predict_step(*args)
        if keras.backend.backend() == "jax":
            outputs, state = result
            return _logits(outputs), state
        return _logits(result)

    # ----- loss and metrics ------------------------------------------------------------
    def _task_statistics(self, batch, outputs):
        """Per task: `(loss sum, target tokens, correct tokens)`, each `(B,)`, and its mask."""
        statistics = []
        for group, logits in _logits(outputs).items():
            sub_batch = batch[group]
            target_net = self.nets_of(self.plan.groups[group][0])[1]
            tokens = target_net.target_tokens(sub_batch["targets"])
            mask = target_net.target_mask(tokens)  # (B, T)
            loss = ops.sum(target_net.loss(tokens, logits) * mask, axis=1)  # (B,)
            hits = token_hits(logits, tokens)  # (B, T)
            count, correct = ops.sum(mask, axis=1), ops.sum(hits * mask, axis=1)
            task_id = ops.cast(sub_batch["task_id"], "int32")
            for name in self.plan.groups[group]:
                of_task = ops.cast(ops.equal(task_id, self.plan.task_index[name]), "float32")
                statistics.append((self.plan.task_index[name], loss, count, correct, of_task))
        return statistics

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # Each task's loss is its mean over the target tokens of the *global* batch:
        # under tf.distribute a replica returns its tokens' loss sum over the global
        # token count (its share; replicas' gradients are summed). On one device, and
        # on JAX (which sees the global batch), the global count is the local one.
        total = ops.zeros((), "float32")
        for index, loss, count, _, of_task in self._task_statistics(x, y_pred):
            tokens = _sum_over_replicas(ops.stop_gradient(ops.sum(count * of_task)))
            task_loss = ops.sum(loss * of_task) / ops.maximum(tokens, 1.0)
            total = total + self.tasks[index].loss_weight * task_loss
        # Losses other layers add (`add_loss`, weight regularizers); the MoE's come
        # in the outputs. Like the task losses, a replica's share is 1 / replicas
        # (its gradients are summed over the replicas).
        extra = [ops.cast(loss, "float32") for loss in self.losses]
        moe = y_pred.get(MOE_OUTPUTS) if isinstance(y_pred, dict) else None
        if moe is not None:
            balance = ops.cast(moe["loss"], "float32")
            self.moe_loss_tracker.update_state(balance)
            self.moe_dropped_tracker.update_state(moe["dropped_fraction"])
            extra.append(balance)
        if extra:
            total = total + ops.sum(ops.stack(extra)) / replicas_in_sync()
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        for index, loss, count, correct, of_task in self._task_statistics(x, y_pred):
            weight = count * of_task
            safe = ops.maximum(count, 1.0)
            self.task_losses[index].update_state(loss / safe, sample_weight=weight)
            self.task_accuracies[index].update_state(correct / safe, sample_weight=weight)
        return self.get_metrics_result()

    # ----- distribution ---------------------------------------------------------------
    @staticmethod
    def get_layout_map(
        device_mesh,
        model_parallel_dim_name="model",
        data_parallel_dim_name="batch",
        expert_parallel_dim_name=None,
        shard_attention=True,
    ):
        """A `keras.distribution.LayoutMap` for `keras.distribution.ModelParallel` (JAX).

        Shards every MoE layer's experts (their kernels and biases, along the
        expert axis) over `expert_parallel_dim_name` of `device_mesh` (by default
        the model axis), and every attention layer's (decoder and I/O mixer) query,
        key, value and output kernels along their heads over the model axis
        (Megatron-style; skipped when the mesh has no model axis, or with
        `shard_attention=False`). Everything else is replicated. Pass
        `data_parallel_dim_name` as `ModelParallel`'s `batch_dim_name`: the batch is
        split over it.

        Two common meshes:
        - `(data, model)` axes `("batch", "model")`: data parallel over "batch",
          experts and heads split over "model";
        - one axis `("batch",)` with `expert_parallel_dim_name="batch"`: every
          device holds `num_experts / devices` experts and its own data shard; the
          MoE moves tokens to their experts and back (all-to-all), GShard's
          expert parallelism.

        The expert count must be a multiple of the expert axis's size, and the
        heads of the model axis's size (or pass `shard_attention=False`).

        Example (on 8 devices, e.g. `XLA_FLAGS=--xla_force_host_platform_device_count=8`):
        ```python
        mesh = keras.distribution.DeviceMesh((2, 4), ["batch", "model"])
        layout_map = MultiModel.get_layout_map(mesh)
        keras.distribution.set_distribution(
            keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
        )
        model = MultiModel(tasks, num_experts=8)  # variables are created sharded
        ```
        """
        axes = list(device_mesh.axis_names)
        expert_axis = expert_parallel_dim_name or model_parallel_dim_name
        checks = (
            ("data_parallel_dim_name", data_parallel_dim_name, "name the mesh's data axis"),
            (
                "expert axis (expert_parallel_dim_name, else model_parallel_dim_name)",
                expert_axis,
                "name the mesh axis to split the experts over, e.g. "
                "expert_parallel_dim_name='batch' on a one-axis mesh",
            ),
        )
        for role, axis, fix in checks:
            if axis not in axes:
                raise InputError(
                    f"MultiModel.get_layout_map: the {role} {axis!r} is not an axis of the "
                    f"device mesh, whose axes are {axes}: {fix}."
                )
        layout_map = keras.distribution.LayoutMap(device_mesh)
        layout_map[r".*/expert_kernel_(in|out)"] = (expert_axis, None, None)
        layout_map[r".*/expert_bias_(in|out)"] = (expert_axis, None)
        model_axis = model_parallel_dim_name
        if shard_attention and model_axis in axes and model_axis != data_parallel_dim_name:
            model = model_parallel_dim_name
            layout_map[r".*/attention(_\d+)?/(query|key|value)/kernel"] = (None, model, None)
            layout_map[r".*/attention(_\d+)?/attention_output/kernel"] = (model, None, None)
        return layout_map

    # ----- export ------------------------------------------------------------------
    def export(
        self,
        filepath,
        format="tf_saved_model",
        verbose=True,
        tasks=None,
        sampler="greedy",
        input_signatures=None,
        label_names=None,
    ):
        """Exports a SavedModel with one serving signature per task.

        Each signature is named after its task (the first task is also
        `serving_default`), takes raw inputs (`text` strings, `image` uint8
        `(B, H, W, C)`, `waveform` float32 `(B, N)` with `length` int32 `(B,)`) and
        returns decoded outputs (`class_id`, `probability`, `class_name`; or
        `text` and `token_ids`). Tokenizing, the decoding loop and detokenizing run
        inside the graph, so the SavedModel serves from any TensorFlow runtime
        without this package or JAX. See `keras_multimodel.export`.

        Args:
            filepath: the SavedModel directory.
            format: "tf_saved_model" (the only format with per-task signatures).
            verbose: print the signatures.
            tasks: task names to export (default: all).
            sampler: "greedy" or "beam", or a `{task: sampler}` dict (tasks it leaves
                out decode greedily).
            input_signatures: `{task: {name: tf.TensorSpec}}` to fix raw input
                shapes (e.g. the image size).
            label_names: `{task: [class names]}`.
        """
        if format != "tf_saved_model":
            raise InputError(
                f"MultiModel.export: format {format!r} is not supported; use "
                "'tf_saved_model' (one serving signature per task)."
            )
        from keras_multimodel.export import export_saved_model

        return export_saved_model(
            self, filepath, tasks, sampler, input_signatures, label_names, verbose
        )

    # ----- config ------------------------------------------------------------------
    def get_config(self):
        return {
            "name": self.name,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "tasks": [task.get_config() for task in self.tasks],
            "body_config": self.body_config.to_dict(),
            "tokenizer": (
                None
                if self.tokenizer is None
                else keras.saving.serialize_keras_object(self.tokenizer)
            ),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tasks"] = [Task.from_config(task) for task in config["tasks"]]
        if config.get("tokenizer") is not None:
            config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)

    def get_build_config(self):
        return None  # built in __init__

    def get_compile_config(self):
        return compat.portable_compile_config(super().get_compile_config())


def _sum_over_replicas(value):
    """`value` summed over the replicas of the `tf.distribute` strategy running the step."""
    if replicas_in_sync() == 1:
        return value
    import tensorflow as tf

    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)


def _logits(outputs):
    """`call`'s outputs without the MoE's terms: `{group: logits}`."""
    return {key: value for key, value in outputs.items() if key != MOE_OUTPUTS}
