"""Sahara's organisms: small Llama models trained here, so the pipeline runs offline.

Run the modules as scripts from sidecar/, e.g. ``python -m organism.build --out ../models``.
"""
