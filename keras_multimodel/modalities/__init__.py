"""Modality nets: map raw data into the body's representation and back.

| Modality | Input (bottom) | Target (top, loss) |
|---|---|---|
| `Image(channels=3)` | uint8/float pixels `(B, H, W, C)` | - |
| `Audio(sample_rate=16000)` | waveforms `(B, N)` with lengths | - |
| `Text(vocab_size)` | token ids `(B, L)`, 0 = padding | token ids, label-smoothed CE |
| `ClassLabel(num_classes)` | - | class ids `(B,)`, CE |

Add a modality by subclassing `Modality` and decorating it with
`register_modality`.
"""

from keras_multimodel.modalities.audio import Audio
from keras_multimodel.modalities.base import Modality, get, register_modality
from keras_multimodel.modalities.class_label import ClassLabel
from keras_multimodel.modalities.image import Image
from keras_multimodel.modalities.text import Text

__all__ = ["Audio", "ClassLabel", "Image", "Modality", "Text", "get", "register_modality"]
