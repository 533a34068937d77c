"""Input pipelines: multi-task mixtures for `MultiModel.fit`."""

from keras_multimodel.data.mixture import bucket_boundaries, mixture

__all__ = ["bucket_boundaries", "mixture"]
