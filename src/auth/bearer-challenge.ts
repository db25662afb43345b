/**
 * RFC 9470 (OAuth 2.0 Step Up Authentication Challenge): a resource server that wants a
 * stronger or more recent login answers 401 with
 *   WWW-Authenticate: Bearer error="insufficient_user_authentication", acr_values="mfa", max_age=300
 * This reads such a challenge (Bearer or DPoP scheme, quoted or token values, any parameter
 * order). Anything else — another error, a malformed header — is not a step-up challenge, and
 * the upstream's 401 passes through as it is.
 */
export interface StepUpChallenge {
  acrValues?: string[];
  maxAgeS?: number;
}

const SCHEME = /(?:^|,)\s*(?:bearer|dpop)\s+/gi;
const PARAM = /\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*(?:,|$)/y;

/** The auth-params of the first Bearer/DPoP challenge that has an `error` parameter. */
function challenges(header: string): Map<string, string>[] {
  const found: Map<string, string>[] = [];
  for (const match of header.matchAll(SCHEME)) {
    const params = new Map<string, string>();
    PARAM.lastIndex = (match.index ?? 0) + match[0].length;
    for (let param = PARAM.exec(header); param; param = PARAM.exec(header)) {
      const name = (param[1] as string).toLowerCase();
      if (!params.has(name)) params.set(name, param[2] !== undefined ? param[2].replace(/\\(.)/g, '$1') : (param[3] as string));
    }
    found.push(params);
  }
  return found;
}

export function stepUpChallenge(header: string | string[] | undefined): StepUpChallenge | undefined {
  const text = [header ?? []].flat().join(', ');
  if (!/insufficient_user_authentication/i.test(text)) return undefined;
  const params = challenges(text).find((candidate) => candidate.get('error') === 'insufficient_user_authentication');
  if (!params) return undefined;
  const challenge: StepUpChallenge = {};
  const acr = params.get('acr_values')?.split(' ').filter(Boolean);
  if (acr && acr.length > 0) challenge.acrValues = acr;
  const maxAge = params.get('max_age');
  if (maxAge !== undefined && /^\d{1,9}$/.test(maxAge)) challenge.maxAgeS = Number(maxAge);
  return challenge;
}
