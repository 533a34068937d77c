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
`keras_multimodel.modalities`, input pipelines in `keras_multimodel.data`.
"""

from keras_multimodel import data, layers, modalities, models
from keras_multimodel.models import MultiModel
from keras_multimodel.task import Task

__version__ = "0.3.0"

__all__ = ["MultiModel", "Task", "data", "layers", "modalities", "models", "__version__"]
