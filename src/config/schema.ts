import * as tls from 'node:tls';
import { z } from 'zod';
import { parseDuration } from './duration';
import { KEY_ALGORITHMS } from '../keys/key-backend';
import { resolveProfiles, scepPathProblems } from './enrollment-profiles';

/**
 * schema: the one strict description of device-ca's configuration. Defaults live here and only here;
 * config/default.yaml documents the same keys. Unknown keys are rejected so a typo fails at start.
 */
const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});
const port = z.number().int().min(0).max(65535);

/**
 * MOZILLA_INTERMEDIATE_CIPHERS: Mozilla's "intermediate" server configuration (ssl-config.mozilla.org, v5.7):
 * TLS 1.3 suites, then ECDHE/DHE with AES-GCM or ChaCha20-Poly1305 for TLS 1.2. Node's default also takes
 * CBC suites with SHA-1 MACs (AES128-SHA, no forward secrecy), CCM8 and ARIA, which this drops. The DHE
 * suites are inert: the listener sets no DH parameters.
 */
export const MOZILLA_INTERMEDIATE_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'DHE-RSA-AES128-GCM-SHA256',
  'DHE-RSA-AES256-GCM-SHA384',
  'DHE-RSA-CHACHA20-POLY1305',
].join(':');

/** opensslAccepts: a cipher list OpenSSL refuses fails at config load, with the key's path, not at listen */
function opensslAccepts(ciphers: string): boolean {
  try {
    tls.createSecureContext({ ciphers });
    return true;
  } catch {
    return false;
  }
}
const keyAlgorithm = z.enum(KEY_ALGORITHMS as [string, ...string[]]);

const listener = (defaultPort: number) =>
  z.strictObject({
    port: port.default(defaultPort),
    /** hosts to bind; "::" with ipv6Only false takes IPv4 and IPv6 on every interface */
    host: z.string().default('::'),
    /** largest request body accepted, bytes */
    bodyLimit: z
      .number()
      .int()
      .min(1024)
      .max(16 * 1024 * 1024)
      .default(64 * 1024),
  });

const caCert = (name: string, days: number) =>
  z.strictObject({
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'letters, digits, . _ - only')
      .default(name),
    /** Subject common name of the CA certificate */
    commonName: z.string().min(1).max(64).optional(),
    validity: duration.prefault(`${days}d`),
    algorithm: keyAlgorithm.optional(),
  });

/** pkcs11Token: which token and where its PIN comes from; the PIN itself never sits in the config file. */
const pkcs11Token = {
  /** token label (DEVICE_CA_PKCS11_TOKEN) */
  token: z.string().optional(),
  /** token serial number, instead of or besides the label */
  serial: z.string().optional(),
  /** environment variable holding the user PIN */
  pinEnv: z.string().optional(),
  /** file holding the user PIN (first line) */
  pinFile: z.string().optional(),
};
const roleKey = z
  .strictObject({
    ...pkcs11Token,
    /** adopt this existing key (PKCS#11 URI, RFC 7512) instead of generating one at init */
    key: z.string().optional(),
  })
  .prefault({});

/** hostPort: a Redis node or Sentinel as host:port (an IPv6 host in brackets). */
const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'not host:port');

/** NAME: profile and label names; they appear in URLs and the store. */
const profileName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/, 'lower-case letters, digits and - only, at most 32');

/** PCR_BANK_BYTES: digest size of each PCR bank a policy may name. */
const PCR_BANK_BYTES = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 } as const;

/** pcrPolicySchema: `profiles.<name>.pcrPolicy`: a bank and PCR index (0-23) -> expected value in hex of the bank's size. */
const pcrPolicySchema = z
  .strictObject({
    bank: z.enum(['sha1', 'sha256', 'sha384', 'sha512']).default('sha256'),
    pcrs: z.record(z.string().regex(/^(?:1?[0-9]|2[0-3])$/, 'a PCR index 0-23'), z.string().regex(/^(?:[0-9a-fA-F]{2})+$/, 'hex')),
  })
  .refine((p) => Object.keys(p.pcrs).length > 0, { message: 'pcrs: name at least one PCR' })
  .refine((p) => Object.values(p.pcrs).every((v) => v.length === 2 * PCR_BANK_BYTES[p.bank]), { message: 'pcrs: each value is a digest of the bank (sha256: 64 hex digits)' });

