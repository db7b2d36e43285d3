"""Facts that every layer shares: the version, the numeric checks, atomic file writes, the device, and the
deprecated names of the 0.2 modules.

The bottom layer: it may import nothing of the package.
"""
