"""Installs keras-multimodel: `pip install -e ".[jax,test,docs]"`."""

import pathlib
import re

import setuptools

HERE = pathlib.Path(__file__).parent
# The version is defined once, in the package (`keras_multimodel.__version__`); it is
# read as text because the package's dependencies are not installed yet.
VERSION = re.search(
    r'^__version__ = "([^"]+)"$',
    (HERE / "keras_multimodel" / "__init__.py").read_text(encoding="utf-8"),
    re.MULTILINE,
).group(1)

setuptools.setup(
    name="keras-multimodel",
    version=VERSION,
    description=(
        "The MultiModel of 'One Model To Learn Them All' (Kaiser et al., 2017) "
        "for Keras 3: one model for images, audio and text."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    url="https://github.com/keras-multimodel/keras-multimodel",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["keras_multimodel", "keras_multimodel.*"]),
    package_data={"keras_multimodel.data": ["files/*"]},
    # Lower bounds: the oldest releases scripts/test_versions.sh passes the default
    # tier at (keras-hub 0.32 needs keras 3.15 and TensorFlow Text 2.21; keras-hub
    # 0.21-0.24 lose the SentencePiece tokenizer's TensorFlow resource).
    install_requires=[
        "keras>=3.15,<4",
        "tensorflow>=2.21",
        "tensorflow-text>=2.21",
        "keras-hub>=0.32",
        "sentencepiece",
        "absl-py>=2.0",
        "tensorboard",
        "pillow",
        "numpy",
    ],
    extras_require={
        "jax": ["jax>=0.7.2", "jaxlib>=0.7.2"],
        # The notebooks in examples/ and keras_multimodel.plotting.
        "notebooks": ["matplotlib>=3.7", "ipykernel>=6"],
        # tensorflow-datasets: the TFDS loaders' tests run on the real builders'
        # feature specs (mock data, nothing downloaded); papermill executes the notebooks.
        "test": [
            "pytest>=8",
            "pytest-xdist>=3",  # scripts/test.sh runs the suite on 2 workers
            "ruff>=0.6",
            "tensorflow-datasets>=4.9",
            "papermill>=2.5",
            "matplotlib>=3.7",
            "ipykernel>=6",
        ],
        # The documentation site: `mkdocs serve` (mkdocs.yml, docs/).
        "docs": ["mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"],
    },
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