/**
 * allowedTpmSchema: one entry of `profiles.<name>.allowedTpms`: a TPM manufacturer as its EK certificates
 * write it (TCG vendor id, "id:" + 8 hex digits), optionally a model, optionally the lowest firmware version
 * (TPMS_ATTEST.firmwareVersion, a quoted "0x" + up to 16 hex digits: YAML numbers lose 64-bit precision).
 */
const allowedTpmSchema = z.strictObject({
  manufacturer: z.string().min(1).max(64),
  model: z.string().min(1).max(64).optional(),
  minFirmwareVersion: z
    .string()
    .regex(/^0x[0-9a-fA-F]{1,16}$/, 'a quoted hex string: "0x" and 1-16 hex digits')
    .optional(),
});

/**
 * profileSchema: the policy of one named enrollment profile (`profiles.<name>`), whatever protocol the
 * device enrolls with. The RA reads the decision keys; the CA reads validity, serverAuth and keyEncipherment by name.
 */
export const profileSchema = z.strictObject({
  /** authenticators accepted for a first enrollment and server keygen: one-time secret, manufacturer certificate */
  auth: z
    .array(z.enum(['basic', 'bootstrap-cert']))
    .min(1)
    .default(['basic', 'bootstrap-cert']),
  /** RFC 7030 §3.5: require challengePassword = tls-unique / tls-exporter */
  proofOfPossession: z.boolean().default(false),
  /** hold requests for an operator (EST 202) until `device-ca requests approve` */
  manualApproval: z.boolean().default(false),
  validity: duration.prefault('365d'),
  /** add serverAuth to the EKU (device-to-device TLS servers) */
  serverAuth: z.boolean().default(false),
  /** RSA device keys: add keyEncipherment to keyUsage (TLS 1.2 RSA key transport); RFC 5280 §4.2.1.12 pairs clientAuth with digitalSignature only */
  keyEncipherment: z.boolean().default(false),
  /** copy DNS/IP SANs from the CSR; otherwise only the CN (device id) is used */
  allowCsrSans: z.boolean().default(false),
  keyAlgorithms: z.array(keyAlgorithm).min(1).default(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072']),
  serverKeyGen: z.boolean().default(true),
  /**
   * TPM key attestation (issue 9): off = evidence in a CSR is ignored; optional = checked when the CSR
   * carries it; required = a CSR without valid TPM2_Certify evidence of its key is refused (403)
   */
  attestation: z.enum(['off', 'optional', 'required']).default('off'),
  /**
   * PCR policy (issue 9): with attestation on, the CSR must also carry a TPM2_Quote by the same AK with the
   * same nonce, over exactly these PCRs of this bank, each holding the value given (hex)
   */
  pcrPolicy: pcrPolicySchema.optional(),
  /**
   * TPM allow-list (issue 9): with attestation on, only TPMs whose EK certificate names one of these
   * manufacturers (and model) register an AK or have keys attested; unset = any TPM with a trusted EK root
   */
  allowedTpms: z.array(allowedTpmSchema).min(1).max(100).optional(),
  /**
   * tpmKeyDecrypt (issue 13): with attestation on, an attested device key may also have the TPM's decrypt
   * attribute (still unrestricted, never restricted), so firmware can be encrypted to it and the device
   * agent opens it with TPM2_ECDH_ZGen; off = issue 9's default, a sign-only key
   */
  tpmKeyDecrypt: z.boolean().default(false),
});
export type ProfileConfig = z.infer<typeof profileSchema>;

/**
 * BUILT_IN_TPM_PROFILE: the `tpm` profile of the default config (EST label `tpm`): TPM attestation
 * required, so /.well-known/est/tpm/ works as soon as a manufacturer root is in certs/tpm-roots/; no
 * server keygen (that key would not be in a TPM).
 */
export const BUILT_IN_TPM_PROFILE = { attestation: 'required', serverKeyGen: false } as const;

/** POLICY_KEYS: the profile keys; before profiles existed a label carried them inline. */
export const POLICY_KEYS = Object.keys(profileSchema.shape) as (keyof ProfileConfig)[];

/** inlinePolicy: the profile keys without their defaults, so a label shows which ones it really set. */
const inlinePolicy = Object.fromEntries(Object.entries(profileSchema.shape).map(([k, v]) => [k, (v as unknown as { unwrap(): z.ZodType }).unwrap().optional()])) as {
  [K in keyof ProfileConfig]: z.ZodOptional<z.ZodType<ProfileConfig[K]>>;
};

/**
 * labelSchema: one EST label (`est.labels.<label>`). Policy lives on the profile the label names
 * (`profile`, default: the profile named like the label); EST-only options stay here. Policy keys
 * written inline (the form before profiles) still work: they make a profile of the label's name.
 */
export const labelSchema = z.strictObject({
  /** the enrollment profile this label serves; default: the profile named like the label */
  profile: profileName.optional(),
  /** EST only: how reply bodies are written (RFC 8951 §3.1 allows both): single-line base64, or wrapped at 64 columns */
  replyBase64: z.enum(['single-line', 'wrapped-64']).default('single-line'),
  ...inlinePolicy,
});
export type LabelConfig = z.infer<typeof labelSchema>;

/** scepPathSchema: one SCEP path (`scep.paths.<name>`): the enrollment profile it serves. */
export const scepPathSchema = z.strictObject({
  /** the enrollment profile this SCEP path serves */
  profile: profileName,
});

/** RESERVED_PROFILES: the CA's built-in service profiles; no enrollment profile may take their names. */
export const RESERVED_PROFILES: readonly string[] = ['tls-server', 'ocsp-responder', 'scep-ra', 'tpm-ak'];

export const configSchema = z
  .strictObject({
    /** where keys, CA certificates and the embedded store live */
    dataDir: z.string().default('./data'),
    /** base of CRL, OCSP and caIssuers URLs written into certificates; default http://localhost:<http.port> */
    publicUrl: z.string().url().optional(),
    /** worker processes for `serve`; 0 = one per CPU core */
    workers: z.number().int().min(0).max(256).default(0),
    /** seconds `serve` waits for in-flight requests after SIGTERM */
    shutdownGrace: duration.prefault('10s'),
    log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).prefault({}),
    http: listener(8080).prefault({}),
    https: listener(8443)
      .extend({
        /** PEM files of an external server certificate chain and key; when absent device-ca issues one */
        certFile: z.string().optional(),
        keyFile: z.string().optional(),
        /** extra DNS names / IPs for the issued server certificate (localhost and 127.0.0.1, ::1 always) */
        names: z.array(z.string()).default([]),
        /** OpenSSL cipher list, TLS 1.3 suites (TLS_*) included; default Mozilla "intermediate": AEAD with forward secrecy only */
        ciphers: z.string().min(1).refine(opensslAccepts, 'not a cipher list OpenSSL accepts').default(MOZILLA_INTERMEDIATE_CIPHERS),
        /** a connection whose TLS handshake has not completed by then is closed (and logged) */
        handshakeTimeout: duration.prefault('10s'),
      })
      .prefault({}),
    ca: z
      .strictObject({
        algorithm: keyAlgorithm.default('ecdsa-p256'),
        organization: z.string().default('device-ca'),
        root: caCert('device-ca-root', 7300)
          .extend({
            /** crlValidity: nextUpdate of the root CRL, signed where the root key lives (often offline), hence long */
            crlValidity: duration.prefault('365d'),
          })
          .prefault({}),
        issuing: caCert('device-ca-issuing', 3650).prefault({}),
        /** notBefore is set this far in the past to tolerate device clock skew */
        backdate: duration.prefault('5m'),
      })
      .prefault({}),
    keys: z
      .strictObject({
        /** auto: pkcs11 when keys.pkcs11.module, token or serial is set (DEVICE_CA_PKCS11_*), else software files */
        backend: z.enum(['auto', 'software', 'pkcs11']).default('auto'),
        /** environment variable holding the passphrase for software key files (optional) */
        passphraseEnv: z.string().default('DEVICE_CA_KEY_PASSPHRASE'),
        pkcs11: z
          .strictObject({
            /** path of the PKCS#11 module (.so) */
            module: z.string().optional(),
            ...pkcs11Token,
            /** sessions per process; one signature runs per session at a time */
            sessionPoolSize: z.number().int().min(1).max(64).default(4),
            /** token threads per process that sign (each with its own session); default: cores - 1, 1 to 4 */
            signerThreads: z.number().int().min(1).max(64).optional(),
          })
          .prefault({}),
        /** per role: another token (e.g. an offline root), or an existing key to adopt by PKCS#11 URI */
        roles: z
          .strictObject({
            root: roleKey,
            issuing: roleKey,
            ocsp: roleKey,
            ra: roleKey,
            signer: roleKey,
          })
          .prefault({}),
      })
      .prefault({}),
    store: z
      .strictObject({
        /** sqlite: embedded, one machine; redis: shared by several nodes (DEVICE_CA_STORE=redis://host:port/db sets both type and url) */
        type: z.enum(['sqlite', 'redis']).default('sqlite'),
        /** SQLite file; relative paths are under dataDir */
        path: z.string().default('device-ca.sqlite'),
        /** sqlite only: WAL checkpoints on a thread of their own instead of inside a commit (store/sqlite/wal-checkpointer.ts) */
        checkpointThread: z.boolean().default(true),
        /** redis only: redis://[user:password@]host:port/db, or rediss:// for TLS */
        url: z
          .string()
          .regex(/^rediss?:\/\/[^\s]+$/, 'not a redis:// or rediss:// URL')
          .optional(),
        /** redis only: serve even when Redis keeps nothing across its restart (neither AOF nor RDB); certificates may then be lost */
        allowNoPersistence: z.boolean().default(false),
        /** redis only: reach Redis through Sentinel or as a Cluster instead of the one server of url */
        redis: z
          .strictObject({
            /** the master's name as the Sentinels know it, and the Sentinels (host:port); url then gives user, password, db, rediss */
            sentinel: z.strictObject({ name: z.string().min(1), sentinels: z.array(hostPort).min(1) }).optional(),
            /** seed nodes (host:port) of a Redis Cluster; the CA's keys share one hash slot */
            cluster: z.strictObject({ nodes: z.array(hostPort).min(1) }).optional(),
            /** after each write, WAIT for this many replicas (at most timeoutMs); fewer: the request gets 503 (not with cluster) */
            waitReplicas: z.strictObject({ replicas: z.number().int().min(1).max(16), timeoutMs: z.number().int().min(1).max(60_000).default(1000) }).optional(),
          })
          .refine((r) => !(r.sentinel && r.cluster), { message: 'store.redis: sentinel or cluster, not both' })
          .refine((r) => !(r.waitReplicas && r.cluster), { message: 'store.redis.waitReplicas does not work with cluster' })
          .prefault({}),
      })
      .refine((s) => s.type !== 'redis' || s.url !== undefined || s.redis.cluster !== undefined, {
        message: 'store.type redis needs store.url (or DEVICE_CA_STORE=redis://host:port/db) or store.redis.cluster',
        path: ['url'],
      })
      .prefault({}),
    crl: z
      .strictObject({
        shards: z.number().int().min(1).max(65536).default(16),
        /** nextUpdate - thisUpdate of every CRL */
        validity: duration.prefault('24h'),
        /** a CRL is re-issued when less than this is left before its nextUpdate (never lapses) */
        renewBefore: duration.prefault('12h'),
        /** how often the service checks for revocations to publish; a revocation is in its shard's CRL within this */
        checkInterval: duration.prefault('2s'),
      })
      .prefault({}),
    ocsp: z
      .strictObject({
        /** nextUpdate - thisUpdate of OCSP responses */
        validity: duration.prefault('1h'),
        /** HTTP max-age on GET responses (RFC 5019), at most the time left before nextUpdate */
        maxAge: duration.prefault('60s'),
        /** pre-signed nonce-less responses kept per worker */
        cacheSize: z.number().int().min(0).max(10_000_000).default(100_000),
        /** lifetime of the delegated responder certificate; renewed when a third of it is left */
        responderValidity: duration.prefault('30d'),
        /** largest OCSP request accepted, bytes */
        maxRequestBytes: z.number().int().min(256).max(65536).default(8192),
      })
      .prefault({}),
    admin: z
      .strictObject({
        /** PEM files of client certificates that act as operators on the admin API and sign in to the console (pinned by SHA-256) */
        clientCerts: z.array(z.string()).default([]),
      })
      .prefault({}),
    console: z
      .strictObject({
        /** serve the operator console at /console/ on the HTTPS listener */
        enabled: z.boolean().default(true),
        /** a console session unused this long ends (seconds) */
        idleTimeout: duration.prefault('15m'),
        /** a console session ends this long after sign-in whatever its use (seconds) */
        maxAge: duration.prefault('12h'),
      })
      .prefault({}),
    enrollment: z
      .strictObject({
        /** lifetime of a one-time enrollment secret */
        secretTtl: duration.prefault('7d'),
        /** scrypt cost, log2(N), r=8, p=1 (12 = 4 MiB and ~7 ms per check), for secrets a person chose; generated secrets use HMAC (ra/enrollment-secret.ts) */
        secretHashCost: z.number().int().min(10).max(20).default(12),
        /** failed authentications per device id allowed within authFailureWindow before 429 */
        authFailureLimit: z.number().int().min(1).default(5),
        authFailureWindow: duration.prefault('15m'),
        /**
         * failed attempts on names that are not registered devices kept at most (oldest dropped first), so
         * made-up user names cannot fill the disk; a registered device keeps at most authFailureLimit
         */
        authFailureMaxUnknown: z.number().int().min(100).default(100_000),
        /** Retry-After for EST 202 (manual approval) */
        pendingRetryAfter: duration.prefault('60s'),
        /** a device that lost the reply may repeat its enrollment (same secret, same key) this long and gets the same certificate */
        retryWindow: duration.prefault('10m'),
      })
      .prefault({}),
    bootstrap: z
      .strictObject({
        /** PEM files (or directories of them) of manufacturer CAs whose IDevID client certs may enroll */
        trustAnchors: z.array(z.string()).default([]),
        /** where the device id is taken from in a bootstrap certificate */
        deviceIdFrom: z.enum(['subject.CN', 'subject.serialNumber', 'san.uri', 'san.dns']).default('subject.serialNumber'),
        /** optional regex with one capture group applied to that value */
        deviceIdPattern: z.string().optional(),
        /** register an unknown device on first bootstrap enrollment under this owner (unset: device must exist) */
        autoRegisterOwner: z.string().optional(),
      })
      .prefault({}),
    attestation: z
      .strictObject({
        /** PEM files, or directories of .pem/.crt files, of the TPM manufacturer CAs EK certificates must chain to; a directory that does not exist is skipped */
        ekRoots: z.array(z.string()).default(['certs/tpm-roots']),
        /** lifetime of a nonce from <label>/tpm/nonce, measured on the CA's clock (device clocks are not trusted) */
        nonceTtl: duration.prefault('5m'),
        /** how long a device has to answer the MakeCredential challenge of <label>/tpm/ak */
        challengeTtl: duration.prefault('5m'),
      })
      .prefault({}),
    /** profile name -> enrollment policy */
    profiles: z.record(profileName, profileSchema).prefault({ default: {}, tpm: BUILT_IN_TPM_PROFILE }),
    est: z
      .strictObject({
        /** label name -> profile (and EST-only options); "default" serves /.well-known/est/ without a label */
        labels: z.record(profileName, labelSchema).prefault({ default: { profile: 'default' }, tpm: { profile: 'tpm' } }),
      })
      .prefault({}),
    scep: z
      .strictObject({
        /** serve SCEP (RFC 8894) on the HTTP listener; off: no SCEP RA key (RSA) is ever made */
        enabled: z.boolean().default(false),
        /** path name -> the profile it serves: /scep/<name>; "default" serves /scep and /certsrv/mscep/mscep.dll */
        paths: z.record(profileName, scepPathSchema).prefault({ default: { profile: 'default' } }),
      })
      .prefault({}),
  })
  .superRefine((cfg, ctx) => {
    const resolved = resolveProfiles(cfg);
    for (const p of resolved.problems) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
    if (cfg.scep.enabled) for (const p of scepPathProblems(cfg.scep.paths, resolved.profiles)) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
  });

export type Config = z.infer<typeof configSchema>;
