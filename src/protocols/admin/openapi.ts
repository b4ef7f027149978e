/** OPENAPI: the admin API's OpenAPI 3.0 document, served at /api/v1/openapi.json. */
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
const json = (schema: object) => ({ required: true, content: { 'application/json': { schema } } });
const lifecycle = (summary: string) => ({ post: { summary, parameters: [idParam], responses: ok({ $ref: '#/components/schemas/LifecycleResult' }) } });

export const OPENAPI = {
  openapi: '3.0.3',
  info: { title: 'device-ca admin API', version: '1', description: 'Devices, certificates and the approval queue. Bearer token from `device-ca tokens create`, or a pinned operator client certificate. An owner-scoped token sees only its owner\'s devices: others are 404. Lists answer `{ items, next }`: pass `next` as `after` until it is null to see every row.' },
  servers: [{ url: '/api/v1' }],
  security: [{ bearer: [] }],
  paths: {
    '/devices': {
      get: { summary: 'List devices', parameters: [{ name: 'owner', in: 'query', schema: { type: 'string' } }, { name: 'state', in: 'query', schema: { $ref: '#/components/schemas/DeviceState' } }, ...pageParams], responses: ok(page({ $ref: '#/components/schemas/Device' })) },
      post: { summary: 'Register a device; returns its one-time enrollment secret', requestBody: json({ type: 'object', required: ['id'], properties: { id: { type: 'string' }, owner: { type: 'string' }, label: { type: 'string' }, secretTtl: { type: 'string', example: '7d' } } }), responses: ok({ type: 'object', properties: { device: { $ref: '#/components/schemas/Device' }, secret: { type: 'string' }, secretExpiresAt: { type: 'string', format: 'date-time' } } }, '201') },
    },
    '/devices/{id}': { get: { summary: 'A device with all its certificates (GET /certificates?device= pages through them)', parameters: [idParam], responses: ok({ $ref: '#/components/schemas/Device' }) } },
    '/devices/{id}/suspend': lifecycle('Suspend: certificates on hold (certificateHold)'),
    '/devices/{id}/resume': lifecycle('Resume: holds released'),
    '/devices/{id}/retire': lifecycle('Retire: revoke everything (cessationOfOperation), delete credentials; the id can never enroll again'),
    '/devices/{id}/transfer': { post: { summary: 'Transfer to a new owner: revoke (affiliationChanged), new one-time secret', parameters: [idParam], requestBody: json({ type: 'object', required: ['to'], properties: { to: { type: 'string' }, secretTtl: { type: 'string' } } }), responses: ok({ $ref: '#/components/schemas/LifecycleResult' }) } },
    '/certificates': { get: { summary: 'List certificates', parameters: [{ name: 'device', in: 'query', schema: { type: 'string' } }, { name: 'status', in: 'query', schema: { type: 'string', enum: ['valid', 'revoked'] } }, ...pageParams], responses: ok(page({ $ref: '#/components/schemas/Certificate' })) } },
    '/certificates/{serial}': { get: { summary: 'One certificate, with PEM', parameters: [serialParam], responses: ok({ $ref: '#/components/schemas/Certificate' }) } },
    '/certificates/{serial}/revoke': { post: { summary: 'Revoke one certificate (idempotent)', parameters: [serialParam], requestBody: json({ type: 'object', properties: { reason: { $ref: '#/components/schemas/Reason' } } }), responses: ok({ type: 'object', properties: { certificate: { $ref: '#/components/schemas/Certificate' }, changed: { type: 'boolean' } } }) } },
    '/requests': { get: { summary: 'Manual-approval queue (operator)', parameters: [{ name: 'status', in: 'query', schema: { type: 'string', enum: ['pending', 'approved', 'rejected', 'issued'] } }, ...pageParams], responses: ok(page({ $ref: '#/components/schemas/Request' })) } },
    '/requests/{id}/approve': { post: { summary: 'Approve a pending request (operator)', parameters: [idParam], responses: ok({ type: 'object' }) } },
    '/requests/{id}/reject': { post: { summary: 'Reject a pending request (operator)', parameters: [idParam], responses: ok({ type: 'object' }) } },
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    responses: { Error: { description: 'Error', content: { 'application/json': { schema: { type: 'object', properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } } } } } } },
    schemas: {
      DeviceState: { type: 'string', enum: ['registered', 'active', 'suspended', 'retired'] },
      Reason: { type: 'string', enum: ['unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'certificateHold', 'privilegeWithdrawn', 'aACompromise'] },
      Device: { type: 'object', properties: { id: { type: 'string' }, owner: { type: 'string', nullable: true }, label: { type: 'string', nullable: true }, state: { $ref: '#/components/schemas/DeviceState' }, createdAt: { type: 'string', format: 'date-time' }, updatedAt: { type: 'string', format: 'date-time' } } },
      Certificate: { type: 'object', properties: { serial: { type: 'string' }, deviceId: { type: 'string', nullable: true }, issuer: { type: 'string' }, subject: { type: 'string' }, status: { type: 'string', enum: ['valid', 'revoked'] }, revocationReason: { type: 'string', nullable: true }, notBefore: { type: 'string' }, notAfter: { type: 'string' }, shard: { type: 'integer' }, pem: { type: 'string' } } },
      Request: { type: 'object', properties: { id: { type: 'string' }, deviceId: { type: 'string' }, label: { type: 'string' }, operation: { type: 'string' }, csrSha256: { type: 'string' }, status: { type: 'string', enum: ['pending', 'approved', 'rejected', 'issued'] }, certSerial: { type: 'string', nullable: true }, createdAt: { type: 'string', format: 'date-time' }, decidedAt: { type: 'string', format: 'date-time', nullable: true }, decidedBy: { type: 'string', nullable: true } } },
      LifecycleResult: { type: 'object', properties: { device: { $ref: '#/components/schemas/Device' }, certificates: { type: 'array', items: { type: 'object', properties: { serial: { type: 'string' }, status: { type: 'string' }, reason: { type: 'string', nullable: true } } } }, secret: { type: 'string', description: 'transfer only' } } },
    },
  },
} as const;
