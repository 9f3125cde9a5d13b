import { useCallback, useEffect, useState } from 'react';
import { createSchedule, listSchedules } from './api.js';

// Refresh often enough to see a new schedule become confirmed once its event comes back.
const REFRESH_MS = 3000;

function ScheduleForm({ onCreated }) {
  const [title, setTitle] = useState('');
  const [startsAt, setStartsAt] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await createSchedule({ title, startsAt: new Date(startsAt).toISOString() });
      setTitle('');
      setStartsAt('');
      onCreated();
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="schedule-form" onSubmit={submit}>
      <input
        aria-label="Title"
        placeholder="Title"
        value={title}
        onChange={(e) => setTitle(e.target.value)}
        required
        maxLength={200}
      />
      <input
        aria-label="Starts at"
        type="datetime-local"
        value={startsAt}
        onChange={(e) => setStartsAt(e.target.value)}
        required
      />
      <button type="submit" disabled={busy}>
        {busy ? 'Adding…' : 'Add schedule'}
      </button>
      {error && <p className="error">{error}</p>}
    </form>
  );
}

function ScheduleTable({ schedules }) {
  if (schedules.length === 0) {
    return <p>No schedules yet.</p>;
  }
  return (
    <table>
      <thead>
        <tr>
          <th>Title</th>
          <th>Starts at</th>
          <th>Confirmed</th>
        </tr>
      </thead>
      <tbody>
        {schedules.map((s) => (
          <tr key={s.id}>
            <td>{s.title}</td>
            <td>{new Date(s.startsAt).toLocaleString()}</td>
            <td>{s.confirmed ? 'yes' : 'pending'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export default function App() {
  const [schedules, setSchedules] = useState([]);
  const [error, setError] = useState(null);

  const refresh = useCallback(() => {
    listSchedules()
      .then((items) => {
        setSchedules(items);
        setError(null);
      })
      .catch((e) => setError(e.message));
  }, []);

  useEffect(() => {
    refresh();
    const timer = setInterval(refresh, REFRESH_MS);
    return () => clearInterval(timer);
  }, [refresh]);

  return (
    <main>
      <h1>Schedule Tracker</h1>
      <ScheduleForm onCreated={refresh} />
      {error && <p className="error">Could not load schedules: {error}</p>}
      <ScheduleTable schedules={schedules} />
    </main>
  );
}
