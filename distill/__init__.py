"""Teacher -> student distillation in torch, ONNX export, evaluation and model cards.

torch lives here only. Imports compiler (cards, ONNX analysis), runtime (decoders) and sim (data).
One subpackage per task (``distill.trajectory``; detector, ppe, pose and posture follow the same
shape); ``distill.common`` holds what they share: seeding, the distributed guard and ONNX export.
"""
