/**
 * Time for tests: `sleep` for the few places that must let real time pass (a TTL running out in
 * a real Redis, a deadline in another process), and `ManualClock` for everything that takes an
 * injected `now()` (sessions, stores, the refresher), so timeouts are tested without waiting.
 */
import { setTimeout as delay } from 'node:timers/promises';

/** Resolves after `ms` milliseconds of real time. */
export function sleep(ms: number): Promise<void> {
  return delay(Math.max(0, ms));
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
