import express from 'express';
import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { firmwareRouter } from '../src/protocols/firmware/firmware-router';
import { FirmwareDistribution } from '../src/ra/firmware-distribution';
import { SqliteStore } from '../src/store/sqlite/sqlite-store';

/**
 * firmware-serve-child: GET /firmware/<name>/<version> served from a SQLite store in a process of its own
 * (the firmware route, the RA's FirmwareDistribution and the store, as a service worker wires them), so
 * that its peak resident set shows what serving one release costs. Prints the port it listens on; on a
 * line on stdin prints its peak RSS (VmHWM, KiB) and exits. Usage: node firmware-serve-child.js <store file>
 */
const store = new SqliteStore(process.argv[2]);
const distribution = new FirmwareDistribution(store);
const server = express()
  .use('/firmware', firmwareRouter({ distribution }))
  .listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
process.stdin.once('data', () => {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'latin1'));
  process.stdout.write(`${m ? m[1] : 'none'}\n`);
  process.exit(0);
});
