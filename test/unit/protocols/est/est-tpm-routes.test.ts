import express from 'express';
import { AddressInfo } from 'node:net';
import * as http from 'node:http';
import { estRouter } from '../../../../src/protocols/est/est-router';
import { makeRaHarness, RaHarness } from '../../ra/ra-harness';

// The EST adapter's TPM routes in process: JSON in and out, Basic authentication, errors as text.
describe('EST <label>/tpm/* routes', () => {
  let h: RaHarness;
  let server: http.Server;
  let base: string;
  beforeAll(async () => {
    h = await makeRaHarness({ overrides: { profiles: { default: {}, tpm: { attestation: 'required' } }, 'est.labels': { default: { profile: 'default' }, tpm: {} } } });
    const app = express();
    app.use('/.well-known/est', estRouter({ ra: h.ra, caCerts: [h.ca.issuer.der], bodyLimit: 64 * 1024 }));
    server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/est`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    await h.close();
  });
  const post = (path: string, auth: string | null, body?: unknown) =>
    fetch(`${base}${path}`, {
      method: 'POST',
      headers: { ...(auth ? { authorization: `Basic ${Buffer.from(auth).toString('base64')}` } : {}), 'content-type': 'application/json' },
      body: body === undefined ? '' : JSON.stringify(body),
    });

  it('POST tpm/nonce returns a base64 nonce and its expiry to an authenticated device', async () => {
    const secret = await h.register('dev-1');
    const r = await post('/tpm/tpm/nonce', `dev-1:${secret}`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json');
    const j = (await r.json()) as { nonce: string; expiresAt: string };
    expect(Buffer.from(j.nonce, 'base64')).toHaveLength(32);
    expect(new Date(j.expiresAt).getTime()).toBeGreaterThan(Date.now());
    expect((await post('/tpm/tpm/nonce', 'dev-1:wrong')).status).toBe(401);
    expect((await post('/tpm/nonce', `dev-1:${secret}`)).status).toBe(404); // default label: attestation off
  });

  it('POST tpm/ak and tpm/ak/activate refuse malformed bodies naming the field (400) and unknown AKs (403)', async () => {
    const secret = await h.register('dev-2');
    const r1 = await post('/tpm/tpm/ak', `dev-2:${secret}`, { ekCertificate: '!!', ekPublic: '', akPublic: '' });
    expect(r1.status).toBe(400);
    expect(await r1.text()).toContain('ekCertificate');
    const r2 = await post('/tpm/tpm/ak/activate', `dev-2:${secret}`, { akName: '000b' + '00'.repeat(32), secret: Buffer.alloc(32).toString('base64') });
    expect(r2.status).toBe(403);
    expect(await r2.text()).toContain('attestation failed: credential');
  });
});
