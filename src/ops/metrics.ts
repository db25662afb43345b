/**
 * Prometheus metrics with the documented names (docs/http-interface.md#admin-listener). One Registry per gateway, so tests
 * can build several apps in one process without "metric already registered" clashes.
 */
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { STORE_OPS } from '../session/counted-store.ts';

export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'bff_requests_total',
    help: 'Requests answered, by route and status class.',
    labelNames: ['route', 'status'],
    registers: [this.registry],
  });
  /**
   * The gateway's own error answers, by error code (src/errors.ts: a fixed set) and route. The
   * upstream's own 4xx and 5xx are not counted here (they carry no gateway code): they show in
   * bff_requests_total's status class only.
   */
  readonly errors = new Counter({
    name: 'bff_errors_total',
    help: "Requests answered with one of the gateway's own errors, by error code and route.",
    labelNames: ['code', 'route'],
    registers: [this.registry],
  });
  readonly upstreamDuration = new Histogram({
    name: 'bff_upstream_duration_seconds',
    help: 'Time from forwarding a request to the upstream response headers.',
    labelNames: ['route'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly tokenRefresh = new Counter({
    name: 'bff_token_refresh_total',
    help: 'Access-token refresh outcomes.',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly refreshDuration = new Histogram({
    name: 'bff_token_refresh_duration_seconds',
    help: 'Duration of refresh_token grants at the IdP.',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly logins = new Counter({
    name: 'bff_logins_total',
    help: 'Completed login attempts.',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly logouts = new Counter({
    name: 'bff_logouts_total',
    help: 'Sessions ended, by kind.',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  readonly storeErrors = new Counter({
    name: 'bff_store_errors_total',
    help: 'Session store calls that failed because the store could not be reached, by operation group.',
    labelNames: ['op'],
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
    // Pre-create the documented label sets, so they are visible before the first event.
    for (const result of ['success', 'invalid_grant', 'error', 'coalesced']) this.tokenRefresh.inc({ result }, 0);
    for (const result of ['success', 'failure']) this.logins.inc({ result }, 0);
    for (const kind of ['rp', 'backchannel', 'admin', 'timeout']) this.logouts.inc({ kind }, 0);
    for (const op of STORE_OPS) this.storeErrors.inc({ op }, 0);
  }
}
