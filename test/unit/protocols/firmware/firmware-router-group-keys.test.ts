import express from 'express';
import type { AddressInfo } from 'node:net';
import { DeviceCaError } from '../../../../src/errors/device-ca-error';
import { firmwareRouter } from '../../../../src/protocols/firmware/firmware-router';
import { FirmwareDistribution } from '../../../../src/ra/firmware-distribution';
import { FirmwareGroupKeys } from '../../../../src/ra/firmware-group-keys';

/**
 * GET /firmware/keys/<id> beside GET /firmware/<name>/<version>: a 32-hex-digit id is a group key (one RA
 * call, its refusal's status), anything else under /keys/ is a release of a firmware named "keys"; on a
 * router without group keys (the plain HTTP listener) every /keys/ path is a release.
 */
const KEY = 'ab'.repeat(16);
const calls: string[] = [];
const distribution = {
  download: async (a: { name: string; version: string }) => {
    calls.push(`release ${a.name} ${a.version}`);
    throw new DeviceCaError('not-found', 'no such firmware release');
  },
} as unknown as FirmwareDistribution;
const groupKeys = {
  fetch: async (a: { keyId: string; requester: { clientCertificate?: unknown } }) => {
    calls.push(`key ${a.keyId}`);
    if (a.keyId === 'cd'.repeat(16)) throw new DeviceCaError('forbidden', 'the client certificate is revoked');
    if (a.keyId !== KEY) throw new DeviceCaError('not-found', 'no such group key');
    if (!a.requester.clientCertificate) throw new DeviceCaError('unauthenticated', 'a group key is fetched over TLS with the device certificate');
    return Buffer.from([0x30, 0x00]);
  },
} as unknown as FirmwareGroupKeys;

async function get(withKeys: boolean, p: string): Promise<{ status: number; body: string; type: string | null }> {
  const app = express().use('/firmware', firmwareRouter({ distribution, groupKeys: withKeys ? groupKeys : undefined }));
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  try {
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}${p}`);
    return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
  } finally {
    server.close();
  }
}

beforeEach(() => calls.splice(0));

it('a key id goes to the group keys, and their refusals keep their status', async () => {
  expect(await get(true, `/firmware/keys/${KEY}`)).toEqual({ status: 401, body: 'a group key is fetched over TLS with the device certificate\n', type: expect.stringMatching(/^text\/plain/) });
  expect((await get(true, `/firmware/keys/${'cd'.repeat(16)}`)).status).toBe(403);
  expect((await get(true, `/firmware/keys/${'0'.repeat(32)}`)).status).toBe(404);
  expect(calls).toEqual([`key ${KEY}`, `key ${'cd'.repeat(16)}`, `key ${'0'.repeat(32)}`]);
});

it('anything else under /keys/ is a release of a firmware named "keys"; without group keys, every path is', async () => {
  for (const v of ['5', 'latest', '__proto__', KEY.toUpperCase(), `${KEY}0`]) expect((await get(true, `/firmware/keys/${v}`)).status).toBe(404);
  expect(calls).toEqual(['release keys 5', 'release keys latest', 'release keys __proto__', `release keys ${KEY.toUpperCase()}`, `release keys ${KEY}0`]);
  calls.splice(0);
  expect((await get(false, `/firmware/keys/${KEY}`)).body).toBe('no such firmware release\n');
  expect(calls).toEqual([`release keys ${KEY}`]);
});
