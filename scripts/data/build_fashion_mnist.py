"""Rebuilds keras_multimodel/data/files/fashion_mnist.npz from Debian's Fashion-MNIST.

Source: Debian package `dataset-fashion-mnist` (Zalando Research, MIT license), files
/usr/share/datasets/fashion-mnist/*-idx?-ubyte.gz. The bundled copy is the package's
default ("small") size: 5,000 training and 500 validation images drawn from the
official training split and 1,000 test images from the official test split, with a
fixed seed. `--data_size full` reads the Debian files directly instead.

    apt-get install dataset-fashion-mnist
    python scripts/data/build_fashion_mnist.py
"""

import pathlib

import numpy as np

from keras_multimodel.data.bundled.classify_image import DEBIAN_FASHION_MNIST as SOURCE
from keras_multimodel.data.bundled.classify_image import read_idx

OUT = pathlib.Path(__file__).resolve().parents[2] / "keras_multimodel/data/files"


def main():
    x_train = read_idx(SOURCE / "train-images-idx3-ubyte.gz")
    y_train = read_idx(SOURCE / "train-labels-idx1-ubyte.gz")
    x_test = read_idx(SOURCE / "t10k-images-idx3-ubyte.gz")
    y_test = read_idx(SOURCE / "t10k-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(1706)
    order = rng.permutation(len(x_train))
    train, val = order[:5000], order[5000:5500]
    test = rng.permutation(len(x_test))[:1000]
    np.savez_compressed(
        OUT / "fashion_mnist.npz",
        train_images=x_train[train], train_labels=y_train[train],
        validation_images=x_train[val], validation_labels=y_train[val],
        test_images=x_test[test], test_labels=y_test[test],
    )
    print("wrote", OUT / "fashion_mnist.npz")


if __name__ == "__main__":
    main()
