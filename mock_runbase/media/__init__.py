"""Rendering of the mock's output files, one module per concept:

- ``media.images``: ``render_png``, deterministic placeholder PNGs (Pillow).
- ``media.video``: ``render_mp4``, deterministic placeholder MP4s (PyAV: H.264, AAC).
- ``media.cache``: ``MediaCache``, a thread-safe, byte-bounded LRU cache of rendered bytes.

Nothing is re-exported here: importing the cache or the PNG renderer does not load PyAV and
numpy. Import from the module named after the concept.
"""
