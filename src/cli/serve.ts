import cluster, { Worker } from 'node:cluster';
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import * as os from 'node:os';
import { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { Config } from '../config/schema';
import { buildCertificateAuthority, buildService, ensureCa, ensureOcspResponder, ensureTlsServerCertificate, openKeyBackend, openStore, Service } from '../main';

/**
 * serve runs device-ca: the primary creates the CA on first start, issues the HTTPS certificate, then
 * forks one worker per core (config `workers`); workers share the listening ports and the store.
 * SIGTERM/SIGINT: stop accepting, finish requests in flight (up to shutdownGrace), exit 0.
 */
export async function serve(cfg: Config, log: Logger): Promise<void> {
  if (cluster.isWorker) return runWorker(cfg, log, true);
  await prepare(cfg, log);
  const n = cfg.workers > 0 ? cfg.workers : os.availableParallelism();
  if (n === 1) return runWorker(cfg, log, false);
  return runPrimary(cfg, log, n);
}

async function prepare(cfg: Config, log: Logger): Promise<void> {
  const keys = openKeyBackend(cfg);
  let store: ReturnType<typeof openStore> | undefined;
  try {
    // keys first: a wrong PIN or an absent token fails before anything is written to the data directory
    const { ca, created } = await ensureCa(cfg, keys);
    if (created) log.info({ dataDir: cfg.dataDir, root: ca.state.root.name, issuing: ca.state.issuing.name }, 'created a new CA hierarchy');
    store = openStore(cfg); // runs migrations once, before workers open the file
    const authority = buildCertificateAuthority(cfg, ca);
    await ensureTlsServerCertificate(cfg, authority, ca, store);
    await ensureOcspResponder(cfg, keys, authority, store);
  } finally {
    await store?.close();
    await keys.close();
  }
}

function runPrimary(cfg: Config, log: Logger, n: number): Promise<void> {
  // let the kernel hand new connections to whichever worker accepts first: the default round robin
  // passes every connection through the primary, about 0.3 ms each, which EST and OCSP clients that
  // open a connection per request pay in full (bench/ocsp-http.ts)
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const aggregator = new AggregatorRegistry();
  let stopping = false;
  let ready = 0;
  let started = 0;
  return new Promise((resolve) => {
    // one worker publishes CRLs on a timer; the others serve what it (or a fetch) generated
    let publisher: Worker | undefined;
    const fork = (): Worker => {
      const publishes = !publisher || publisher.isDead();
      const w = cluster.fork({ DEVICE_CA_WORKER_PUBLISHES_CRLS: publishes ? '1' : '0' });
      if (publishes) publisher = w;
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
      return w;
    };
    const stop = (code: number) => {
      if (stopping) return;
      stopping = true;
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      const done = () => {
        if (Object.keys(cluster.workers ?? {}).length === 0) {
          log.info('device-ca stopped');
          log.flush?.();
          process.exitCode = code;
          resolve();
        }
      };
      cluster.on('exit', done);
      done();
    };
    cluster.on('exit', (w, code, signal) => {
      if (stopping) return;
      log.error({ pid: w.process.pid, code, signal }, 'worker exited; starting another');
      setTimeout(fork, 500);
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
        if (m?.type === 'device-ca:metrics-reply' && m.id) { pending.get(m.id)?.(m.text ?? ''); pending.delete(m.id); }
      });
      metricsText = () =>
        new Promise((resolve) => {
          const id = crypto.randomUUID();
          pending.set(id, resolve);
          process.send?.({ type: 'device-ca:metrics', id });
          setTimeout(() => pending.has(id) && (pending.delete(id), resolve('')), 5000).unref();
        });
    }
    svc = await buildService(cfg, { log, metricsText, publishCrls: !inCluster || process.env.DEVICE_CA_WORKER_PUBLISHES_CRLS === '1' });
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
