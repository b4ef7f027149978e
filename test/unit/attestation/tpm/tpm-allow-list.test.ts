import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ekIdentity } from '../../../../src/attestation/tpm/ek-certificate';
import { checkAllowedTpm, checkFirmwareVersion } from '../../../../src/attestation/tpm/tpm-allow-list';
import { parseTpmsAttest } from '../../../../src/attestation/tpm/tpms-attest';

// swtpm's golden EK certificate (test/fixtures/tpm/generate.sh) names its TPM in the SAN directoryName
// (TCG EK Credential Profile §3.2.9): tpmManufacturer id:00001014, tpmModel swtpm, tpmVersion id:20191023.
const fx = (f: string): Buffer => readFileSync(join(__dirname, '../../../fixtures/tpm', f));
const golden = fx('ek-cert.der');

/** edited: the golden certificate with same-length strings replaced everywhere (the signature no longer matters here). */
function edited(pairs: [string, string][]): Buffer {
  let hex = golden.toString('hex');
  for (const [from, to] of pairs) {
    const f = Buffer.from(from).toString('hex');
    expect(hex.includes(f)).toBe(true);
    hex = hex.split(f).join(Buffer.from(to).toString('hex'));
  }
  return Buffer.from(hex, 'hex');
}

describe('TPM allow-list (EK certificate SAN attributes)', () => {
  it("reads swtpm's manufacturer, model and version from its EK certificate", () => {
    expect(ekIdentity(golden)).toEqual({ manufacturer: 'id:00001014', model: 'swtpm', version: 'id:20191023' });
  });

  it('allows every TPM without a list, and a listed manufacturer (any model, or the model named; vendor id case-insensitive)', () => {
    const id = ekIdentity(golden);
    expect(checkAllowedTpm(undefined, id)).toEqual({ ok: true, value: [] });
    expect(checkAllowedTpm([{ manufacturer: 'id:00001014' }], id)).toMatchObject({ ok: true });
    expect(checkAllowedTpm([{ manufacturer: 'ID:00001014', model: 'swtpm' }], id)).toMatchObject({ ok: true });
    const two = [{ manufacturer: 'id:49465800' }, { manufacturer: 'id:00001014', model: 'swtpm', minFirmwareVersion: 1n }];
    expect(checkAllowedTpm(two, id)).toEqual({ ok: true, value: [two[1]] });
  });

  it("refuses another manufacturer's list, another model, and an edited certificate naming another TPM: check tpm-model", () => {
    const id = ekIdentity(golden);
    expect(checkAllowedTpm([{ manufacturer: 'id:49465800' }], id)).toMatchObject({ ok: false, check: 'tpm-model' });
    expect(checkAllowedTpm([{ manufacturer: 'id:00001014', model: 'SLB9670' }], id)).toMatchObject({ ok: false, check: 'tpm-model' });
    const other = ekIdentity(
      edited([
        ['id:00001014', 'id:49465800'],
        ['swtpm', 'xwtpm'],
      ]),
    );
    expect(other).toEqual({ manufacturer: 'id:49465800', model: 'xwtpm', version: 'id:20191023' });
    expect(checkAllowedTpm([{ manufacturer: 'id:00001014' }], other)).toMatchObject({ ok: false, check: 'tpm-model' });
    expect(checkAllowedTpm([{ manufacturer: 'id:49465800', model: 'swtpm' }], other)).toMatchObject({ ok: false, check: 'tpm-model' });
    expect(checkAllowedTpm([{ manufacturer: 'id:49465800', model: 'xwtpm' }], other)).toMatchObject({ ok: true });
  });

  it('refuses a TPM whose EK certificate names no manufacturer when a list is set', () => {
    // the OID 2.23.133.2.1 (06 05 67 81 05 02 01) edited to 2.23.133.2.9: an attribute device-ca does not read
    const hex = golden.toString('hex').replace('06056781050201', '06056781050209');
    const id = ekIdentity(Buffer.from(hex, 'hex'));
    expect(id.manufacturer).toBeUndefined();
    expect(checkAllowedTpm([{ manufacturer: 'id:00001014' }], id)).toMatchObject({ ok: false, check: 'tpm-model' });
  });
});

describe('checkFirmwareVersion (TPMS_ATTEST.firmwareVersion)', () => {
  const fw = parseTpmsAttest(fx('certify.attest')).firmwareVersion;

  it("reads swtpm's firmware version from its golden TPM2_Certify", () => {
    expect(fw).toBe(0x2019102300163636n);
  });

  it('accepts at or above the minimum of a matching entry, or an entry without a minimum', () => {
    expect(checkFirmwareVersion([], fw).ok).toBe(true);
    expect(checkFirmwareVersion([{ manufacturer: 'x', minFirmwareVersion: fw }], fw).ok).toBe(true);
    expect(checkFirmwareVersion([{ manufacturer: 'x', minFirmwareVersion: fw + 1n }, { manufacturer: 'x' }], fw).ok).toBe(true);
  });

  it('refuses below every minimum: check firmware-version, the detail names both values', () => {
    const v = checkFirmwareVersion(
      [
        { manufacturer: 'x', minFirmwareVersion: 0x2020000000000000n },
        { manufacturer: 'x', minFirmwareVersion: fw + 1n },
      ],
      fw,
    );
    expect(v).toEqual({ ok: false, check: 'firmware-version', detail: 'TPM firmware 0x2019102300163636 is below the minimum 0x2019102300163637' });
  });
});
