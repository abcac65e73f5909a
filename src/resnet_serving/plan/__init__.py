"""`resnet-serving plan`: capacity and monthly cost from the bench's measured throughput (no torch, no boto3)."""

from resnet_serving.plan.capacity import Target, sagemaker_invocations_target

__all__ = ["Target", "sagemaker_invocations_target"]
