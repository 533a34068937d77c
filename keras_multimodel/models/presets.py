"""The body's configuration (`BodyConfig`) and presets: names that decode to sizes.

| preset | hidden | heads | encoder | decoder | experts (k) | expert hidden | kernels (dilation) |
|---|---|---|---|---|---|---|---|
| tiny  | 64  | 4 | 2 | 2 | 4 (2)   | 128  | 3,3,5,5 (1,1,1,4) |
| base  | 256 | 8 | 4 | 4 | 16 (2)  | 1024 | 3,3,15,15 (1,1,1,8) |
| paper | 512 | 8 | 6 | 4 | 240 (4) | 2048 | 3,3,15,15 (1,1,1,8) |

"paper" follows Kaiser et al. (2017): hidden size 512, feed-forward 2048, 8 heads,
6 encoder conv blocks and 4 decoder blocks with an MoE layer in the middle of each,
240 experts with k = 4 for joint training (about a billion parameters, most in
the experts). "tiny" runs the test suite on a laptop CPU.

A preset only fills in a `BodyConfig`; a saved model stores the resolved config, so
editing a preset never changes what an old `model.keras` rebuilds into.
"""

import dataclasses

from keras_multimodel.errors import InputError


@dataclasses.dataclass(frozen=True)
class BodyConfig:
    """Every setting of the MultiModel body (encoder, I/O mixer, decoder).

    Attributes:
        hidden_size: d, the width of the body and of every modality net's output.
        num_heads: attention heads.
        encoder_blocks: ConvBlocks of the encoder (an MoELayer sits in the middle).
        decoder_layers: causal ConvBlock + attention layers of the decoder.
        kernel_sizes: kernel size of each conv step of a ConvBlock.
        dilation_rates: dilation of each conv step (same length).
        num_experts: experts of each MoELayer.
        expert_hidden_size: hidden width of each expert.
        top_k: experts per token.
        capacity_factor: MoE slots per expert in training (None: no drops).
        eval_capacity_factor: the same outside training.
        moe_loss_coef: weight of each MoE layer's balancing loss.
        dropout: dropout rate of every residual branch.
        moe_num_groups: routing groups of each MoELayer per global batch; None
            (the default) for one per data shard (see `MoELayer`).
        use_moe: False leaves the MoELayers out (the paper's "without MoE" ablation).
        use_attention: False replaces every attention block by the mean of the
            encoded inputs, projected and added (the paper's "without attention"
            ablation: the decoder still sees its input, but cannot choose where to look).

    >>> BodyConfig.from_preset("tiny", hidden_size=32).hidden_size
    32
    """

    hidden_size: int
    num_heads: int
    encoder_blocks: int
    decoder_layers: int
    num_experts: int
    expert_hidden_size: int
    kernel_sizes: tuple = (3, 3, 15, 15)
    dilation_rates: tuple = (1, 1, 1, 8)
    top_k: int = 2
    capacity_factor: float | None = 1.25
    eval_capacity_factor: float | None = 2.0
    moe_loss_coef: float = 1e-2
    dropout: float = 0.1
    moe_num_groups: int | None = None
    use_moe: bool = True
    use_attention: bool = True

    def __post_init__(self):
        for key in ("kernel_sizes", "dilation_rates"):  # JSON gives lists
            object.__setattr__(self, key, tuple(getattr(self, key)))
        groups = self.moe_num_groups
        if groups is not None and (
            isinstance(groups, bool) or not isinstance(groups, int) or groups < 1
        ):
            raise InputError(
                f"MultiModel: `moe_num_groups` must be a positive int, or None for one "
                f"routing group per data shard; received {groups!r}."
            )

    @classmethod
    def from_preset(cls, preset, **overrides):
        """The config of `preset` with `overrides` applied; clear errors for unknown names."""
        if preset not in PRESETS:
            raise InputError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
        return PRESETS[preset].replace(**overrides)

    @classmethod
    def from_dict(cls, config):
        """The inverse of `to_dict`; unknown keys are an error that lists the known ones."""
        return cls(**_known_settings(config, "a BodyConfig"))

    def replace(self, **overrides):
        """A copy with `overrides` applied."""
        return dataclasses.replace(self, **_known_settings(overrides, "MultiModel"))

    def to_dict(self):
        """Plain JSON-ready values (tuples as lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }


def _known_settings(settings, owner):
    known = {field.name for field in dataclasses.fields(BodyConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InputError(f"{owner}: unknown setting(s) {unknown}. Body settings: {sorted(known)}.")
    return dict(settings)


PRESETS = {
    "tiny": BodyConfig(
        hidden_size=64,
        num_heads=4,
        encoder_blocks=2,
        decoder_layers=2,
        num_experts=4,
        expert_hidden_size=128,
        kernel_sizes=(3, 3, 5, 5),
        dilation_rates=(1, 1, 1, 4),
        dropout=0.0,
    ),
    "base": BodyConfig(
        hidden_size=256,
        num_heads=8,
        encoder_blocks=4,
        decoder_layers=4,
        num_experts=16,
        expert_hidden_size=1024,
    ),
    "paper": BodyConfig(
        hidden_size=512,
        num_heads=8,
        encoder_blocks=6,
        decoder_layers=4,
        num_experts=240,
        expert_hidden_size=2048,
        top_k=4,
    ),
}
"""`{name: BodyConfig}`: the presets `MultiModel(preset=...)` and `BodyConfig.from_preset`
take (the table at the top of this module)."""
