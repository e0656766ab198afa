"""Parley's terminal Matrix client.

Layers, imports pointing down only:

- ``app`` / ``screens`` / ``widgets``: Textual UI; reads ``model``, calls ``matrix``.
- ``model``: pure client state (rooms, timelines, unread counts, pending sends); no I/O.
- ``render`` / ``text``: pure helpers turning Matrix content into safe Rich text.
- ``matrix``: a small async Matrix client-server API client over a ``Transport`` seam.
"""
