import { DeviceCaError, isDeviceCaError } from '../errors/device-ca-error';
import { KeyBackend } from './key-backend';

/** KEY_HEALTH_TTL_MS: a probe result is reused this long, so the overview and /healthz pollers cannot hammer an HSM. */
export const KEY_HEALTH_TTL_MS = 5000;
/** KEY_HEALTH_TIMEOUT_MS: a probe that has not answered by then counts as failed, so a hung token shows as unhealthy instead of hanging the page. */
export const KEY_HEALTH_TIMEOUT_MS = 2000;

export interface KeyHealthOptions {
  backend: Pick<KeyBackend, 'probe'>;
  /** refs: the keys that must be usable now (the signing key of each issuing CA in force), read on every probe so a rollover is followed */
  refs: () => string[];
  ttlMs?: number;
  timeoutMs?: number;
  now?: () => number;
}

/**
 * KeyHealth answers "can the CA sign now?" for the console overview and /healthz without signing
 * (KeyBackend.probe). One probe runs at a time and its result is reused for ttlMs whatever the number of
 * callers; a probe still running after timeoutMs is reported as failed, and no second probe is started
 * while the hung one holds a token session.
 */
export class KeyHealth {
  private last?: { at: number; error: DeviceCaError | null };
  private running?: Promise<void>;
  private verdict?: Promise<DeviceCaError | null>;

  constructor(private readonly o: KeyHealthOptions) {}

  /** check resolves when every key probes; otherwise rejects with 'key-backend' and a short reason. */
  async check(): Promise<void> {
    const now = this.o.now ?? Date.now;
    const t = now();
    let error: DeviceCaError | null;
    if (this.last && t - this.last.at < (this.o.ttlMs ?? KEY_HEALTH_TTL_MS)) error = this.last.error;
    else {
      this.verdict ??= this.probe().then((err) => {
        this.last = { at: t, error: err };
        this.verdict = undefined;
        return err;
      });
      error = await this.verdict;
    }
    if (error) throw error;
  }

  private probe(): Promise<DeviceCaError | null> {
    const timeoutMs = this.o.timeoutMs ?? KEY_HEALTH_TIMEOUT_MS;
    if (this.running) return Promise.resolve(new DeviceCaError('key-backend', 'key backend probe still running (the token does not answer)', { retryAfterSeconds: 30 }));
    const run = Promise.resolve()
      .then(async () => {
        for (const ref of this.o.refs()) await this.o.backend.probe(ref);
      })
      .finally(() => {
        if (this.running === run) this.running = undefined;
      });
    this.running = run;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<DeviceCaError>((resolve) => {
      timer = setTimeout(() => resolve(new DeviceCaError('key-backend', `key backend did not answer within ${timeoutMs} ms`, { retryAfterSeconds: 30 })), timeoutMs);
      timer.unref();
    });
    const verdict = run.then(
      () => null,
      (e: unknown) => (isDeviceCaError(e) ? e : new DeviceCaError('key-backend', 'key backend probe failed', { retryAfterSeconds: 30, cause: e })),
    );
    return Promise.race([verdict, timeout]).finally(() => clearTimeout(timer));
  }
}
