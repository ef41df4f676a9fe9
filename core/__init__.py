"""The base layer: errors, shared vocabulary, the metric registry and atomic file writes.

It imports nothing else of edgeshrink and nothing heavier than the standard library, so every
other package (and a device that runs only ``profile calibrate``) can stand on it.
"""
