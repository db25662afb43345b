/**
 * How every fastify listener (public and admin) answers errors: the registry's JSON shape
 * (errors.ts), the private detail in the log only. The HTTP side of the error registry, kept
 * apart so that modules below the HTTP layer need nothing from fastify to throw a GatewayError.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_HEADERS, errorBody, errorLogFields, GatewayError, isGatewayError, markErrorAnswer } from '../errors.ts';

/** Any error a fastify handler throws, as a gateway error (4xx from fastify itself, e.g. bad JSON, stays a 4xx). */
export function toGatewayError(err: FastifyError | GatewayError): GatewayError {
  if (isGatewayError(err)) return err;
  const code = (err as FastifyError).code;
  const status = (err as FastifyError).statusCode ?? 500;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE' || status === 413) return new GatewayError('payload_too_large', { detail: code, cause: err });
  if (status >= 400 && status < 500)
    return new GatewayError('invalid_request', { detail: `${code ?? 'client error'}: ${err.message}`, cause: err });
  return new GatewayError('internal_error', { detail: err.message, cause: err });
}

/** Logs the private detail and answers with the public JSON error. */
export function sendError(request: FastifyRequest, reply: FastifyReply, error: GatewayError): void {
  if (error.status >= 500) request.log.warn(errorLogFields(error), 'request failed');
  else request.log.info(errorLogFields(error), 'request refused');
  markErrorAnswer(reply.raw, error.code);
  reply
    .code(error.status)
    .headers(ERROR_HEADERS)
    .send(errorBody(error.code, error.message, error.fields));
}

/**
 * The same not-found and error handlers on a listener: `{"error","message"}`, no-store, never
 * fastify's own shapes (which would carry `statusCode` and an error's raw message). Set before
 * any scope is registered: encapsulated scopes copy the handlers in force when they are created.
 * `beforeSend` adds what one listener needs on some errors (the public one clears the session
 * cookie on session_expired).
 */
export function setErrorHandlers(app: FastifyInstance, beforeSend?: (error: GatewayError, reply: FastifyReply) => void): void {
  app.setNotFoundHandler((request, reply) => sendError(request, reply, new GatewayError('not_found')));
  app.setErrorHandler((err: FastifyError | GatewayError, request, reply) => {
    const error = toGatewayError(err);
    beforeSend?.(error, reply);
    sendError(request, reply, error);
  });
}
