"""Deployment artifacts: the ONNX export, int8 quantization, and what each measures."""
