"""keras-multimodel: the MultiModel of "One Model To Learn Them All" for Keras 3.

Reusable layers live in `keras_multimodel.layers`:

```python
import keras_multimodel as kmm

block = kmm.layers.ConvBlock(64)
attention = kmm.layers.AttentionBlock(num_heads=4)
moe = kmm.layers.MoELayer(num_experts=8, hidden_dim=128)
```
"""

from keras_multimodel import layers

__version__ = "0.1.0"

__all__ = ["layers", "__version__"]
