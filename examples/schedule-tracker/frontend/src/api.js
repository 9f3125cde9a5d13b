// The backend is always reached through the same origin under /api (NGINX proxies it).
const BASE = '/api/schedules';

async function json(response) {
  if (!response.ok) {
    const text = await response.text();
    throw new Error(`${response.status} ${response.statusText}: ${text.slice(0, 200)}`);
  }
  return response.json();
}

export function listSchedules() {
  return fetch(BASE, { headers: { Accept: 'application/json' } }).then(json);
}

export function createSchedule({ title, description, startsAt }) {
  return fetch(BASE, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ title, description, startsAt }),
  }).then(json);
}
