/**
 * nginx for tests: a main configuration file that keeps everything in a temporary `dir`
 * (pid, logs, temp paths; no root paths, runs in the foreground), around the given `http`
 * block content. The caller creates `dir`; `nginxTempDirs` makes the temp paths it names.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const TEMP_PATHS = ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'];

export function nginxTempDirs(dir: string): void {
  for (const sub of TEMP_PATHS) mkdirSync(join(dir, sub), { recursive: true });
}

export function nginxMainConf(dir: string, options: { workerConnections: number; accessLog: boolean; http: string }): string {
  return `
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${options.workerConnections}; }
http {
  access_log ${options.accessLog ? `${dir}/access.log` : 'off'};
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
${options.http}
}
`;
}
