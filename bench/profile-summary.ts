/**
 * Where the CPU of a `--cpu-prof` profile goes, as two markdown tables:
 *
 * - **by stage**: every sample is charged to the innermost frame of the gateway's own code
 *   (`src/…`) on its stack — the stage that caused the work, whatever library or Node internal
 *   ran it. Samples with no gateway frame are charged to the library or Node module at the top
 *   of the stack (fastify's, undici's, the event loop's own work).
 * - **by place**: self time by where the code lives (a package, a `src/` file, a Node module
 *   group, the garbage collector, native code).
 *
 * Idle samples are left out; shares are of busy time. With `--us-per-req N` (the CPU µs per
 * request the bench measured for the same run) each share is also shown in µs per request.
 *
 * Usage: node --import tsx bench/profile-summary.ts <file.cpuprofile> [--us-per-req N] [--top 25]
 *        [--detail N]  (for the N busiest stages, the places their time went)
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'us-per-req': { type: 'string', default: '' },
    top: { type: 'string', default: '25' },
    // For each of the N busiest stages, the places its time was spent in.
    detail: { type: 'string', default: '0' },
  },
});
const file = positionals[0];
if (!file) throw new Error('usage: profile-summary.ts <file.cpuprofile> [--us-per-req N] [--top N]');
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const usPerReq = opts['us-per-req'] ? Number(opts['us-per-req']) : undefined;
const top = Number(opts.top);

const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

/** `src/proxy/forward.ts`, `undici`, `node:http`…, or a pseudo-frame such as `(garbage collector)`. */
function place(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const nodeModule = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (nodeModule) return nodeModule[1] as string;
  const own = ownPath(url);
  if (own) return own;
  const internal = /^node:(?:internal\/)?(?:deps\/)?([^/]+)/.exec(url);
  if (internal) return `node:${(internal[1] as string).replace(/\.js$/, '')}`;
  return url;
}

/** The gateway's own module, as `proxy/handler` (from `src/…ts` under tsx or the built `dist/…js`). */
function ownPath(url: string): string | undefined {
  if (url.includes('node_modules')) return undefined;
  const own = /\/(?:src|dist)\/(.+)\.[cm]?[jt]s$/.exec(url);
  return own?.[1];
}

const isOwn = (frame: CallFrame) => ownPath(frame.url) !== undefined;

/** The innermost gateway frame on the stack, or the place of the top frame when there is none. */
function stageOf(id: number): string {
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const frame = (byId.get(at) as ProfileNode).callFrame;
    if (isOwn(frame)) return `${place(frame)} ${frame.functionName || '(anonymous)'}`;
  }
  return `outside the gateway's code: ${place((byId.get(id) as ProfileNode).callFrame)}`;
}

const stageTime = new Map<string, number>();
const stagePlaces = new Map<string, Map<string, number>>();
const placeTime = new Map<string, number>();
let busy = 0;
let idle = 0;
const stageCache = new Map<number, string>();
profile.samples.forEach((id, index) => {
  const delta = profile.timeDeltas[index] ?? 0;
  const frame = (byId.get(id) as ProfileNode).callFrame;
  if (frame.functionName === '(idle)') {
    idle += delta;
    return;
  }
  busy += delta;
  let stage = stageCache.get(id);
  if (stage === undefined) {
    stage = stageOf(id);
    stageCache.set(id, stage);
  }
  stageTime.set(stage, (stageTime.get(stage) ?? 0) + delta);
  const where = place(frame);
  placeTime.set(where, (placeTime.get(where) ?? 0) + delta);
  const places = stagePlaces.get(stage) ?? new Map<string, number>();
  places.set(where, (places.get(where) ?? 0) + delta);
  stagePlaces.set(stage, places);
});

function table(title: string, times: Map<string, number>): string {
  const rows = [...times.entries()].sort((a, b) => b[1] - a[1]);
  const shown = rows.slice(0, top);
  const rest = rows.slice(top).reduce((sum, [, time]) => sum + time, 0);
  const header = usPerReq
    ? `| ${title} | share of busy time | µs per request |\n|---|---:|---:|`
    : `| ${title} | share of busy time |\n|---|---:|`;
  const line = (name: string, time: number) => {
    const share = time / busy;
    return usPerReq
      ? `| ${name} | ${(share * 100).toFixed(1)} % | ${(share * usPerReq).toFixed(1)} |`
      : `| ${name} | ${(share * 100).toFixed(1)} % |`;
  };
  return [
    header,
    ...shown.map(([name, time]) => line(`\`${name}\``, time)),
    ...(rest > 0 ? [line(`${rows.length - top} more`, rest)] : []),
  ].join('\n');
}

console.log(
  `Profile ${file}: ${(busy / 1e6).toFixed(2)} s busy, ${(idle / 1e6).toFixed(2)} s idle (${((busy / (busy + idle)) * 100).toFixed(0)} % busy).\n`,
);
console.log(table('stage (innermost gateway frame)', stageTime));
console.log();
console.log(table('place (self time)', placeTime));

const detail = Number(opts.detail);
if (detail > 0) {
  const busiest = [...stageTime.entries()].sort((a, b) => b[1] - a[1]).slice(0, detail);
  for (const [stage, time] of busiest) {
    const places = [...(stagePlaces.get(stage) ?? new Map<string, number>()).entries()].sort((a, b) => b[1] - a[1]).slice(0, 6);
    const parts = places.map(([where, spent]) => `${where} ${((spent / time) * 100).toFixed(0)} %`);
    console.log(`\n- \`${stage}\`: ${parts.join(', ')}`);
  }
}
