"""resnet-serving: a ResNet50 image classifier served by TorchServe on EKS, SageMaker or locally."""

__version__ = "0.1.0"
MODEL_NAME = "resnet50"
