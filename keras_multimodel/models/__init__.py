"""MultiModel, its body and presets."""

from keras_multimodel.models.body import Decoder, Encoder, IOMixer
from keras_multimodel.models.multimodel import MultiModel
from keras_multimodel.models.presets import PRESETS

__all__ = ["Decoder", "Encoder", "IOMixer", "MultiModel", "PRESETS"]
