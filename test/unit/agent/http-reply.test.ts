import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { parseHttpResponse, readHttpResponseFile } from '../../../src/agent/http-reply';
import { makeTmpDir } from '../../helpers/tmp';

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

/** readHttpResponseFile: the same reading of a raw response the agent downloaded to a file (a firmware release), body to a file of its own. */
describe('readHttpResponseFile', () => {
  const tmp = makeTmpDir();
  afterAll(() => tmp.cleanup());
  const read = (raw: Buffer): { status: number; headers: Record<string, string>; body: Buffer } => {
    const body = tmp.file(`${crypto.randomUUID()}.body`);
    const r = readHttpResponseFile(tmp.write(`${crypto.randomUUID()}.http`, raw), body);
    return { ...r, body: fs.readFileSync(body) };
  };

  it('gives what parseHttpResponse gives, for a body of several chunks, by Content-Length, chunked, or to the end', () => {
    const big = crypto.randomBytes(2 * (1 << 20) + 77);
    const chunked = Buffer.concat([
      Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'),
      ...[big.subarray(0, 1000), big.subarray(1000)].flatMap((c) => [Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n')]),
      Buffer.from('0\r\n\r\n'),
    ]);
    const cases = [
      Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: application/cms\r\nContent-Length: ${big.length}\r\n\r\n`), big, Buffer.from('after close')]),
      chunked,
      Buffer.concat([Buffer.from('HTTP/1.0 200 OK\r\n\r\n'), big]),
      Buffer.from('HTTP/1.1 404 Not Found\r\nContent-Length: 25\r\n\r\nno such firmware release\n'),
    ];
    for (const raw of cases) {
      const [fromFile, inMemory] = [read(raw), parseHttpResponse(raw)];
      expect([fromFile.status, fromFile.headers]).toEqual([inMemory.status, inMemory.headers]);
      expect(fromFile.body.equals(inMemory.body)).toBe(true); // Buffer.equals: jest's deep equality is slow on MiBs
    }
    expect(read(cases[0]).body.equals(big)).toBe(true);
    expect(read(chunked).body.equals(big)).toBe(true);
  });

  it('a body shorter than its Content-Length, or chunks without the last one, is a truncated download', () => {
    expect(() => read(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'))).toThrow('the HTTP body ended after 3 of 10 bytes (truncated download)');
    expect(() => read(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n'))).toThrow('truncated chunked HTTP body');
    expect(() => read(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nabc'))).toThrow('truncated chunked HTTP body');
    expect(() => read(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nabc'))).toThrow('bad Content-Length in the HTTP response');
    expect(() => read(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n'))).toThrow('not an HTTP response: SSH-2.0-OpenSSH');
  });
});
