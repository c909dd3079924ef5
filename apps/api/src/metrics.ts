import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

/** Where the database query count comes from (the launcher service's own counter). */
export interface QuerySource {
  queries(): number;
}

export interface ApiMetrics {
  registry: Registry;
  requests: Counter<'route' | 'method' | 'status'>;
  duration: Histogram<'route'>;
  unlocks: Counter<'outcome'>;
  authFailures: Counter<'throttled'>;
  limitStoreErrors: Counter;
}

export function createMetrics(database?: QuerySource): ApiMetrics {
  const registry = new Registry();
  let counted = 0;
  new Counter({
    name: 'splinter_api_database_queries_total',
    help: 'Statements the API sent to PostgreSQL (LISTEN heartbeats aside)',
    registers: [registry],
    collect() {
      const now = database?.queries() ?? 0;
      this.inc(now - counted);
      counted = now;
    },
  });
  // Standard names (process_cpu_seconds_total, nodejs_heap_size_used_bytes, ...), as dashboards expect.
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    requests: new Counter({
      name: 'splinter_api_requests_total',
      help: 'HTTP requests answered, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'splinter_api_request_duration_seconds',
      help: 'Time to answer a request, by route',
      labelNames: ['route'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    unlocks: new Counter({
      name: 'splinter_api_unlocks_total',
      help: 'Unlock requests, by outcome (granted or the error code)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    authFailures: new Counter({
      name: 'splinter_api_auth_failures_total',
      help: 'Failed authentications, by whether they were past the failure budget (429) or not (401)',
      labelNames: ['throttled'],
      registers: [registry],
    }),
    limitStoreErrors: new Counter({
      name: 'splinter_api_limit_store_errors_total',
      help: 'Rate or failure limit checks that Redis did not answer in time (each let its request through)',
      registers: [registry],
    }),
  };
}
