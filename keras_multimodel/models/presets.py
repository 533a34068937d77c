"""MultiModel presets: names that decode to sizes.

| preset | hidden | heads | encoder | decoder | experts (k) | expert hidden | kernels (dilation) |
|---|---|---|---|---|---|---|---|
| tiny  | 64  | 4 | 2 | 2 | 4 (2)   | 128  | 3,3,5,5 (1,1,1,4) |
| base  | 256 | 8 | 4 | 4 | 16 (2)  | 1024 | 3,3,15,15 (1,1,1,8) |
| paper | 512 | 8 | 6 | 4 | 240 (4) | 2048 | 3,3,15,15 (1,1,1,8) |

"paper" follows Kaiser et al. (2017): hidden size 512, feed-forward 2048, 8 heads,
6 encoder conv blocks and 4 decoder blocks with an MoE layer in the middle of each,
240 experts with k = 4 for joint training (about a billion parameters, most in
the experts). "tiny" runs the test suite on a laptop CPU.
"""

import copy

# Settings every preset shares: the paper's conv block and MoE capacity and loss.
_SHARED = {
    "kernel_sizes": (3, 3, 15, 15),
    "dilation_rates": (1, 1, 1, 8),
    "top_k": 2,
    "capacity_factor": 1.25,
    "eval_capacity_factor": 2.0,
    "moe_loss_coef": 1e-2,
    "dropout": 0.1,
}

PRESETS = {
    "tiny": {
        **_SHARED,
        "hidden_size": 64,
        "num_heads": 4,
        "encoder_blocks": 2,
        "decoder_layers": 2,
        "kernel_sizes": (3, 3, 5, 5),
        "dilation_rates": (1, 1, 1, 4),
        "num_experts": 4,
        "expert_hidden_size": 128,
        "dropout": 0.0,
    },
    "base": {
        **_SHARED,
        "hidden_size": 256,
        "num_heads": 8,
        "encoder_blocks": 4,
        "decoder_layers": 4,
        "num_experts": 16,
        "expert_hidden_size": 1024,
    },
    "paper": {
        **_SHARED,
        "hidden_size": 512,
        "num_heads": 8,
        "encoder_blocks": 6,
        "decoder_layers": 4,
        "num_experts": 240,
        "expert_hidden_size": 2048,
        "top_k": 4,
    },
}


def resolve(preset, overrides):
    """The body configuration of `preset` with `overrides` applied; clear errors."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    config = copy.deepcopy(PRESETS[preset])
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(
            f"MultiModel: unknown setting(s) {unknown}. Settings a preset can override: "
            f"{sorted(config)}."
        )
    config.update(overrides)
    for key in ("kernel_sizes", "dilation_rates"):
        config[key] = tuple(config[key])
    return config
