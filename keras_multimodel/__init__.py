"""keras-multimodel: the MultiModel of "One Model To Learn Them All" for Keras 3.

```python
import keras_multimodel as kmm
from keras_multimodel.modalities import ClassLabel, Image, Text

model = kmm.MultiModel(
    [
        kmm.Task("classify", inputs=Image(channels=1), targets=ClassLabel(10)),
        kmm.Task("translate", inputs=Text(1000), targets=Text(1000)),
    ],
    preset="tiny",
)
```

Reusable layers live in `keras_multimodel.layers`, modality nets in
`keras_multimodel.modalities`, input pipelines and the bundled tasks in
`keras_multimodel.data` (imported on first use: the model code never needs it).
"""

import importlib

from keras_multimodel import errors, layers, modalities, models, samplers
from keras_multimodel.models import MultiModel
from keras_multimodel.task import Task

__version__ = "0.3.0"

__all__ = [
    "MultiModel",
    "Task",
    "data",
    "errors",
    "layers",
    "modalities",
    "models",
    "samplers",
    "__version__",
]


def __getattr__(name):
    # `keras_multimodel.data` (tf.data pipelines, bundled data sets) loads on first use.
    if name == "data":
        return importlib.import_module("keras_multimodel.data")
    raise AttributeError(f"module 'keras_multimodel' has no attribute {name!r}")
