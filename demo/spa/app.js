// The SPA side of the BFF pattern, on the package's client module (/bff-client.js): fetches
// with the CSRF header, navigations for login, step-up and logout. No token ever reaches this code.
import { createBffClient } from '/bff-client.js';

const bff = createBffClient();
const output = document.getElementById('output');
const status = document.getElementById('status');
const userLabel = document.getElementById('user');
const acrLabel = document.getElementById('acr');
const stepUp = document.getElementById('step-up');
const sessionList = document.getElementById('sessions');
let pendingStepUp;

function show(label, code, body) {
  status.textContent = `${label}: ${code}`;
  status.className = `status ${code >= 200 && code < 300 ? 'ok' : 'error'}`;
  output.textContent = typeof body === 'string' ? body : JSON.stringify(body, null, 2);
}

async function call(label, path) {
  const response = await bff.fetch(path, { headers: { accept: 'application/json' } });
  const text = await response.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: show it as text
  }
  show(label, response.status, body);
  return { code: response.status, body };
}

async function refreshUser() {
  const user = await bff.user();
  userLabel.textContent = user ? user.claims.name || user.sub : 'nobody';
  acrLabel.textContent = user?.acr ?? '-';
  return user;
}

// The gateway asks for a stronger login: offer it, the user decides.
bff.addEventListener('stepup', (event) => {
  pendingStepUp = event.detail.loginUrl;
  stepUp.hidden = false;
});
// Apps usually let the client navigate to the login when the session has ended; the demo shows
// the 401 instead, so what happened stays visible.
bff.addEventListener('sessionend', (event) => event.preventDefault());
bff.addEventListener('expiring', (event) => {
  show('Session', 200, `The session ends at ${event.detail.expiresAt.toLocaleTimeString()} (${event.detail.reason}).`);
});

document.getElementById('login').addEventListener('click', () => bff.login());
document.getElementById('silent').addEventListener('click', () => bff.checkSession());
document.getElementById('call-api').addEventListener('click', () => call('GET /api/hello', '/api/hello'));
document.getElementById('sensitive').addEventListener('click', () => call('GET /api/sensitive', '/api/sensitive'));
document.getElementById('step-up-go').addEventListener('click', () => bff.stepUp(pendingStepUp));

document.getElementById('whoami').addEventListener('click', async () => {
  const user = await refreshUser();
  show('GET /auth/user', user ? 200 : 401, user ?? 'Not logged in.');
});

async function listSessions() {
  const sessions = await bff.sessions();
  sessionList.replaceChildren(
    ...sessions.map((session) => {
      const item = document.createElement('li');
      item.textContent = `${session.device}, since ${new Date(session.createdAt).toLocaleString()}${session.current ? ' (this one)' : ''}`;
      return item;
    }),
  );
  show('GET /auth/sessions', 200, sessions);
}

document
  .getElementById('list-sessions')
  .addEventListener('click', () => listSessions().catch((err) => show('GET /auth/sessions', err.status ?? 0, err.message)));
document.getElementById('end-others').addEventListener('click', async () => {
  try {
    const ended = await bff.endOtherSessions();
    show('Log out other devices', 200, `${ended} other session(s) ended.`);
  } catch (err) {
    show('Log out other devices', err.status ?? 0, err.message);
  }
});
document.getElementById('logout').addEventListener('click', () => bff.logout());

const loginError = bff.loginError();
if (loginError) show('Login', 400, `The login came back with error=${loginError}`);
refreshUser().catch((err) => show('GET /auth/user', 0, String(err)));
