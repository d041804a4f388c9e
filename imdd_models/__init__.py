"""imdd_models: streaming data, diffusion and segmentation models trained on IMDD shards.

Empty in this release: the training side arrives with its own issues. It reads only the shard
format written by `imdd-build shard` (see README), never the build workspace.
"""
