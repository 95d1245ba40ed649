"""edgesplit: joint DNN partitioning and resource pricing at the network edge.

A vectorised JAX engine for the multi-leader multi-follower Stackelberg game of
Cheng, Gazda and Liu, "Joint DNN Partitioning and Resource Allocation for Multiple
Machine Learning-based Mobile Applications at the Network Edge".
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgesplit")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
