import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLI_JS, REPO_ROOT, assertBuilt, runProcess } from '../helpers/service-process';
import { SoftHsm, createSoftHsm } from '../helpers/softhsm';

/**
 * Signatures made through the PKCS#11 path while the service is busy. EST enrollments check secrets with
 * scrypt, which runs on the same libuv thread pool as the asynchronous C_Sign, so a signature waits there
 * for milliseconds while JavaScript allocates and the garbage collector runs. Every signature made under
 * those conditions must verify. pkcs11-service.test.ts found the failure (about one run in thirty issued a
 * certificate whose signature verifies with no key); this file makes the conditions deliberate.
 *
 * The signer is the built backend (dist/, like the service) in a plain `node --expose-gc` child: jest's own
 * heap makes each full collection slow, and a collection while a C_Sign waits in the queue is the point.
 * It makes a fixed number of signatures, however long they take: the test judges correctness, not speed.
 */

jest.setTimeout(120_000);

let hsm: SoftHsm;

beforeAll(() => {
  assertBuilt();
  hsm = createSoftHsm();
});

afterAll(() => hsm?.cleanup());

/** SIGNERS x PER_SIGNER signatures in all (128, more than the 8 s run used to make on an idle machine), 32 in flight at a time */
const SIGNERS = 32;
const PER_SIGNER = 4;

/** SIGNER: make SIGNERS x PER_SIGNER signatures beside scrypt on every libuv thread; print {made, bad, forged} */
const SIGNER = `
const crypto = require('node:crypto');
const { Pkcs11KeyBackend } = require(${JSON.stringify(path.join(path.dirname(CLI_JS), '..', 'keys', 'pkcs11', 'pkcs11-key-backend.js'))});
const [module_, pin, signers, perSigner] = process.argv.slice(2).map((a, i) => (i < 2 ? a : Number(a)));
(async () => {
  const backend = await new Pkcs11KeyBackend({ module: module_, token: 'ca', pin, sessionPoolSize: 4 }).open();
  try {
    const key = await backend.generate('issuing', 'ecdsa-p256', 'busy-pool-' + crypto.randomBytes(4).toString('hex'));
    const pub = crypto.createPublicKey({ key: key.spki, format: 'der', type: 'spki' });
    let done = false;
    let made = 0;
    const bad = [];
    const forged = [];
    // scrypt on every libuv thread, as concurrent enrollments' secret checks do; at 16 MiB (N 2^14) so each
    // queued C_Sign waits long enough to see collections
    const busy = async () => { while (!done) await new Promise((r) => crypto.scrypt('secret', 'salt', 32, { N: 16384, r: 8, p: 1 }, r)); };
    // small Buffers (Node's 8 KiB allocation pool) made and dropped, and full collections, as request handling does
    const churn = setInterval(() => { const junk = []; for (let i = 0; i < 2000; i++) junk.push(Buffer.from(crypto.randomBytes(32))); global.gc(); }, 2);
    const signer = async (w) => {
      for (let i = 0; i < perSigner; i++) {
        const data = Buffer.from('tbs ' + w + '/' + i);
        const sig = await key.sign(data);
        made++;
        if (!crypto.verify('sha256', data, { key: pub, dsaEncoding: 'der' }, sig)) bad.push(w + '/' + i);
        // the same signature must NOT verify over other bytes: a check that cannot fail proves nothing
        if (crypto.verify('sha256', Buffer.from('other ' + w + '/' + i), { key: pub, dsaEncoding: 'der' }, sig)) forged.push(w + '/' + i);
      }
    };
    const signing = Promise.all(Array.from({ length: signers }, (_, w) => signer(w))).finally(() => { done = true; });
    await Promise.all([...Array.from({ length: 8 }, busy), signing]);
    clearInterval(churn);
    process.stdout.write(JSON.stringify({ made, bad, forged }));
  } finally {
    await backend.close();
  }
})().catch((e) => { console.error(e); process.exitCode = 1; });
`;

test('ECDSA signatures via the token verify while scrypt fills the libuv pool and the GC runs', async () => {
  const script = path.join(hsm.dir, 'busy-signer.js');
  fs.writeFileSync(script, SIGNER);
  // timeoutMs only stops a hung child; it is no speed requirement
  const r = await runProcess(process.execPath, ['--expose-gc', script, hsm.module, hsm.pin, String(SIGNERS), String(PER_SIGNER)], { env: hsm.env, cwd: REPO_ROOT, timeoutMs: 110_000 });
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  // every signature was made and verifies over its own bytes, and over no other
  expect(JSON.parse(r.stdout)).toEqual({ made: SIGNERS * PER_SIGNER, bad: [], forged: [] });
});
