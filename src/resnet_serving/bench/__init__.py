"""`resnet-serving bench`: raw model vs in-process pipeline vs served by TorchServe, in one run."""
