"""SavedModel export: one serving signature per task, raw inputs in, decoded outputs out."""

from keras_multimodel.export.saved_model import export_saved_model

__all__ = ["export_saved_model"]
