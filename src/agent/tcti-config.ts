import { DeviceCaError } from '../errors/device-ca-error';

/**
 * TctiConfig: a TCTI string (TPM2TOOLS_TCTI) read the way tpm2-tools' TCTI loader reads it
 * (Tss2_TctiLdr_Initialize(3)): `name[:conf]`, where name may also be spelled `tcti-name` or
 * `libtss2-tcti-name.so[.0]`. The agent speaks the TPM command protocol itself for `device`, `swtpm`
 * and `mssim`; anything else (tabrmd, spi-helper, cmd, ...) stays with tpm2-tools (`other`).
 */
export type TctiConfig = { kind: 'device'; path: string } | { kind: 'swtpm' | 'mssim'; host: string; port: number } | { kind: 'other'; name: string; conf: string };

/** DEVICE_DEFAULT_PATH: the device TCTI's path when none is given (tpm2-tss tcti-device: /dev/tpm0). */
const DEVICE_DEFAULT_PATH = '/dev/tpm0';
/** SOCKET_DEFAULTS: the swtpm and mssim TCTIs' defaults (tpm2-tss tcti-swtpm(7), tcti-mssim(7)). */
const SOCKET_DEFAULTS = { host: 'localhost', port: 2321 };

/** parseTcti reads a TCTI string; a socket conf with an unknown key or a bad port is a clear error. */
export function parseTcti(tcti: string): TctiConfig {
  const s = tcti.trim();
  const colon = s.indexOf(':');
  const rawName = colon < 0 ? s : s.slice(0, colon);
  const conf = colon < 0 ? '' : s.slice(colon + 1);
  const name = rawName
    .replace(/^libtss2-tcti-/, '')
    .replace(/^tcti-/, '')
    .replace(/\.so(\.\d+)*$/, '');
  if (name === 'device') return { kind: 'device', path: conf || DEVICE_DEFAULT_PATH };
  if (name === 'swtpm' || name === 'mssim') {
    const o = { ...SOCKET_DEFAULTS };
    for (const kv of conf.split(',').filter((p) => p.length > 0)) {
      const eq = kv.indexOf('=');
      const key = eq < 0 ? '' : kv.slice(0, eq).trim();
      const value = eq < 0 ? '' : kv.slice(eq + 1).trim();
      if (key === 'host' && value) o.host = value;
      else if (key === 'port' && /^\d{1,5}$/.test(value) && +value >= 1 && +value <= 65535) o.port = +value;
      else throw new DeviceCaError('bad-request', `TCTI "${tcti}": "${kv}" is not host=<name> or port=<1..65535>`);
    }
    return { kind: name, ...o };
  }
  return { kind: 'other', name, conf };
}
