"""Calibration for INT8: which images, fed exactly as deployment feeds them, and the ranges they give.

- :mod:`calibration.image_source`: N seeded images from a folder or a data set name;
- :mod:`calibration.model_inputs`: those images through ``runtime.preprocess`` with the model's metadata and shapes;
- :mod:`calibration.data_reader`: ONNX Runtime's ``CalibrationDataReader`` over them;
- :mod:`calibration.cache`: ranges saved for reuse, refused for another model;
- :mod:`calibration.precision_regions`: which graph nodes reduced precision may touch (FP16 and INT8).
"""

from calibration.errors import CalibrationError
from calibration.image_source import CalibrationImages, calibration_images

__all__ = ["CalibrationError", "CalibrationImages", "calibration_images"]
