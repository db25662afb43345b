// The whole SPA side of the BFF pattern: same-origin fetches with the CSRF header, and
// navigations for login and logout. No token ever reaches this code.
const output = document.getElementById('output');
const status = document.getElementById('status');
const userLabel = document.getElementById('user');

function show(label, code, body) {
  status.textContent = `${label}: ${code}`;
  status.className = `status ${code >= 200 && code < 300 ? 'ok' : 'error'}`;
  output.textContent = typeof body === 'string' ? body : JSON.stringify(body, null, 2);
}

async function call(path, init = {}) {
  const response = await fetch(path, {
    ...init,
    credentials: 'same-origin',
    headers: { 'x-csrf': '1', accept: 'application/json', ...(init.headers || {}) },
  });
  const text = await response.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: show it as text
  }
  return { status: response.status, body };
}

async function refreshUser() {
  const { status: code, body } = await call('/auth/user');
  userLabel.textContent = code === 200 ? body.claims.name || body.sub : 'nobody';
  return { code, body };
}

document.getElementById('login').addEventListener('click', () => {
  const returnTo = window.location.pathname || '/';
  window.location.assign(`/auth/login?returnTo=${encodeURIComponent(returnTo)}`);
});

document.getElementById('call-api').addEventListener('click', async () => {
  const { status: code, body } = await call('/api/hello');
  show('GET /api/hello', code, body);
});

document.getElementById('whoami').addEventListener('click', async () => {
  const { code, body } = await refreshUser();
  show('GET /auth/user', code, body);
});

document.getElementById('logout').addEventListener('click', async () => {
  const { code, body } = await refreshUser();
  if (code !== 200) {
    show('Log out', code, 'Not logged in.');
    return;
  }
  // logoutUrl carries a value only this app can know, so a cross-site link cannot log anyone out.
  window.location.assign(body.logoutUrl);
});

refreshUser().catch((err) => show('GET /auth/user', 0, String(err)));
