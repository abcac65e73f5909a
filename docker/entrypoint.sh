#!/usr/bin/env bash
# Entry point of the resnet-serving images.
#
#   IMAGE serve [FLAGS...]   SageMaker BYOC mode: SageMaker runs `docker run IMAGE serve` and expects the
#                            model from /opt/ml/model served on port 8080 (/ping, /invocations). Extra
#                            flags are appended (later flags win), e.g. `serve --workers 2`.
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
  # SageMaker multi-container endpoints pass the port to bind in SAGEMAKER_BIND_TO_PORT.
  exec resnet-serving serve \
    --model-dir /opt/ml/model \
    --host 0.0.0.0 \
    --port "${SAGEMAKER_BIND_TO_PORT:-8080}" \
    "$@"
fi

exec "$@"
