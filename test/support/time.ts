/**
 * Time for tests: `until`, the bounded wait for something to happen (poll a condition, fail
 * with a description when it does not come true in time); `sleep` for the few places that must
 * let real time pass (a TTL running out in a real Redis, a deadline in another process); and
 * `ManualClock` for everything that takes an injected `now()` (sessions, stores, the refresher),
 * so timeouts are tested without waiting.
 */
import { setTimeout as delay } from 'node:timers/promises';

/** Resolves after `ms` milliseconds of real time. */
export function sleep(ms: number): Promise<void> {
  return delay(Math.max(0, ms));
}

/** Polls `condition` every 25 ms until it holds; throws `what` (and the last value) after `timeoutMs`. */
export async function until<T>(condition: () => T | Promise<T>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await condition();
    if (last) return last;
    await sleep(25);
  }
  last = await condition();
  if (last) return last;
  throw new Error(`${what}: not reached within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
}

/** A clock that moves only when told to; `now` is bound, so it can be passed as `() => number`. */
export class ManualClock {
  private current: number;

  constructor(start = Date.UTC(2030, 0, 1)) {
    this.current = start;
  }

  readonly now = (): number => this.current;

  advance(ms: number): void {
    this.current += ms;
  }
}
