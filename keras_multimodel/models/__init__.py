"""MultiModel, its body, its configuration and presets."""

from keras_multimodel.models.body import Decoder, Encoder, IOMixer
from keras_multimodel.models.expert_load import ExpertLoad, expert_load
from keras_multimodel.models.multimodel import MultiModel
from keras_multimodel.models.presets import PRESETS, BodyConfig

__all__ = [
    "BodyConfig",
    "Decoder",
    "Encoder",
    "ExpertLoad",
    "IOMixer",
    "MultiModel",
    "PRESETS",
    "expert_load",
]
