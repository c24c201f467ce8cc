"""NVFP4 quantization: recipes (``recipes``), the ModelOpt-format checkpoint writer
(``checkpoint``) and activation calibration (``calibration``)."""
