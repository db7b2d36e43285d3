"""The own-photos workflow (``imc-cluster train`` then ``predict`` on a folder of unlabelled images), scored
against the hidden classes: ``python -m benchmarks.own_images``."""
