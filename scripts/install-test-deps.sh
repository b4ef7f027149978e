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
  [freeradius]=/usr/sbin/freeradius
  [eapoltest]=/usr/bin/eapol_test
  # strongSwan pki as an EST client; its ECDSA keys and TLS come from the openssl plugin (standard),
  # the OCSP check of the server certificate from the curl plugin (extra)
  [strongswan-pki]=/usr/bin/pki
  [libstrongswan-standard-plugins]=/usr/lib/ipsec/plugins/libstrongswan-openssl.so
  [libstrongswan-extra-plugins]=/usr/lib/ipsec/plugins/libstrongswan-curl.so
  # the shared store's tests start their own redis-server on free ports
  [redis-server]=/usr/bin/redis-server
  # TPM 2.0 attestation: a software TPM with an EK certificate from its local CA, and the TCG tools
  [swtpm]=/usr/bin/swtpm
  [swtpm-tools]=/usr/bin/swtpm_setup
  [tpm2-tools]=/usr/bin/tpm2_createak
  # the device agent (device-ca agent): TLS with the TPM key through openssl's tpm2 provider, which needs a
  # resource manager in front of swtpm (tpm2-abrmd on a private D-Bus session, as /dev/tpmrm0 on a device)
  [tpm2-openssl]=/usr/lib/x86_64-linux-gnu/ossl-modules/tpm2.so
  [tpm2-abrmd]=/usr/sbin/tpm2-abrmd
  [libtss2-tcti-tabrmd0]=/usr/lib/x86_64-linux-gnu/libtss2-tcti-tabrmd.so.0
  # the agent's device: transport without a TPM device: a raw pseudo-terminal joined to swtpm's command port
  [socat]=/usr/bin/socat
  # SCEP: certmonger as the client, its daemon on a private D-Bus session (dbus-run-session)
  [certmonger]=/usr/sbin/certmonger
  [dbus-daemon]=/usr/bin/dbus-run-session
  # the operator console's browser test: headless Chromium driven by playwright-core (no browser download)
  [chromium]=/usr/bin/chromium
  # ... and the same scenario in headless Firefox ESR over WebDriver BiDi (test/helpers/bidi-firefox.ts)
  [firefox-esr]=/usr/bin/firefox-esr
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
# Packages with a daemon (freeradius) start their system service on install. The tests run their own
# instances on free loopback ports and never use it, so keep invoke-rc.d from starting anything
# (exit 101 = action forbidden), unless the host already has a policy of its own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
