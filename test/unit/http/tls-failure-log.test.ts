import pino from 'pino';
import { TlsFailureLog } from '../../../src/http/tls-failure-log';

/** TlsFailureLog: one warn line per failed handshake with the peer, at most `burst` per window, the rest counted. */
describe('TlsFailureLog', () => {
  it('writes the peer and reason, then only counts beyond the burst, and reports the count on the next line', () => {
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
    let now = 0;
    const f = new TlsFailureLog(log, 2, 1000, () => now);
    const err = Object.assign(new Error('no shared cipher'), { code: 'ERR_SSL_NO_SHARED_CIPHER' });
    for (let i = 0; i < 5; i++) f.report(err, { address: '192.0.2.7', port: 40000 + i });
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 40, msg: 'TLS handshake failed', remote: '192.0.2.7', remotePort: 40000, code: 'ERR_SSL_NO_SHARED_CIPHER', reason: 'no shared cipher' });
    expect(lines[0].suppressed).toBeUndefined();
    now = 1000; // next window
    f.report(err, { address: '198.51.100.1' });
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ remote: '198.51.100.1', suppressed: 3 });
    f.report(err, { address: '198.51.100.1' });
    expect(lines[3].suppressed).toBeUndefined();
  });
});
