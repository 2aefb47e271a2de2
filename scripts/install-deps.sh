#!/usr/bin/env bash
# Installs every build and test dependency from Debian packages. Idempotent: does nothing when
# everything is already installed. CUDA and NCCL come from the CUDA toolkit when present.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git python3
  libopenmpi-dev openmpi-bin
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc grpc-proto
  libboost-program-options-dev libsentencepiece-dev nlohmann-json3-dev prometheus-cpp-dev
  libgtest-dev googletest
  python3-grpcio python3-numpy python3-protobuf python3-matplotlib
  iproute2
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
