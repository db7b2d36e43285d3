"""A pretrained encoder on the CPU (``IMCSwAVClustering(backbone="LIBRARY:NAME", weights=...)``): feature
extraction speed against the machine's peak, bf16 beside float32, the laptop workflow from a folder of photos
to ``clusters.csv`` and ``clusters.png``, and k-means, the frozen-encoder head and fine-tuning on labelled
folders: ``python -m benchmarks.pretrained``."""
