"""resnet-serving's AWS foundation as CDK v2 stacks (synthesized by infra/app.py into infra/templates/)."""
