import { SplinterError } from '@splintertree/errors';
import { Redis } from 'ioredis';
import { RateLimiter } from './rate-limit.js';

/** Token buckets keyed by caller (see RateLimiter): `take` answers 0 if allowed, else the seconds to wait. */
export interface Buckets {
  take(key: string): number | Promise<number>;
  close(): void;
}

/** Where the buckets live: this process's memory (the default), or Redis, shared by every replica. */
export interface LimitStore {
  buckets(name: string, rate: number, burst: number): Buckets;
  close(): Promise<void>;
}

export function memoryLimitStore(): LimitStore {
  return {
    buckets: (_name, rate, burst) => new RateLimiter(rate, burst),
    close: async () => {},
  };
}

// One round trip per request: refill by Redis's own clock (the same for every replica), take one if
// there is one, and let an idle bucket expire once it would be full again.
const TAKE = `
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(held[1])
local at = tonumber(held[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) / 1000 * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
`;

type TakeRedis = Redis & { splinterTake(key: string, rate: number, burst: number): Promise<number> };

/**
 * Buckets in Redis, under `prefix`, so that every replica charges the same ones. Redis answering
 * slowly or not at all must not stop the game: a command that fails or takes over `timeoutMs` lets
 * its request through and is reported through `onError` (counted there, as
 * splinter_api_limit_store_errors_total); the connection is retried in the background. An
 * unreachable Redis at start-up is a configuration error.
 */
export async function redisLimitStore(options: {
  url: string;
  prefix: string;
  timeoutMs?: number;
  onError?: (error: Error) => void;
}): Promise<LimitStore> {
  const redis = new Redis(options.url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: options.timeoutMs ?? 250,
    connectTimeout: 2000,
    keyPrefix: options.prefix,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  }) as TakeRedis;
  redis.on('error', () => {
    // Reported per command below; the connection is retried by retryStrategy.
  });
  redis.defineCommand('splinterTake', { numberOfKeys: 1, lua: TAKE });
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    redis.disconnect();
    throw new SplinterError(
      'INVALID_CONFIG',
      `cannot reach Redis at ${redactUrl(options.url)} for shared limits: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return {
    buckets: (name, rate, burst) => ({
      async take(key: string): Promise<number> {
        try {
          return Number(await redis.splinterTake(`${name}:${key}`, rate, burst));
        } catch (error) {
          options.onError?.(error as Error);
          return 0;
        }
      },
      close() {},
    }),
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'the configured URL';
  }
}
