#!/bin/sh
# Build .gpu/ (or $1): what run.sh needs on a GPU host that has Python and PyTorch but no Java and no network.
#   a Java 17 runtime cut to TorchServe's needs by jlink (jre.tgz), and the TorchServe and model-archiver wheels,
#   TorchServe's with the smaller front-end jar of slim_torchserve.py. This checkout's code travels as it is.
# Needs: a JDK with jlink and jmods (JLINK=path, else next to `java`), the repository's .venv, the package registry.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/.gpu}
py=${PYTHON:-$root/.venv/bin/python}
# Modules the front end loads: netty, gRPC, JMX metrics, and log4j (java.beans is in java.desktop).
modules=java.base,java.desktop,java.logging,java.management,java.naming,java.xml,java.sql,jdk.unsupported,java.scripting,jdk.management

jlink=${JLINK:-}
if [ -z "$jlink" ]; then
    java=$(command -v java || true)
    [ -n "$java" ] || { echo "bundle.sh: no java on PATH; set JLINK=/path/to/jdk/bin/jlink" >&2; exit 2; }
    jlink=$(dirname "$(readlink -f "$java")")/jlink
fi
[ -x "$jlink" ] || { echo "bundle.sh: $jlink is not there: install a JDK 17+ (not a JRE), or set JLINK" >&2; exit 2; }
[ -x "$py" ] || { echo "bundle.sh: $py is missing: run 'make venv' first, or set PYTHON" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "jlink: $jlink ($("$jlink" --version))"
"$jlink" --add-modules "$modules" --strip-debug --no-header-files --no-man-pages --compress=2 --output "$tmp/jre"
# Debian's libjvm keeps its symbols: a fifth of the runtime's size, and nothing the server needs.
strip --strip-unneeded "$tmp/jre/lib/server/libjvm.so" 2>/dev/null || true
JAVA_HOME="$tmp/jre" "$py" -m resnet_serving.torchserve.java --check

ts_version=$("$py" -c 'import importlib.metadata as m; print(m.version("torchserve"))')
ma_version=$("$py" -c 'import importlib.metadata as m; print(m.version("torch-model-archiver"))')
"$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp/dl" \
    "torchserve==$ts_version" "torch-model-archiver==$ma_version"

mkdir -p "$tmp/bundle/wheels"
tar czf "$tmp/bundle/jre.tgz" -C "$tmp" jre
"$py" "$here/slim_torchserve.py" "$tmp"/dl/torchserve-*.whl "$tmp/bundle/wheels"
cp "$tmp"/dl/torch_model_archiver-*.whl "$tmp/bundle/wheels/"
printf 'torchserve %s\ntorch-model-archiver %s\njava %s\n' "$ts_version" "$ma_version" \
    "$("$tmp/jre/bin/java" -version 2>&1 | head -1)" >"$tmp/bundle/VERSIONS"

# It must travel with a checkout where 64 MiB is the limit; a bigger one means the jar or the runtime took in more.
size=$(du -sk "$tmp/bundle" | cut -f1)
if [ "$size" -gt $((56 * 1024)) ]; then
    echo "bundle.sh: the bundle is $((size / 1024)) MiB, over the 56 MiB it may take" >&2
    exit 1
fi
rm -rf "$out.partial" && mv "$tmp/bundle" "$out.partial" && rm -rf "$out" && mv "$out.partial" "$out"
echo "wrote $out ($((size / 1024)) MiB):"
ls -l "$out" "$out/wheels"
