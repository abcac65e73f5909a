#!/usr/bin/env bash
# Entry point of the resnet-serving images.
#
#   IMAGE serve [FLAGS...]   SageMaker BYOC mode: SageMaker runs `docker run IMAGE serve` and expects the
#                            model from /opt/ml/model served on port 8080 (/ping, /invocations). Extra
#                            flags are appended (later flags win), e.g. `serve --workers 2`. SIGTERM stops
#                            TorchServe and its workers; SageMaker sends SIGKILL 30 s later.
#   IMAGE (no arguments)     the same as `serve`.
#   IMAGE CMD [ARGS...]      anything else is exec'd as is, e.g. `resnet-serving fetch ...`, `bash`.
#
# exec everywhere: the command becomes PID 1's direct replacement and receives SIGTERM itself.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  set -- serve
fi

if [ "$1" = "serve" ]; then
  shift
  # SageMaker extracts model.tar.gz (model.mar + manifest.json) into /opt/ml/model; serve verifies the
  # archive's sha256 against the manifest before TorchServe sees it. Multi-container endpoints pass the port
  # in SAGEMAKER_BIND_TO_PORT. The payload limit follows the endpoint kind that `sagemaker deploy` sets.
  export RESNET_SERVING_SAGEMAKER_MODE="${RESNET_SERVING_SAGEMAKER_MODE:-realtime}"
  exec resnet-serving serve \
    --model-dir "${SM_MODEL_DIR:-/opt/ml/model}" \
    --host 0.0.0.0 \
    --port "${SAGEMAKER_BIND_TO_PORT:-8080}" \
    "$@"
fi

exec "$@"
