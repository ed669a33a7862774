"""Training and ONNX export of the bundled models.

Torch-only code: serving (device, edge, cloud, shared) never imports this package;
it reads the ONNX segments and manifest that ``training.export`` writes.
"""
