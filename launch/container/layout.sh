#!/usr/bin/env bash
# Assembles the cpu worker image's filesystem (launch/container/Dockerfile, target cpu) in a
# folder, from parts this machine can get without Docker:
#   ROOT/opt/apache/beam/boot                         Beam's Go boot, built from the Go SDK module
#                                                     go.mod pins (the image copies the same
#                                                     program from apache/beam_go_sdk:2.77.0)
#   ROOT/opt/onnxruntime/lib/libonnxruntime.so.1.31.1 ONNX Runtime from npm (make ort, sha256-pinned)
#   ROOT/opt/stir/bin/stir                            the worker (make worker)
#   ROOT/opt/stir/bin/process-boot, stir-run          the PROCESS boot wrapper; `stir run` for launchers
#   ROOT/opt/stir/models/NAME/                        each model named in MODELS (default stir-tiny)
# launch/container's tests run workers from this folder.
#
#   launch/container/layout.sh ROOT
set -euo pipefail
root=${1:?usage: layout.sh ROOT}
cd "$(dirname "$0")/../.."
models=${MODELS-stir-tiny}
go=${GO:-go}

make --no-print-directory ort worker >&2
rm -rf "$root/opt"
mkdir -p "$root/opt/apache/beam" "$root/opt/onnxruntime/lib" "$root/opt/stir/bin" "$root/opt/stir/models"
"$go" build -o "$root/opt/apache/beam/boot" github.com/apache/beam/sdks/v2/go/container
cp .local/onnxruntime/libonnxruntime.so.1.31.1 "$root/opt/onnxruntime/lib/"
cp bin/linux_amd64/stir launch/container/process-boot launch/container/stir-run "$root/opt/stir/bin/"
for m in $models; do
  mkdir -p "$root/opt/stir/models/$m"
  cp models/zoo/"$m"/*.json models/zoo/"$m"/*.onnx "$root/opt/stir/models/$m/"
done
echo "layout: $root/opt" >&2
