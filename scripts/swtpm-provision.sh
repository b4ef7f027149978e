#!/usr/bin/env bash
# swtpm-provision: make a software TPM 2.0 state with an EK certificate (RSA 2048 and ECC) issued by a
# local CA of its own, entirely under DIR (nothing in /var/lib). Output:
#   DIR/state/          the TPM state (copy it per test; provisioning takes about 1 s)
#   DIR/localca/issuercert.pem, DIR/localca/swtpm-localca-rootca-cert.pem  the EK CA chain
# Usage: scripts/swtpm-provision.sh DIR
set -euo pipefail
D=$(realpath -m "$1")
mkdir -p "$D/state" "$D/localca"
cat > "$D/swtpm-localca.conf" <<CONF
statedir = $D/localca
signingkey = $D/localca/signkey.pem
issuercert = $D/localca/issuercert.pem
certserial = $D/localca/certserial
CONF
cat > "$D/swtpm-localca.options" <<OPTS
--platform-manufacturer device-ca-test
--platform-version 2.1
--platform-model swtpm
OPTS
cat > "$D/swtpm_setup.conf" <<CONF
create_certs_tool = /usr/bin/swtpm_localca
create_certs_tool_config = $D/swtpm-localca.conf
create_certs_tool_options = $D/swtpm-localca.options
active_pcr_banks = sha256
CONF
swtpm_setup --tpm2 --tpmstate "$D/state" --create-ek-cert --create-platform-cert \
  --config "$D/swtpm_setup.conf" --overwrite --display >"$D/setup.log" 2>&1 || { cat "$D/setup.log" >&2; exit 1; }
