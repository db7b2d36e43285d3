"""The ``imc-cluster`` command line: the parser (the published flags, defaults taken from the estimator), the
``train``, ``test`` and ``predict`` commands, and what they print and write.

The top layer: it may import every other.
"""
