import { isLoopbackHost, publicUrlWarning } from '../../../src/ca/public-url-warning';
import { loadConfig } from '../../../src/config/load-config';

/**
 * publicUrlWarning: the default publicUrl (http://localhost:<port>) is baked into every certificate's CRL,
 * OCSP and caIssuers URLs; the service must say so when other machines can reach it.
 */
describe('publicUrlWarning', () => {
  const cfg = (overrides: Record<string, unknown>) => loadConfig({ env: { DEVICE_CA_DATA: '/tmp/device-ca-unused' }, overrides: { 'http.port': 8080, ...overrides } });

  it.each<{ label: string; overrides: Record<string, unknown>; warns: boolean }>([
    { label: 'defaults (both listeners on ::)', overrides: {}, warns: true },
    { label: 'publicUrl set', overrides: { publicUrl: 'http://ca.example.net' }, warns: false },
    { label: 'both listeners on 127.0.0.1', overrides: { 'http.host': '127.0.0.1', 'https.host': '127.0.0.1' }, warns: false },
    { label: 'both on ::1 / localhost', overrides: { 'http.host': '::1', 'https.host': 'localhost' }, warns: false },
    { label: 'only HTTPS open on 0.0.0.0', overrides: { 'http.host': '127.0.0.1', 'https.host': '0.0.0.0' }, warns: true },
    { label: 'HTTP on a LAN address', overrides: { 'http.host': '192.0.2.10', 'https.host': '127.0.0.1' }, warns: true },
  ])('$label: warns $warns', ({ overrides, warns }) => {
    const w = publicUrlWarning(cfg(overrides), 'device-ca-issuing');
    if (!warns) expect(w).toBeNull();
    else {
      // names the URLs it would bake into certificates, and the fix
      expect(w).toContain('http://localhost:8080/crl/device-ca-issuing/0.crl');
      expect(w).toContain('http://localhost:8080/ocsp');
      expect(w).toContain('http://localhost:8080/ca/device-ca-issuing.crt');
      expect(w).toContain('DEVICE_CA_PUBLIC_URL');
    }
  });

  it('names the open listener and its address', () => {
    expect(publicUrlWarning(cfg({ 'http.host': '127.0.0.1', 'https.host': '0.0.0.0' }), 'x')).toContain('https listener binds 0.0.0.0');
  });

  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['::1', true],
    ['LOCALHOST', true],
    ['::', false],
    ['0.0.0.0', false],
    ['10.0.0.1', false],
    ['127.example.net', false],
  ])('isLoopbackHost(%s) = %s', (host, want) => {
    expect(isLoopbackHost(host)).toBe(want);
  });
});
