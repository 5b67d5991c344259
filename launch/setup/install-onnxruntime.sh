#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that github.com/yalue/onnxruntime_go v1.38.0 needs
# (C API 31, ONNX Runtime 1.31), from the npm package onnxruntime-node@1.31.1, which ships the
# Linux x64 library inside its tarball. `npm pack` runs no install script and downloads only
# from the npm registry. Idempotent: does nothing when the verified library is in place.
#
#   launch/setup/install-onnxruntime.sh [DEST_DIR]   (default: .local/onnxruntime)
set -euo pipefail

version=1.31.1
tarball_sha256=d7a3de2b1bba92614abc74af909cc0ba4f4dd5347735418794edeb58cfef2d22
lib_sha256=f19a4da48c4c65e0cdccff82354482f657fa91a3455b66174195b94ca55b0e6f
dest=${1:-.local/onnxruntime}
lib="$dest/libonnxruntime.so.$version"

if [ -f "$lib" ] && echo "$lib_sha256  $lib" | sha256sum --check --status; then
  exit 0
fi
command -v npm >/dev/null || { echo "install-onnxruntime: npm is needed (apt-get install npm)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "install-onnxruntime: fetching onnxruntime-node@$version from the npm registry" >&2
(cd "$tmp" && npm pack --silent "onnxruntime-node@$version" >/dev/null)
tgz="$tmp/onnxruntime-node-$version.tgz"
echo "$tarball_sha256  $tgz" | sha256sum --check --status || {
  echo "install-onnxruntime: sha256 of $(basename "$tgz") does not match the pinned value" >&2; exit 1; }
# npm tarballs carry 1985 dates: -m stamps the extraction time instead.
tar -xzmf "$tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
echo "$lib_sha256  $tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" | sha256sum --check --status || {
  echo "install-onnxruntime: sha256 of libonnxruntime.so.1 does not match the pinned value" >&2; exit 1; }
mkdir -p "$dest"
install -m 0644 "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib.tmp"
mv -f "$lib.tmp" "$lib"
echo "install-onnxruntime: installed $lib" >&2
