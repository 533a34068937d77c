"""classify_image: Fashion-MNIST, 28x28 grey images -> 10 clothing classes.

Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017; MIT), from Debian's
`dataset-fashion-mnist`: a bundled copy of 5,000 training, 500 validation and the
1,000 first test images ("small"), or all 60,000 and 10,000 from the Debian
package itself ("full", when it is installed).
"""

import gzip
import pathlib

import numpy as np

from keras_multimodel import metrics
from keras_multimodel.data.bundled import baselines, sources
from keras_multimodel.data.bundled.formats import ImageFormat, LabelFormat
from keras_multimodel.data.bundled.record import Baseline, BundledTask, Metric, register
from keras_multimodel.errors import DataError

CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DEBIAN_FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")


def read_idx(path):
    """The array of an IDX file (the MNIST format), gzipped."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def examples(split, data_size):
    if data_size == "full" and split != "validation":
        if not DEBIAN_FASHION_MNIST.is_dir():
            raise DataError(
                "data_size='full' reads all of Fashion-MNIST from the Debian package "
                "dataset-fashion-mnist: run `sudo apt-get install dataset-fashion-mnist`"
            )
        prefix = "train" if split == "train" else "t10k"
        images = read_idx(DEBIAN_FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(DEBIAN_FASHION_MNIST / f"{prefix}-labels-idx1-ubyte.gz")
        if split == "train":  # the bundled validation images are held out of training
            bundled = sources.npz("fashion_mnist.npz")["validation_images"]
            held_out = {img.tobytes() for img in bundled}
            keep = np.array([img.tobytes() not in held_out for img in images])
            images, labels = images[keep], labels[keep]
        return images[..., None], labels.astype("int32")
    data = sources.npz("fashion_mnist.npz")
    return data[f"{split}_images"][..., None], data[f"{split}_labels"].astype("int32")


RECORD = register(
    BundledTask(
        name="classify_image",
        description="28x28 grey image -> 10 clothing classes",
        inputs=ImageFormat((28, 28, 1)),
        targets=LabelFormat(CLASSES),
        examples=examples,
        metrics=(Metric("accuracy", metrics.accuracy),),
        baselines=(
            Baseline("majority class", baselines.majority_class),
            Baseline("nearest class centroid", baselines.nearest_centroid, learned=True),
        ),
    )
)
