import cluster, { Worker } from 'node:cluster';
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import * as os from 'node:os';
import { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { Config } from '../config/schema';
import { CA_DUTIES_LEASE, CA_DUTIES_LEASE_TTL_MS } from '../ca/ca-duties';
import { ensureCa } from '../ca/ca-hierarchy';
import { recordStoreMark, verifyStoreIdentity } from '../ca/ca-identity';
import { publicUrlWarning } from '../ca/public-url-warning';
import { ensureOcspResponder, ensureScepRa, ensureTlsServerCertificate } from '../ca/service-certificates';
import { KeyRouter } from '../keys/key-router';
import { openKeyBackend } from '../keys/open-key-backend';
import { buildCertificateAuthority, buildService, openStore, Service } from '../main';
import { needsRootKey } from './needs-root-key';
import { checkStoreDurable } from '../store/create-store';

/** ServeOptions: command-line flags of `device-ca serve`. */
export interface ServeOptions {
  /** acceptStoreRollback: serve a store that is behind the data directory's mark (ca-identity.ts), re-recording the mark */
  acceptStoreRollback?: boolean;
}

/**
 * serve runs device-ca: the primary checks that the store is this data directory's (ca-identity.ts),
 * creates the CA on first start, issues the HTTPS certificate, then forks one worker per core (config
 * `workers`); workers share the listening ports and the store.
 * SIGTERM/SIGINT: stop accepting, finish requests in flight (up to shutdownGrace), exit 0; the primary
 * forks no worker once it is stopping and kills a worker still running shutdownGrace + 5 s later.
 */
export async function serve(cfg: Config, log: Logger, opts: ServeOptions = {}): Promise<void> {
  if (cluster.isWorker) return runWorker(cfg, log, true);
  await prepare(cfg, log, opts);
  const n = cfg.workers > 0 ? cfg.workers : os.availableParallelism();
  if (n === 1) return runWorker(cfg, log, false);
  return runPrimary(cfg, log, n);
}

/**
 * prepare runs once before the workers start: refuses a store that is not this data directory's CA's
 * (missing, emptied, rolled back, another deployment's), creates (or imports) the CA and records the
 * store's mark in the data directory, then issues the HTTPS, OCSP responder and (scep.enabled) SCEP RA
 * certificates that are missing or due, under the CA duties lease, so it never races a
 * worker or another node doing the same. When another process holds the lease, that one issues them and
 * the workers wait for them in the store.
 */
async function prepare(cfg: Config, log: Logger, opts: ServeOptions): Promise<void> {
  const keys = openKeyBackend(cfg);
  // keys first: a wrong PIN or an absent token fails before anything (the store file included) is written
  try {
    if (keys instanceof KeyRouter) {
      await keys.open('issuing');
      if (await needsRootKey(cfg)) await keys.open('root'); // a first start makes the root key too
    }
  } catch (e) {
    await keys.close();
    throw e;
  }
  const store = openStore(cfg); // runs migrations once, before workers open the file
  const holder = `${os.hostname()}:${process.pid}:prepare`;
  try {
    await checkStoreDurable(cfg, store); // a Redis without AOF or RDB would forget acknowledged certificates
    const { rollbackAccepted } = await verifyStoreIdentity(cfg, store, { acceptRollback: opts.acceptStoreRollback });
    if (rollbackAccepted) log.warn({ store: cfg.store.path, problem: rollbackAccepted }, 'serving a rolled-back store (--accept-store-rollback); audited store.rollback-accepted');
    const { ca, created } = await ensureCa(cfg, keys, store);
    if (created) log.info({ dataDir: cfg.dataDir, root: ca.state.root.name, issuing: ca.state.issuing.name }, 'created a new CA hierarchy');
    const publicUrlProblem = publicUrlWarning(cfg, ca.state.issuing.name);
    if (publicUrlProblem) log.warn(publicUrlProblem);
    await recordStoreMark(cfg, store, { force: rollbackAccepted !== null });
    if (await store.acquireLease(CA_DUTIES_LEASE, holder, CA_DUTIES_LEASE_TTL_MS, new Date())) {
      try {
        const authority = buildCertificateAuthority(cfg, ca);
        await ensureTlsServerCertificate(cfg, authority, ca, store);
        await ensureOcspResponder(cfg, keys, authority, store);
        // the SCEP RA key is RSA whatever ca.algorithm says: made only when SCEP is served
        if (cfg.scep.enabled) await ensureScepRa(cfg, keys, authority, store);
      } finally {
        await store.releaseLease(CA_DUTIES_LEASE, holder);
      }
    }
  } finally {
    await store.close();
    await keys.close();
  }
}

/**
 * WORKER_EXIT_MARGIN_MS: how long after shutdownGrace the primary still waits for a worker to close its
 * store and threads before it kills the worker, so a worker that hangs cannot keep the service running.
 */
const WORKER_EXIT_MARGIN_MS = 5000;

/** RESPAWN_DELAY_MS: pause before a worker that exited is replaced, so a crash loop does not spin. */
const RESPAWN_DELAY_MS = 500;

/**
 * runPrimary forks the workers and replaces one that exits, except once the primary itself is stopping:
 * then it never forks again (a respawn timer already set is dropped when it fires), signals its workers,
 * waits for them up to shutdownGrace plus WORKER_EXIT_MARGIN_MS, kills what remains and exits.
 * A SIGTERM to the whole process group (`pkill -f`, `kill -- -pgid`, a container stop) reaches the
 * workers too, and the primary may see a worker exit before its own SIGTERM: that exit must not leave
 * a worker forked after the primary stopped, which nothing would ever signal again.
 */
function runPrimary(cfg: Config, log: Logger, n: number): Promise<void> {
  // let the kernel hand new connections to whichever worker accepts first: the default round robin
  // passes every connection through the primary, about 0.3 ms each, which EST and OCSP clients that
  // open a connection per request pay in full (bench/ocsp-http.ts)
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const aggregator = new AggregatorRegistry();
  let stopping = false;
  let ready = 0;
  let started = 0;
  // the workers whose process has not exited yet: cluster.workers keeps a worker until its IPC channel
  // closes too, which may come after the exit
  const alive = new Set<Worker>();
  let onAllExited: (() => void) | undefined;
  return new Promise((resolve) => {
    // CRL publication and certificate renewal run in whichever worker holds the CA duties lease (ca-duties.ts)
    const fork = (): void => {
      if (stopping) return;
      const w = cluster.fork();
      alive.add(w);
      w.once('exit', () => {
        alive.delete(w);
        if (alive.size === 0) onAllExited?.();
      });
      w.on('message', async (m: { type?: string; id?: string }) => {
        if (m?.type === 'device-ca:ready') {
          ready++;
          // start workers one after another: token logins at the same instant can corrupt a SoftHSM
          // file store (softhsm/SoftHSMv2#757), and a staggered start costs well under a second
          if (!stopping && started < n) {
            started++;
            fork();
          }
          if (ready === n) log.info({ workers: n, https: cfg.https.port, http: cfg.http.port }, 'device-ca is serving');
        }
        if (m?.type === 'device-ca:metrics') {
          let text = '';
          try {
            text = await aggregator.clusterMetrics();
          } catch (e) {
            log.warn({ err: { message: (e as Error).message } }, 'metrics aggregation failed');
          }
          if (w.isConnected()) w.send({ type: 'device-ca:metrics-reply', id: m.id, text });
        }
        if (m?.type === 'device-ca:fatal') {
          log.fatal({ message: (m as { message?: string }).message }, 'worker could not start; stopping');
          stop(1);
        }
      });
    };
    const stop = (code: number) => {
      if (stopping) return;
      stopping = true;
      for (const w of alive) w.process.kill('SIGTERM');
      const bound = setTimeout(
        () => {
          log.warn({ workers: [...alive].map((w) => w.process.pid) }, 'workers still running after shutdownGrace; killing them');
          for (const w of alive) w.process.kill('SIGKILL');
        },
        cfg.shutdownGrace * 1000 + WORKER_EXIT_MARGIN_MS,
      );
      onAllExited = () => {
        clearTimeout(bound);
        log.info('device-ca stopped');
        log.flush?.();
        process.exitCode = code;
        resolve();
      };
      if (alive.size === 0) onAllExited();
    };
    cluster.on('exit', (w, code, signal) => {
      if (stopping) return;
      log.error({ pid: w.process.pid, code, signal }, 'worker exited; starting another');
      setTimeout(fork, RESPAWN_DELAY_MS); // fork() does nothing once the primary is stopping
    });
    process.on('SIGTERM', () => stop(0));
    process.on('SIGINT', () => stop(0));
    started = 1;
    fork();
  });
}

function listen(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      // a host without IPv6: fall back to IPv4 on all interfaces
      if (host === '::' && (e.code === 'EAFNOSUPPORT' || e.code === 'EADDRNOTAVAIL')) {
        server.removeListener('error', onError);
        listen(server, port, '0.0.0.0').then(resolve, reject);
      } else reject(e);
    };
    server.once('error', onError);
    server.listen({ port, host, ipv6Only: false }, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
}

async function runWorker(cfg: Config, log: Logger, inCluster: boolean): Promise<void> {
  let svc: Service;
  try {
    let metricsText: (() => Promise<string>) | undefined;
    if (inCluster) {
      const pending = new Map<string, (t: string) => void>();
      process.on('message', (m: { type?: string; id?: string; text?: string }) => {
        if (m?.type === 'device-ca:metrics-reply' && m.id) {
          pending.get(m.id)?.(m.text ?? '');
          pending.delete(m.id);
        }
      });
      metricsText = () =>
        new Promise((resolve) => {
          const id = crypto.randomUUID();
          pending.set(id, resolve);
          process.send?.({ type: 'device-ca:metrics', id });
          setTimeout(() => pending.has(id) && (pending.delete(id), resolve('')), 5000).unref();
        });
    }
    svc = await buildService(cfg, { log, metricsText });
    if (inCluster) {
      new AggregatorRegistry(); // installs prom-client's worker-side reply listener
      AggregatorRegistry.setRegistries([svc.registry]);
    }
    await listen(svc.https, cfg.https.port, cfg.https.host);
    await listen(svc.http, cfg.http.port, cfg.http.host);
  } catch (e) {
    const message = (e as Error).message;
    log.fatal({ message }, 'cannot start');
    log.flush?.();
    if (inCluster) process.send?.({ type: 'device-ca:fatal', message });
    process.exitCode = 1;
    if (inCluster) setTimeout(() => process.exit(1), 100);
    // one worker in this process: what the failed start had opened (store connections, CSR threads) would
    // keep it running without serving; exit with the code the CLI sets for the error once it has printed it
    else setTimeout(() => process.exit(), 100).unref();
    throw e;
  }
  if (inCluster) process.send?.({ type: 'device-ca:ready' });
  else log.info({ https: cfg.https.port, http: cfg.http.port }, 'device-ca is serving');

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      const closing = [svc.https, svc.http].map((s) => new Promise<void>((r) => s.close(() => r())));
      const idle = setInterval(() => {
        svc.https.closeIdleConnections();
        svc.http.closeIdleConnections();
      }, 100);
      const force = setTimeout(() => {
        log.warn('shutdown grace over; closing remaining connections');
        svc.https.closeAllConnections();
        svc.http.closeAllConnections();
      }, cfg.shutdownGrace * 1000);
      Promise.all(closing).then(async () => {
        clearInterval(idle);
        clearTimeout(force);
        await svc.close();
        resolve();
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  process.exitCode = 0;
  if (inCluster) process.disconnect?.();
}
