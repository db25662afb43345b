/**
 * CPU time of processes from /proc/<pid>/stat (utime + stime, all threads of the process), for
 * "CPU µs per request" figures. A group is a root process and every descendant alive at the
 * moment of the snapshot (nginx's and Apache's workers are children of their master); a
 * process that exits between two snapshots takes its CPU time with it, so the group's pid set
 * is kept with each snapshot and a changed set is reported.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticks: number | undefined;

/** Clock ticks per second (`getconf CLK_TCK`, 100 on Linux). */
export function clockTicks(): number {
  ticks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return ticks;
}

interface Stat {
  pid: number;
  ppid: number;
  cpu: number;
}

function readStat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may contain spaces: fields count from the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { pid, ppid: Number(fields[1]), cpu: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined;
  }
}

function allStats(): Stat[] {
  const stats: Stat[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(Number(name));
    if (stat) stats.push(stat);
  }
  return stats;
}

export interface GroupSnapshot {
  /** CPU ticks per pid of the group. */
  perPid: Map<number, number>;
}

/**
 * One snapshot of several groups, each named, each given by its root pids; a root written as
 * a negative number counts that process alone, without its descendants (e.g. the bench
 * process itself, whose children are everything under test).
 */
export function snapshot(groups: Record<string, number[]>): Record<string, GroupSnapshot> {
  const stats = allStats();
  const children = new Map<number, Stat[]>();
  for (const stat of stats) {
    const list = children.get(stat.ppid);
    if (list) list.push(stat);
    else children.set(stat.ppid, [stat]);
  }
  const byPid = new Map(stats.map((stat) => [stat.pid, stat]));
  const result: Record<string, GroupSnapshot> = {};
  for (const [name, roots] of Object.entries(groups)) {
    const perPid = new Map<number, number>();
    for (const root of roots.filter((pid) => pid < 0 && byPid.has(-pid))) perPid.set(-root, (byPid.get(-root) as Stat).cpu);
    const queue = roots.filter((pid) => pid > 0 && byPid.has(pid));
    while (queue.length) {
      const pid = queue.shift() as number;
      if (perPid.has(pid)) continue;
      perPid.set(pid, (byPid.get(pid) as Stat).cpu);
      for (const child of children.get(pid) ?? []) queue.push(child.pid);
    }
    result[name] = { perPid };
  }
  return result;
}

export interface GroupDelta {
  ticks: number;
  pids: number;
  /** The set of processes changed between the snapshots (CPU of an exited one is lost). */
  changed: boolean;
}

export function delta(before: GroupSnapshot, after: GroupSnapshot): GroupDelta {
  let total = 0;
  for (const [pid, cpu] of after.perPid) total += cpu - (before.perPid.get(pid) ?? 0);
  const changed = before.perPid.size !== after.perPid.size || [...before.perPid.keys()].some((pid) => !after.perPid.has(pid));
  return { ticks: total, pids: after.perPid.size, changed };
}
