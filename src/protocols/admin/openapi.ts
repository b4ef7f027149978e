/**
 * OPENAPI: the admin API's OpenAPI 3.0 document, served at /api/v1/openapi.json. It lists every route the
 * admin router serves: the authorization matrix test enumerates its paths and fails on a route without an
 * expectation, and on a router route missing here. Bodies are strict (additionalProperties: false), as
 * admin-input.ts enforces.
 */
const err = { $ref: '#/components/responses/Error' };
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
const serialParam = { name: 'serial', in: 'path', required: true, schema: { type: 'string', description: 'hex serial' } };
const pageParams = [
  { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 }, description: 'items per page; larger values are clamped to 1000 (follow `next` for the rest)' },
  { name: 'after', in: 'query', schema: { type: 'string' }, description: 'opaque cursor: the `next` of the previous page; absent for the first page' },
];
/** page: a list answer. `next` is null only when no rows follow: a short page is not the end, a null `next` is. */
const page = (item: object) => ({
  type: 'object',
  required: ['items', 'next'],
  properties: {
    items: { type: 'array', items: item },
    next: { type: 'string', nullable: true, description: 'cursor for the following page (pass as `after`), or null when there are no more' },
  },
});
const ok = (schema: object, code = '200') => ({ [code]: { description: 'OK', content: { 'application/json': { schema } } }, '400': err, '401': err, '403': err, '404': err, '409': err });
const json = (schema: object, required = true) => ({ required, content: { 'application/json': { schema } } });
const strict = (properties: object, required: string[] = []) => ({ type: 'object', additionalProperties: false, ...(required.length ? { required } : {}), properties });
const owner = { type: 'string', minLength: 1, maxLength: 128, description: 'printable characters; written as O= in certificates' };
const secretTtl = {
  oneOf: [
    { type: 'string', maxLength: 32, example: '7d' },
    { type: 'integer', minimum: 1, maximum: 31536000 },
  ],
  description: 'lifetime of the one-time secret: a duration (90s, 15m, 12h, 7d, 1y) or seconds; 1s to 365d',
};
const lifecycle = (summary: string) => ({ post: { summary, parameters: [idParam], requestBody: json(strict({}), false), responses: ok({ $ref: '#/components/schemas/LifecycleResult' }) } });
const withSecret = (summary: string) => ({
  post: { summary, parameters: [idParam], requestBody: json(strict({ secretTtl }), false), responses: ok({ $ref: '#/components/schemas/LifecycleResult' }) },
});

