"""Windows and on-screen drawing: the map viewer (``heightfusion view``) and the live app's building blocks.

Nothing here opens a window or a GL context at import time.
"""
