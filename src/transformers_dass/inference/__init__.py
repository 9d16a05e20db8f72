"""Inference services every front end calls: load a model (`loading`) in a precision (`precision`), the features
of a recording (`features`), classify it and read its timeline from one forward (`classify`, `timeline`), and
export to ONNX (`onnx_export`)."""
