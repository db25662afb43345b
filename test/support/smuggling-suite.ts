/**
 * One smuggling test file: a stage of its own (smuggling-harness.ts), then every case through
 * every attacker identity, each round checked against the invariants.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { innerRequest, type SmugglingCase } from './smuggling-cases.ts';
import { IDENTITY_NAMES, startSmugglingStage, violations, type SmugglingStage } from './smuggling-harness.ts';

export function smugglingSuite(cases: readonly SmugglingCase[]): void {
  let stage: SmugglingStage;

  beforeAll(async () => {
    stage = await startSmugglingStage();
  }, 60_000);

  afterAll(() => stage?.close());

  describe.each(IDENTITY_NAMES)('through the %s', (identityName) => {
    it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, smuggling) => {
      const round = await stage.attack(smuggling.build({ ...stage.target(identityName), inner: innerRequest(stage.victimRequestLength) }));
      expect(violations(round, stage.victimToken)).toEqual([]);
    });
  });
}
