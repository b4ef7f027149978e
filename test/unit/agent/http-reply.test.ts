import { parseHttpResponse } from '../../../src/agent/http-reply';

/** parseHttpResponse reads what openssl s_client prints: the raw HTTP/1.1 response of one request. */
describe('parseHttpResponse', () => {
  it('Content-Length: the body is cut there (s_client may print more after the connection closes)', () => {
    const r = parseHttpResponse(Buffer.from('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 27\r\n\r\nattestation failed: nonce\n\nextra'));
    expect(r.status).toBe(403);
    expect(r.headers['content-type']).toBe('text/plain');
    expect(r.body.toString()).toBe('attestation failed: nonce\n\n');
  });

  it('chunked transfer coding is decoded', () => {
    const r = parseHttpResponse(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nMIIB\r\n3;x=y\r\nabc\r\n0\r\n\r\n'));
    expect(r.body.toString()).toBe('MIIBabc');
  });

  it('not HTTP, no header end, a truncated chunk: errors, not crashes', () => {
    expect(() => parseHttpResponse(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n'))).toThrow('not an HTTP response: SSH-2.0-OpenSSH');
    expect(() => parseHttpResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3'))).toThrow('no HTTP response from the server');
    expect(() => parseHttpResponse(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nabc'))).toThrow('truncated chunked HTTP body');
  });
});
