#!/bin/sh
# On a GPU host with Python and PyTorch, from the repository root with the bundle of bundle.sh in .gpu/ (BUNDLE=):
# install TorchServe and a Java runtime from it, point the interpreter at this checkout, and run the GPU bench
# once: fp16, nvJPEG batch decode, on-device resize, torch.compile, served ÷ raw at c=16/64/256, cold start.
#   sh dev/gpu-bench/run.sh OUTDIR [extra bench flags]     (the bench's own flags win over these defaults)
set -eu
[ $# -ge 1 ] || { echo "usage: run.sh OUTDIR [bench flags]" >&2; exit 2; }
out=$1; shift
py=${PYTHON:-python3}
bundle=${BUNDLE:-.gpu}
[ -f "$bundle/jre.tgz" ] || { echo "run.sh: no $bundle/jre.tgz: build it with dev/gpu-bench/bundle.sh" >&2; exit 2; }
[ -f pyproject.toml ] && [ -d handlers ] || { echo "run.sh: run it from the repository root" >&2; exit 2; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar xzf "$bundle/jre.tgz" -C "$work"
export JAVA_HOME="$work/jre"
# A venv of our own that also sees the host interpreter's packages (PyTorch): the host's stays untouched, and
# serve finds torchserve next to the interpreter. Without ensurepip there (or GPU_BENCH_INSTALL=host), install
# into the host's environment instead.
venv="$work/venv"
if [ "${GPU_BENCH_INSTALL:-venv}" = venv ] && "$py" -m venv "$venv" >/dev/null 2>&1; then
    "$py" -c 'import site; print("\n".join(site.getsitepackages()))' \
        >"$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_host_packages.pth"
    py="$venv/bin/python"
else
    echo "run.sh: installing TorchServe into $py's own environment"
fi
"$py" -m pip install --quiet --no-index --no-deps --no-compile --force-reinstall "$bundle"/wheels/*.whl
# This checkout's code, as an editable install would point at it (no build backend needed).
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$(pwd)/src" >"$site/resnet_serving_checkout.pth"
"$py" -m resnet_serving.torchserve.java --check
"$py" - <<'PY'
import importlib.metadata, os, torch, torchvision, ts
print("torchserve", importlib.metadata.version("torchserve"), "at", os.path.dirname(ts.__file__))
print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda)
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU visible to torch")
PY
export PYTHONUNBUFFERED=1
export RESNET_SERVING_COMPILE="${RESNET_SERVING_COMPILE:-1}"
# Batch 32: the classifier's own chunk size (model.Classifier max_batch). Raw is timed up to 256 so that its best
# batch is found; --repeat 1 and short windows keep the whole run inside one device call.
"$py" -m resnet_serving bench --out "$out" --concurrency 16,64,256 --batch-size 32 \
    --raw-batch-sizes 1,8,32,64,128,256 --raw-seconds 3 --duration 10 --warmup 3 --server-warmup 10 --repeat 1 "$@"
