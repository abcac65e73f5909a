"""`resnet-serving bench`: raw model vs in-process pipeline vs served by TorchServe, in one run."""

#: The levels `bench` measures by default: TorchServe holds up to 16 whole; 64 and 256 are overload.
DEFAULT_CONCURRENCY = (1, 4, 16, 64, 256)
