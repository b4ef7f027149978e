import cluster from 'node:cluster';
import * as fs from 'node:fs';
import * as http from 'node:http';

/**
 * ocsp-http-floor is the reference server of bench/ocsp-http's "node:http floor" row: a cluster of plain
 * node:http servers (as many workers as device-ca runs) that read the request body and answer every POST
 * with one fixed, valid OCSP response that device-ca signed. No parsing, no store, no logging, no metrics:
 * what Node's HTTP stack, the kernel and the load generator cost on this machine at this moment, so the
 * rows above it can be read as "device-ca's own work" = figure minus floor.
 *
 *   node ocsp-http-floor.js <port> <workers> <response.der>
 */
function main(): void {
  const [port, workers, file] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];
  if (cluster.isPrimary && workers > 1) {
    for (let i = 0; i < workers; i++) cluster.fork();
    process.on('SIGTERM', () => {
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      process.exit(0);
    });
    return;
  }
  const body = fs.readFileSync(file);
  const server = http.createServer((req, res) => {
    req.on('data', () => undefined);
    req.on('end', () => {
      res.writeHead(200, { 'Content-Type': 'application/ocsp-response', 'Content-Length': body.length });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 5_000;
  server.listen(port, '127.0.0.1');
  process.on('SIGTERM', () => process.exit(0));
}

if (require.main === module) main();
