"""The ``imc-cluster`` command line: the parser (the published flags, defaults read from the estimator's
source, so that ``--help`` loads no torch), the ``train``, ``test``, ``predict`` and ``cache`` commands, and
what they print and write.

The top layer: it may import every other.
"""