export const OPENAPI = {
  openapi: '3.0.3',
  info: {
    title: 'device-ca admin API',
    version: '1',
    description:
      "Devices, certificates and the approval queue. Bearer token from `device-ca tokens create`, or a pinned operator client certificate. An owner-scoped token sees only its owner's devices: others are 404. Lists answer `{ items, next }`: pass `next` as `after` until it is null to see every row.",
  },
  servers: [{ url: '/api/v1' }],
  security: [{ bearer: [] }],
  paths: {
    '/openapi.json': {
      get: { summary: 'This document (no authentication)', security: [], responses: { '200': { description: 'OpenAPI 3 document', content: { 'application/json': { schema: { type: 'object' } } } } } },
    },
    '/devices': {
      get: {
        summary: 'List devices',
        parameters: [
          { name: 'idPrefix', in: 'query', description: 'only ids that start with this', schema: { type: 'string', pattern: '^[A-Za-z0-9._@-]{1,128}$' } },
          { name: 'owner', in: 'query', schema: { type: 'string' } },
          { name: 'state', in: 'query', schema: { $ref: '#/components/schemas/DeviceState' } },
          { name: 'label', in: 'query', description: 'only devices with exactly this label', schema: { type: 'string', minLength: 1, maxLength: 64 } },
          ...pageParams,
        ],
        responses: ok(page({ $ref: '#/components/schemas/Device' })),
      },
      post: {
        summary: 'Register a device; returns its one-time enrollment secret. Device ids are one namespace: a taken id is 409 "not available" whoever holds it',
        requestBody: json(
          strict({ id: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$' }, owner, label: { type: 'string', minLength: 1, maxLength: 64 }, secretTtl }, [
            'id',
          ]),
        ),
        responses: ok({ type: 'object', properties: { device: { $ref: '#/components/schemas/Device' }, secret: { type: 'string' }, secretExpiresAt: { type: 'string', format: 'date-time' } } }, '201'),
      },
    },
    '/devices/{id}': {
      get: { summary: 'A device with all its certificates (GET /certificates?device= pages through them)', parameters: [idParam], responses: ok({ $ref: '#/components/schemas/Device' }) },
    },
    '/devices/{id}/suspend': lifecycle('Suspend: certificates on hold (certificateHold)'),
    '/devices/{id}/resume': lifecycle('Resume: holds released'),
    '/devices/{id}/retire': lifecycle('Retire: revoke everything (cessationOfOperation), delete credentials; the id can never enroll again'),
    '/devices/{id}/transfer': {
      post: {
        summary: 'Operator only: release and claim in one step: revoke (affiliationChanged), new owner, new one-time secret',
        parameters: [idParam],
        requestBody: json(strict({ to: owner, secretTtl }, ['to'])),
        responses: ok({ $ref: '#/components/schemas/LifecycleResult' }),
      },
    },
    '/devices/{id}/release': {
      post: {
        summary:
          'The owner (or an operator) releases the device to a named new owner: certificates revoked (affiliationChanged), credentials dropped, state transferring until the new owner claims it',
        parameters: [idParam],
        requestBody: json(strict({ to: owner }, ['to'])),
        responses: ok({ $ref: '#/components/schemas/LifecycleResult' }),
      },
    },
    '/devices/{id}/commands': {
      post: {
        summary:
          "Operator only: a signed command for the device's agent (as `devices command`): retire (the device must be retired) or transfer (released to its new owner). It becomes the device's pending command, which its agent fetches over mTLS (GET /device-command?nonce=, signed over the agent's nonce) and reports on; also returned here (cms: base64 DER CMS) for delivery by file",
        parameters: [idParam],
        requestBody: json(strict({ command: { type: 'string', enum: ['retire', 'transfer'] } }, ['command'])),
        responses: ok(
          {
            type: 'object',
            properties: {
              command: { type: 'string', enum: ['retire', 'transfer'] },
              device: { type: 'string' },
              nonce: { type: 'string', description: "the command's nonce (16 bytes, hex): the audit records' handle on it" },
              issuedAt: { type: 'string', format: 'date-time' },
              expiresAt: { type: 'string', format: 'date-time' },
              newOwner: { type: 'string', description: 'transfer only' },
              cms: { type: 'string', format: 'byte', description: 'the command, DER CMS SignedData signed by the firmware signer CA (for `agent command --in`)' },
            },
          },
          '201',
        ),
      },
    },
    '/devices/{id}/claim': withSecret('The new owner named in the release (or an operator) claims a transferring device: it becomes the owner, and gets the new one-time secret (shown once)'),
    '/devices/{id}/cancel-release': withSecret(
      "The releasing owner (or an operator) cancels a release before the claim: the device stays its owner's, registered, with a new one-time secret (shown once)",
    ),
    '/devices/{id}/secret': withSecret(
      'A new one-time enrollment secret (shown once) for a registered or active device of your scope: earlier secrets stop working and pending approval requests are cancelled; certificates stay valid. Suspended, transferring and retired devices are 409',
    ),
    '/certificates': {
      get: {
        summary: 'List certificates',
        parameters: [{ name: 'device', in: 'query', schema: { type: 'string' } }, { name: 'status', in: 'query', schema: { type: 'string', enum: ['valid', 'revoked'] } }, ...pageParams],
        responses: ok(page({ $ref: '#/components/schemas/Certificate' })),
      },
    },
    '/certificates/{serial}': {
      get: {
        summary: 'One certificate, with PEM and its decoded fields (`decoded`: subject, issuer, validity, SANs, extended key usage as `keyUsage`, public key, SHA-256 fingerprint)',
        parameters: [serialParam],
        responses: ok({ $ref: '#/components/schemas/Certificate' }),
      },
    },
    '/certificates/{serial}/revoke': {
      post: {
        summary: 'Revoke one certificate (idempotent)',
        parameters: [serialParam],
        requestBody: json(strict({ reason: { $ref: '#/components/schemas/Reason' } }), false),
        responses: ok({ type: 'object', properties: { certificate: { $ref: '#/components/schemas/Certificate' }, changed: { type: 'boolean' } } }),
      },
    },
    '/requests': {
      get: {
        summary: 'Manual-approval queue (operator)',
        parameters: [{ name: 'status', in: 'query', schema: { type: 'string', enum: ['pending', 'approved', 'rejected', 'issued'] } }, ...pageParams],
        responses: ok(page({ $ref: '#/components/schemas/Request' })),
      },
    },
    '/audit': {
      get: {
        summary:
          "The audit log in chain order (operator only; an owner reads its devices' history on the device page). A call reads at most 5000 records to fill a page when `type` filters, so a page may be short with `next` set",
        parameters: [
          { name: 'device', in: 'query', description: 'records about this device id (or serial, request id)', schema: { type: 'string' } },
          { name: 'type', in: 'query', description: 'an event type or a prefix of one (`device.` for every device event)', schema: { type: 'string', pattern: '^[a-z0-9._-]{1,64}$' } },
          { name: 'from', in: 'query', description: 'records at or after this time (ISO 8601 with a zone)', schema: { type: 'string', format: 'date-time' } },
          { name: 'to', in: 'query', description: 'records before this time (exclusive)', schema: { type: 'string', format: 'date-time' } },
          ...pageParams,
        ],
        responses: ok(page({ $ref: '#/components/schemas/AuditRecord' })),
      },
    },
    '/audit/verify': {
      get: {
        summary:
          "Verify one chunk of the audit hash chain (operator only): the records after `after` (0: from the start), linked to `hash` (the `position.hash` the previous chunk returned). Repeat with `position` until `done`; `total` is the chain's length now",
        parameters: [
          { name: 'after', in: 'query', schema: { type: 'integer', minimum: 0, default: 0 } },
          { name: 'hash', in: 'query', description: 'required when after > 0', schema: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
          { name: 'limit', in: 'query', description: 'records to check in this chunk', schema: { type: 'integer', minimum: 1, maximum: 10000, default: 2000 } },
        ],
        responses: ok({
          type: 'object',
          properties: {
            ok: { type: 'boolean' },
            checked: { type: 'integer' },
            position: { type: 'object', properties: { seq: { type: 'integer' }, hash: { type: 'string' } } },
            done: { type: 'boolean' },
            total: { type: 'integer' },
            firstBad: { type: 'object', properties: { seq: { type: 'integer' }, problem: { type: 'string' } } },
          },
        }),
      },
    },
    '/requests/{id}/approve': { post: { summary: 'Approve a pending request (operator)', parameters: [idParam], requestBody: json(strict({}), false), responses: ok({ type: 'object' }) } },
    '/requests/{id}/reject': { post: { summary: 'Reject a pending request (operator)', parameters: [idParam], requestBody: json(strict({}), false), responses: ok({ type: 'object' }) } },
    '/firmware/{name}/status': {
      get: {
        summary: 'Which devices run which version of a firmware, from their RFC 4108 receipts: devices per version and per load error code over every device, and one page of device rows (operator)',
        parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }, ...pageParams],
        responses: ok({
          type: 'object',
          properties: {
            name: { type: 'string' },
            releases: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  version: { type: 'integer' },
                  releasedAt: { type: 'string' },
                  encrypted: { type: 'boolean' },
                  hardware: {
                    type: 'array',
                    description: 'the RFC 4108 target hardware modules the release is for (module type OID, optionally one serial number); empty: any hardware',
                    items: { type: 'object', required: ['type'], properties: { type: { type: 'string' }, serial: { type: 'string' } } },
                  },
                },
              },
            },
            versions: { type: 'array', description: 'over every device', items: { type: 'object', properties: { version: { type: 'integer' }, devices: { type: 'integer' } } } },
            summary: {
              type: 'object',
              description: 'over every device',
              properties: {
                devices: { type: 'integer', description: 'devices that posted a receipt' },
                loadErrors: { type: 'array', items: { type: 'object', properties: { code: { type: 'integer', description: 'RFC 4108 §4 error code' }, devices: { type: 'integer' } } } },
              },
            },
            devices: {
              description: 'this page of devices, by device id',
              type: 'array',
              items: {
                type: 'object',
                properties: { device: { type: 'string' }, version: { type: 'integer', nullable: true }, loadedAt: { type: 'string', nullable: true }, error: { type: 'object', nullable: true } },
              },
            },
            errors: {
              type: 'array',
              description: 'the devices of this page with a load error',
              items: {
                type: 'object',
                properties: { device: { type: 'string' }, version: { type: 'integer' }, code: { type: 'integer' }, vendorCode: { type: 'integer', nullable: true }, at: { type: 'string' } },
              },
            },
            next: { type: 'string', nullable: true, description: 'cursor for the following page of devices (pass as `after`), or null when there are no more' },
          },
        }),
      },
    },
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    responses: {
      Error: {
        description: 'Error',
        content: { 'application/json': { schema: { type: 'object', properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } } } } },
      },
    },
    schemas: {
      DeviceState: { type: 'string', enum: ['registered', 'active', 'suspended', 'transferring', 'retired'] },
      Reason: {
        type: 'string',
        enum: ['unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'certificateHold', 'privilegeWithdrawn', 'aACompromise'],
      },
      Device: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          owner: { type: 'string', nullable: true },
          label: { type: 'string', nullable: true },
          state: { $ref: '#/components/schemas/DeviceState' },
          pendingOwner: { type: 'string', nullable: true, description: 'the new owner a transferring device was released to' },
          createdAt: { type: 'string', format: 'date-time' },
          updatedAt: { type: 'string', format: 'date-time' },
          certificates: { type: 'array', description: 'GET /devices/{id} only; each with tpmAttested (its key was TPM-attested at issuance)', items: { $ref: '#/components/schemas/Certificate' } },
          aks: {
            type: 'array',
            description: 'GET /devices/{id} only: TPM attestation key bindings',
            items: {
              type: 'object',
              properties: {
                akName: { type: 'string' },
                status: { type: 'string', enum: ['pending', 'active', 'revoked'] },
                ekSha256: { type: 'string', description: 'SHA-256 of the EK certificate' },
                ekManufacturer: { type: 'string', nullable: true },
                ekModel: { type: 'string', nullable: true },
                registeredAt: { type: 'string', format: 'date-time' },
                activatedAt: { type: 'string', format: 'date-time', nullable: true },
                akCertSerial: { type: 'string', nullable: true, description: 'serial of the AK certificate issued at activation' },
                lastClock: {
                  type: 'object',
                  nullable: true,
                  description: 'TPM clockInfo of the newest accepted statement by this AK (the floor the next one must not go below); clock in milliseconds as decimal text (UINT64)',
                  properties: { resetCount: { type: 'integer' }, restartCount: { type: 'integer' }, clock: { type: 'string', pattern: '^[0-9]+$' } },
                },
              },
            },
          },
          command: {
            type: 'object',
            nullable: true,
            description:
              "GET /devices/{id} only: the device's last signed command and where it stands: pending (not fetched), fetched (its agent has it), done / failed (the agent's signed report, with its reason), expired (no report within its validity)",
            properties: {
              command: { type: 'string', enum: ['retire', 'transfer'] },
              nonce: { type: 'string' },
              issuedAt: { type: 'string', format: 'date-time' },
              expiresAt: { type: 'string', format: 'date-time' },
              newOwner: { type: 'string', nullable: true },
              state: { type: 'string', enum: ['pending', 'fetched', 'done', 'failed', 'expired'] },
              fetches: { type: 'integer' },
              lastFetchedAt: { type: 'string', format: 'date-time', nullable: true },
              reportedAt: { type: 'string', format: 'date-time', nullable: true },
              reason: { type: 'string', nullable: true },
              evicted: { type: 'array', nullable: true, items: { type: 'string' }, description: 'the TPM handles the agent says it evicted' },
            },
          },
          lastAttestation: {
            type: 'object',
            nullable: true,
            description: "GET /devices/{id} only: the latest verdict: 'attested' (serial of the certificate) or 'refused' (the failed check)",
            properties: { verdict: { type: 'string', enum: ['attested', 'refused'] }, at: { type: 'string', format: 'date-time' }, serial: { type: 'string' }, check: { type: 'string' } },
          },
        },
      },
      Certificate: {
        type: 'object',
        properties: {
          serial: { type: 'string' },
          deviceId: { type: 'string', nullable: true },
          issuer: { type: 'string' },
          subject: { type: 'string' },
          status: { type: 'string', enum: ['valid', 'revoked'] },
          revocationReason: { type: 'string', nullable: true },
          notBefore: { type: 'string' },
          notAfter: { type: 'string' },
          shard: { type: 'integer' },
          pem: { type: 'string' },
          decoded: {
            type: 'object',
            nullable: true,
            description: 'GET /certificates/{serial} only; null for bytes OpenSSL cannot read',
            properties: {
              subject: { type: 'string' },
              issuer: { type: 'string' },
              serialNumber: { type: 'string' },
              validFrom: { type: 'string', format: 'date-time' },
              validTo: { type: 'string', format: 'date-time' },
              subjectAltName: { type: 'string', nullable: true },
              keyUsage: { type: 'array', items: { type: 'string' }, description: 'extended key usage OIDs' },
              publicKey: { type: 'string' },
              fingerprintSha256: { type: 'string' },
              ca: { type: 'boolean' },
            },
          },
        },
      },
      Request: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          deviceId: { type: 'string' },
          label: { type: 'string' },
          operation: { type: 'string' },
          csrSha256: { type: 'string' },
          status: { type: 'string', enum: ['pending', 'approved', 'rejected', 'issued'] },
          certSerial: { type: 'string', nullable: true },
          createdAt: { type: 'string', format: 'date-time' },
          decidedAt: { type: 'string', format: 'date-time', nullable: true },
          decidedBy: { type: 'string', nullable: true },
        },
      },
      AuditRecord: {
        type: 'object',
        properties: {
          seq: { type: 'integer' },
          at: { type: 'string', format: 'date-time' },
          type: { type: 'string' },
          actor: { type: 'string' },
          subject: { type: 'string' },
          data: { type: 'object' },
          hash: { type: 'string' },
        },
      },
      LifecycleResult: {
        type: 'object',
        properties: {
          device: { $ref: '#/components/schemas/Device' },
          certificates: { type: 'array', items: { type: 'object', properties: { serial: { type: 'string' }, status: { type: 'string' }, reason: { type: 'string', nullable: true } } } },
          secret: { type: 'string', description: 'transfer, claim, cancel-release and secret only: the new one-time secret' },
          secretExpiresAt: { type: 'string', format: 'date-time' },
        },
      },
    },
  },
} as const;
