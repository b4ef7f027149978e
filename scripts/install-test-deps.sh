#!/usr/bin/env bash
# install-test-deps: the Debian packages the test suite drives as real peers.
# As root it installs what is missing with apt-get; otherwise it names them and fails.
set -euo pipefail

# package -> a file that shows it is installed
declare -A CHECK=(
  [openssl]=/usr/bin/openssl
  [curl]=/usr/bin/curl
  [softhsm2]=/usr/bin/softhsm2-util
  [opensc]=/usr/bin/pkcs11-tool
)
missing=()
for pkg in "${!CHECK[@]}"; do
  [ -e "${CHECK[$pkg]}" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "The test suite needs these Debian packages: ${missing[*]}" >&2
  echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing test peers: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
