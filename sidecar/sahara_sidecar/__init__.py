"""Sahara sidecar: ablated forward passes and generations of a Hugging Face causal LM, over gRPC."""

__version__ = "0.1.0"
