"""The on-device runtime. Imports nothing of the project; needs numpy, onnxruntime, OpenCV, cryptography."""
