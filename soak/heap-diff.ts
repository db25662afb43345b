/**
 * Compares V8 heap snapshots (`.heapsnapshot`, e.g. from `npm run soak -- --heap-snapshots 90,330,570`)
 * by constructor: object count and self size per constructor in each snapshot, sorted by growth
 * from the first snapshot to the last. What a leak looks like: a constructor whose count grows
 * with requests or time between snapshots taken under the same load.
 *
 *   node --import tsx soak/heap-diff.ts early.heapsnapshot mid.heapsnapshot late.heapsnapshot [--top 40]
 *
 * Self sizes only (no dominator tree): enough to see what accumulates, not who holds it.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] }; node_count: number };
  nodes: number[];
  strings: string[];
}

interface Tally {
  count: number;
  size: number;
}

/** Count and self size per "type:name" (constructor name for objects, the kind for the rest). */
export function tally(file: string): { byName: Map<string, Tally>; total: Tally } {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const byName = new Map<string, Tally>();
  const total = { count: 0, size: 0 };
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt] as number] as string;
    const size = snap.nodes[i + sizeAt] as number;
    // Strings, code and arrays by kind: their names are their contents.
    const name =
      type === 'object' || type === 'closure' || type === 'native'
        ? `${type}:${snap.strings[snap.nodes[i + nameAt] as number]}`
        : `(${type})`;
    const entry = byName.get(name) ?? { count: 0, size: 0 };
    entry.count++;
    entry.size += size;
    byName.set(name, entry);
    total.count++;
    total.size += size;
  }
  return { byName, total };
}

function main(): void {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '40' } } });
  if (positionals.length < 2) throw new Error('usage: heap-diff.ts a.heapsnapshot b.heapsnapshot [c.heapsnapshot …] [--top n]');
  const tallies = positionals.map((file) => tally(file));
  const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(2);
  console.log(`| snapshot | nodes | self size (MB) |\n|---|---|---|`);
  positionals.forEach((file, i) => {
    const t = tallies[i]?.total as Tally;
    console.log(`| ${basename(file)} | ${t.count} | ${mb(t.size)} |`);
  });
  const first = tallies[0]?.byName as Map<string, Tally>;
  const last = tallies.at(-1)?.byName as Map<string, Tally>;
  const names = new Set([...first.keys(), ...last.keys()]);
  const rows = [...names].map((name) => ({
    name,
    growth: (last.get(name)?.size ?? 0) - (first.get(name)?.size ?? 0),
    countGrowth: (last.get(name)?.count ?? 0) - (first.get(name)?.count ?? 0),
  }));
  rows.sort((a, b) => Math.abs(b.growth) - Math.abs(a.growth));
  console.log(
    `\n| constructor | ${positionals.map((_, i) => `count ${i + 1}`).join(' | ')} | ${positionals.map((_, i) => `MB ${i + 1}`).join(' | ')} | Δ MB first→last |`,
  );
  console.log(`|---|${positionals.map(() => '---|').join('')}${positionals.map(() => '---|').join('')}---|`);
  for (const row of rows.slice(0, Number(values.top))) {
    const counts = tallies.map((t) => t.byName.get(row.name)?.count ?? 0);
    const sizes = tallies.map((t) => mb(t.byName.get(row.name)?.size ?? 0));
    console.log(`| ${row.name.replaceAll('|', '\\|').slice(0, 60)} | ${counts.join(' | ')} | ${sizes.join(' | ')} | ${mb(row.growth)} |`);
  }
}

main();
