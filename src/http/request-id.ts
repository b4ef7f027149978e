/**
 * CLIENT_REQUEST_ID: an X-Request-Id a client may choose, kept as the request's id in the log and the reply:
 * a plain token of at most 64 characters, so it cannot forge log fields or carry header syntax. Anything
 * else is replaced by a new id. One definition for express (request-context.ts) and the OCSP front
 * (http1-head.ts), so a request keeps or loses its id the same way on either path.
 */
export const CLIENT_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;
