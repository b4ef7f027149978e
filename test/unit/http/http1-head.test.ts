import { headEnd, parseFastHead } from '../../../src/http/http1-head';

const head = (lines: string[]) => lines.join('\r\n');

describe('parseFastHead', () => {
  it('reads a plain POST: method, target, Content-Length, keep-alive by default on HTTP/1.1', () => {
    expect(parseFastHead(head(['POST /ocsp HTTP/1.1', 'Host: a', 'Content-Type: application/ocsp-request', 'Content-Length: 83']))).toEqual({
      method: 'POST',
      target: '/ocsp',
      version: 11,
      contentLength: 83,
      keepAlive: true,
      requestId: undefined,
    });
  });

  it('HTTP/1.0 closes unless it asks for keep-alive; Connection: close closes HTTP/1.1', () => {
    expect(parseFastHead(head(['GET /ocsp/MA== HTTP/1.0']))?.keepAlive).toBe(false);
    expect(parseFastHead(head(['GET /ocsp/MA== HTTP/1.0', 'Connection: Keep-Alive']))?.keepAlive).toBe(true);
    expect(parseFastHead(head(['GET /ocsp/MA== HTTP/1.1', 'Host: a', 'Connection: close']))?.keepAlive).toBe(false);
    expect(parseFastHead(head(['GET /ocsp/MA== HTTP/1.1', 'Host: a', 'Connection: keep-alive, close']))?.keepAlive).toBe(false);
  });

  it('keeps a plain X-Request-Id and ignores one that is not', () => {
    expect(parseFastHead(head(['GET /ocsp/MA== HTTP/1.1', 'Host: a', 'X-Request-Id: abc-1.2_3']))?.requestId).toBe('abc-1.2_3');
    expect(parseFastHead(head(['GET /ocsp/MA== HTTP/1.1', 'Host: a', 'X-Request-Id: a b']))?.requestId).toBeUndefined();
    expect(parseFastHead(head(['GET /ocsp/MA== HTTP/1.1', 'Host: a', `X-Request-Id: ${'a'.repeat(65)}`]))?.requestId).toBeUndefined();
  });

  // every head below is left to node:http (null), whose parser answers it as it always has
  it.each([
    ['no Host on HTTP/1.1', ['POST /ocsp HTTP/1.1', 'Content-Length: 1']],
    ['two Host headers', ['POST /ocsp HTTP/1.1', 'Host: a', 'Host: b', 'Content-Length: 1']],
    ['two Host headers on HTTP/1.0', ['POST /ocsp HTTP/1.0', 'Host: a', 'Host: b', 'Content-Length: 1']],
    ['two Content-Length headers', ['POST /ocsp HTTP/1.1', 'Host: a', 'Content-Length: 1', 'Content-Length: 1']],
    ['Content-Length with a sign', ['POST /ocsp HTTP/1.1', 'Host: a', 'Content-Length: +1']],
    ['Content-Length as a list', ['POST /ocsp HTTP/1.1', 'Host: a', 'Content-Length: 1, 1']],
    ['Content-Length in hex', ['POST /ocsp HTTP/1.1', 'Host: a', 'Content-Length: 0x10']],
    ['Content-Length empty', ['POST /ocsp HTTP/1.1', 'Host: a', 'Content-Length:']],
    ['Content-Length after a vertical tab', ['POST /ocsp HTTP/1.1', 'Host: a', 'Content-Length:\u000b5']],
    ['Content-Length before a form feed', ['POST /ocsp HTTP/1.1', 'Host: a', 'Content-Length: 5\u000c']],
    ['Content-Length before a no-break space', ['POST /ocsp HTTP/1.1', 'Host: a', 'Content-Length: 5\u00a0']],
    ['Connection token after a no-break space', ['GET /ocsp/MA== HTTP/1.1', 'Host: a', 'Connection: \u00a0close']],
    ['Content-Length of 16 digits', ['POST /ocsp HTTP/1.1', 'Host: a', 'Content-Length: 1000000000000000']],
    ['Transfer-Encoding: chunked', ['POST /ocsp HTTP/1.1', 'Host: a', 'Transfer-Encoding: chunked']],
    ['Transfer-Encoding beside Content-Length', ['POST /ocsp HTTP/1.1', 'Host: a', 'Content-Length: 3', 'Transfer-Encoding: chunked']],
    ['Expect: 100-continue', ['POST /ocsp HTTP/1.1', 'Host: a', 'Content-Length: 1', 'Expect: 100-continue']],
    ['Upgrade', ['GET /ocsp/MA== HTTP/1.1', 'Host: a', 'Connection: Upgrade', 'Upgrade: websocket']],
    ['Connection naming another header', ['GET /ocsp/MA== HTTP/1.1', 'Host: a', 'Connection: x-foo']],
    ['obsolete line folding', ['GET /ocsp/MA== HTTP/1.1', 'Host: a', 'X-A: b', ' c']],
    ['space before the colon', ['GET /ocsp/MA== HTTP/1.1', 'Host : a']],
    ['empty header name', ['GET /ocsp/MA== HTTP/1.1', 'Host: a', ': b']],
    ['line without a colon', ['GET /ocsp/MA== HTTP/1.1', 'Host: a', 'garbage']],
    ['NUL in a value', ['GET /ocsp/MA== HTTP/1.1', 'Host: a', 'X: a\u0000b']],
    ['bare LF inside a value', ['GET /ocsp/MA== HTTP/1.1', 'Host: a\nX-Injected: 1']],
    ['bare CR inside a value', ['GET /ocsp/MA== HTTP/1.1', 'Host: a\rb']],
    ['DEL in a value', ['GET /ocsp/MA== HTTP/1.1', 'Host: a\u007f']],
    ['HTTP/2.0', ['GET /ocsp/MA== HTTP/2.0', 'Host: a']],
    ['HTTP/1.2', ['GET /ocsp/MA== HTTP/1.2', 'Host: a']],
    ['lower-case version', ['GET /ocsp/MA== http/1.1', 'Host: a']],
    ['two spaces in the request line', ['GET  /ocsp/MA== HTTP/1.1', 'Host: a']],
    ['tab in the request line', ['GET\t/ocsp/MA== HTTP/1.1', 'Host: a']],
    ['absolute-form target', ['GET http://a/ocsp/MA== HTTP/1.1', 'Host: a']],
    ['asterisk target', ['OPTIONS * HTTP/1.1', 'Host: a']],
    ['a space in the target', ['GET /ocsp/M A== HTTP/1.1', 'Host: a']],
    ['non-ASCII in the target', ['GET /ocsp/\u00e9 HTTP/1.1', 'Host: a']],
    ['lower-case method', ['post /ocsp HTTP/1.1', 'Host: a']],
    ['trailing space after the version', ['GET /ocsp/MA== HTTP/1.1 ', 'Host: a']],
    ['an empty line inside the head', ['GET /ocsp/MA== HTTP/1.1', '', 'Host: a']],
  ])('%s: left to node:http', (_name, lines) => {
    expect(parseFastHead(head(lines))).toBeNull();
  });

  it('header names are case-insensitive and values trimmed', () => {
    expect(parseFastHead(head(['POST /ocsp HTTP/1.1', 'HOST:a', 'content-LENGTH:   12  ']))?.contentLength).toBe(12);
  });
});

describe('headEnd', () => {
  it('finds the end of the head, or says there is none yet', () => {
    const b = Buffer.from('POST /ocsp HTTP/1.1\r\nHost: a\r\n\r\nBODY', 'latin1');
    expect(headEnd(b, 0)).toBe(b.length - 4);
    expect(headEnd(b.subarray(0, b.length - 6), 0)).toBe(-1);
  });
});
