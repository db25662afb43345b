/**
 * The login parameters a browser may add to GET /auth/login (docs/frontend.md#login-parameters).
 * Only names listed in `oidc.loginParams` are read; every other query parameter is ignored and
 * never reaches the IdP, so `client_id`, `redirect_uri`, `scope`, `state`, `nonce` and the PKCE
 * challenge can only ever be the gateway's own. Values are checked here, because an IdP that
 * gets a malformed one answers with an error page the app never sees:
 *   prompt      space-separated none | login | consent | select_account; `none` stands alone
 *   max_age     a whole number of seconds (0 allowed: "log in again now")
 *   acr_values  space-separated values, each listed in `oidc.acrValues`
 *   login_hint  up to 256 printable characters
 *   ui_locales  space-separated language tags (`en`, `de-CH`)
 * A parameter given twice, or a bad value, is a 400 invalid_request naming the parameter.
 */
import type { GatewayConfig } from '../config/load.ts';
import { GatewayError } from '../errors.ts';

export interface LoginParams {
  prompt?: string;
  max_age?: string;
  acr_values?: string;
  login_hint?: string;
  ui_locales?: string;
}

const PROMPTS = new Set(['none', 'login', 'consent', 'select_account']);
const MAX_AGE = /^\d{1,9}$/;
const LOCALES = /^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*(?: [A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*){0,9}$/;
const HINT = /^[\x20-\x7e\u00a0-\uffff]{1,256}$/u;

function invalid(name: string, rule: string): never {
  throw new GatewayError('invalid_request', { message: `The login parameter ${name} ${rule}.`, detail: `bad login parameter ${name}` });
}

function words(value: string): string[] {
  return value.split(' ');
}

function checkPrompt(value: string): void {
  const list = words(value);
  if (list.some((word) => !PROMPTS.has(word)) || new Set(list).size !== list.length)
    invalid('prompt', 'must be none, login, consent or select_account (space-separated)');
  if (list.includes('none') && list.length > 1) invalid('prompt', 'cannot combine none with other values');
}

function checkAcr(value: string, allowed: readonly string[]): void {
  if (words(value).some((acr) => !allowed.includes(acr))) invalid('acr_values', 'names a value the gateway does not allow');
}

/** The allow-listed login parameters of a GET /auth/login query, validated. */
export function loginParamsFrom(query: URLSearchParams, oidc: GatewayConfig['oidc']): LoginParams {
  const params: LoginParams = {};
  for (const name of oidc.loginParams) {
    const values = query.getAll(name);
    if (values.length === 0) continue;
    if (values.length > 1) invalid(name, 'appears more than once');
    const value = values[0] as string;
    if (name === 'prompt') checkPrompt(value);
    else if (name === 'max_age' && !MAX_AGE.test(value)) invalid(name, 'must be a whole number of seconds');
    else if (name === 'acr_values') checkAcr(value, oidc.acrValues);
    else if (name === 'login_hint' && !HINT.test(value)) invalid(name, 'must be 1 to 256 printable characters');
    else if (name === 'ui_locales' && !LOCALES.test(value)) invalid(name, 'must be space-separated language tags');
    params[name] = name === 'max_age' ? String(Number(value)) : value;
  }
  return params;
}
