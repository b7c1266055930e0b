"""Track-On2's online step exported to ONNX (``export.onnx``) and a torch-free streaming runtime for the graphs
(``export.runtime``)."""
