/**
 * This process's instance id: on every log line (`instance`) and as the traces'
 * `service.instance.id`, so a line or a span can be traced to one gateway among several.
 * `BFF_INSTANCE_ID` sets it (a pod name, say); otherwise host name and process id, which stay
 * apart for several processes on one host and for containers (whose host name is their id).
 */
import { hostname } from 'node:os';

export function instanceId(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.BFF_INSTANCE_ID?.trim();
  return configured || `${hostname()}:${process.pid}`;
}
