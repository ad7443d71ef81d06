"""The saved low-rank format: the configuration and modeling files every saved folder ships, saving and
loading folders, converting a dense model plus factors, and the cost model (parameters, FLOPs) of the format."""
