"""The SageMaker managed path: the only code that talks to SageMaker, sagemaker-runtime, Application Auto
Scaling and CloudWatch.

::

    update_endpoint_version("resnet50-prod", store="s3://models/prod", version="4")  # what the operator calls

CLI: ``resnet-serving sagemaker deploy|status|rollback|delete|invoke`` (:mod:`resnet_serving.cli.sagemaker`). Errors:
:class:`~resnet_serving.errors.SageMakerError` and its subclasses, converted in one place (:mod:`.errors`).
"""

from resnet_serving.sagemaker.deploy import Outcome, deploy, rollback, update_endpoint_version
from resnet_serving.sagemaker.spec import DeploySpec, Traffic

__all__ = ["DeploySpec", "Outcome", "Traffic", "deploy", "rollback", "update_endpoint_version"]
