/**
 * deploy/: the Prometheus alert rules pass `promtool check rules` and their unit tests
 * (`promtool test rules`), and every metric the rules and the Grafana dashboard query is one the
 * gateway exposes on /metrics, with the label values they match on.
 *
 * promtool comes from Debian's `prometheus` package, which .ci/run installs. Without it the two
 * promtool checks fail, saying how to install it (like every other component the suite needs);
 * the checks that need no promtool still run.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { ERRORS } from '../../src/errors.ts';
import { Metrics } from '../../src/ops/metrics.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const RULES = join(ROOT, 'deploy/prometheus/bff-gateway.rules.yaml');
const RULE_TESTS = join(ROOT, 'deploy/prometheus/bff-gateway.rules.test.yaml');
const DASHBOARD = join(ROOT, 'deploy/grafana/bff-gateway.json');

function findPromtool(): string | undefined {
  for (const candidate of ['promtool', '/usr/bin/promtool']) {
    const probe = spawnSync(candidate, ['--version'], { encoding: 'utf8' });
    if (!probe.error && probe.status === 0) return candidate;
  }
  return undefined;
}

const promtool = findPromtool();
const MISSING =
  "promtool not found: install Debian's `prometheus` package (`apt-get install -y --no-install-recommends prometheus`), as .ci/run does";
if (!promtool && !process.env.CI) console.warn(`alert-rules.test.ts: the promtool checks will fail. ${MISSING}`);

function runPromtool(args: string[]): { status: number | null; output: string } {
  const result = spawnSync(promtool as string, args, { cwd: dirname(RULES), encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const rules = (parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ name: string; rules: Rule[] }> }).groups.flatMap((g) => g.rules);

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: Array<{ expr: string; refId: string }>;
}
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
  uid: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; definition?: string }> };
};
const dashboardExprs = [
  ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
  ...dashboard.templating.list.flatMap((v) => (v.definition ? [v.definition] : [])),
];

/** What the admin listener's /metrics serves: the gateway's registry with process metrics. */
async function exposition(): Promise<string> {
  const metrics = new Metrics({ processMetrics: true });
  // One observation of each labelled series, as a running gateway has after some traffic.
  metrics.requests.inc({ route: '/api', status: '2xx' });
  metrics.errors.inc({ code: 'unauthenticated', route: '/api' });
  metrics.upstreamDuration.observe({ route: '/api' }, 0.01);
  metrics.refreshDuration.observe(0.05);
  return metrics.registry.metrics();
}

/** Sample names and label values present in an exposition. */
function samples(text: string): { names: Set<string>; labelValues: Map<string, Set<string>> } {
  const names = new Set<string>();
  const labelValues = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (!name) continue;
    names.add(name);
    for (const [, label, value] of line.matchAll(/(\w+)="([^"]*)"/g)) {
      const key = `${name}:${label}`;
      if (!labelValues.has(key)) labelValues.set(key, new Set());
      labelValues.get(key)?.add(value as string);
    }
  }
  return { names, labelValues };
}

/** Gateway metric names (bff_, process_, nodejs_) an expression refers to. */
function metricNames(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\b(?:bff|process|nodejs)_[a-zA-Z0-9_]+/g)].map((m) => m[0]))];
}

/** Equality matchers on a metric in an expression: `name{a="x", b=~"y|z"}` -> [[a, [x]], [b, [y, z]]]. */
function matchers(expr: string): Array<{ metric: string; label: string; values: string[] }> {
  const found: Array<{ metric: string; label: string; values: string[] }> = [];
  for (const [, metric, body] of expr.matchAll(/\b((?:bff|process|nodejs)_[a-zA-Z0-9_]+)\{([^}]*)\}/g)) {
    for (const [, label, op, value] of (body as string).matchAll(/(\w+)\s*(=~|=)\s*"([^"]*)"/g)) {
      if (label === 'job' || label === 'instance' || label === 'le') continue;
      found.push({
        metric: metric as string,
        label: label as string,
        values: op === '=~' ? (value as string).split('|') : [value as string],
      });
    }
  }
  return found;
}

// Without promtool these fail with MISSING (how to install it), like every other component the
// suite needs (redis-server, Chromium, nginx): .ci/run installs it.
const withPromtool = test;

describe('Prometheus alert rules (deploy/prometheus)', () => {
  withPromtool('promtool check rules accepts the rule file', () => {
    if (!promtool) expect.fail(MISSING);
    const { status, output } = runPromtool(['check', 'rules', RULES]);
    expect(output).toMatch(new RegExp(`SUCCESS: ${rules.length} rules found`));
    expect(status, output).toBe(0);
  });

  withPromtool('promtool test rules: the alerts fire and stay quiet as specified', () => {
    if (!promtool) expect.fail(MISSING);
    const { status, output } = runPromtool(['test', 'rules', RULE_TESTS]);
    expect(status, output).toBe(0);
    expect(output).toContain('SUCCESS');
  });

  test('every alert has a severity, a summary and a description', () => {
    expect(rules.length).toBeGreaterThan(5);
    for (const rule of rules) {
      expect(rule.alert, rule.expr).toMatch(/^BffGateway[A-Z]\w+$/);
      expect(['critical', 'warning']).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.description, rule.alert).toBeTruthy();
    }
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
  });

  test('the rules and the dashboard query only metrics and label values the gateway exposes', async () => {
    const { names, labelValues } = samples(await exposition());
    const exprs = [...rules.map((r) => r.expr), ...dashboardExprs];
    const used = new Set(exprs.flatMap(metricNames));
    // The dashboard and rules cover the gateway's own metrics, all of them.
    for (const own of [
      'bff_requests_total',
      'bff_upstream_duration_seconds_bucket',
      'bff_token_refresh_total',
      'bff_token_refresh_duration_seconds_bucket',
      'bff_logins_total',
      'bff_logouts_total',
      'bff_store_errors_total',
      'bff_errors_total',
    ]) {
      expect(used, own).toContain(own);
    }
    for (const name of used) expect(names, `${name} is not in /metrics`).toContain(name);

    const statusClasses = new Set(['1xx', '2xx', '3xx', '4xx', '5xx']);
    // bff_errors_total's codes are the error registry's (src/errors.ts); a running gateway has some.
    const errorCodes = new Set(Object.keys(ERRORS));
    for (const { metric, label, values } of exprs.flatMap(matchers)) {
      for (const value of values) {
        if (metric === 'bff_requests_total' && label === 'status') expect(statusClasses, value).toContain(value);
        else if (metric === 'bff_errors_total' && label === 'code') expect(errorCodes, value).toContain(value);
        else expect(labelValues.get(`${metric}:${label}`), `${metric}{${label}="${value}"}`).toContain(value);
      }
    }
  });

  test('the dashboard is importable: unique panel ids, a query per panel, no overlapping panels', () => {
    expect(dashboard.uid).toBe('bff-gateway');
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const panel of dashboard.panels) {
      if (panel.type !== 'row') expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      const { h, w, x, y } = panel.gridPos;
      expect(x + w, panel.title).toBeLessThanOrEqual(24);
      for (let row = y; row < y + h; row++) {
        for (let col = x; col < x + w; col++) {
          const cell = `${row}:${col}`;
          expect(cells.has(cell), `${panel.title} overlaps another panel at ${cell}`).toBe(false);
          cells.add(cell);
        }
      }
    }
  });
});
