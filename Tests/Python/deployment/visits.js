// k6: whole visits through the gateway, as steady load for the zero-downtime test.
// Every request must answer 2xx (http_req_failed counts anything else); every visit that was
// registered must end COMPLETED within VISIT_SECONDS. Tokens and the address come from the test.
import http from 'k6/http';
import { check, fail, sleep } from 'k6';
import { Counter } from 'k6/metrics';

const base = __ENV.BASE_URL;
const tokens = { desk: __ENV.DESK_TOKEN, doctor: __ENV.DOCTOR_TOKEN, examiner: __ENV.EXAMINER_TOKEN };
const deadlineSeconds = Number(__ENV.VISIT_SECONDS || 60);

const started = new Counter('visits_started');
const completed = new Counter('visits_completed');

export const options = {
  scenarios: {
    visits: {
      executor: 'constant-vus',
      vus: Number(__ENV.VUS || 4),
      duration: __ENV.DURATION || '60s',
      // A visit under way when the time is up is finished, not dropped.
      gracefulStop: `${deadlineSeconds + 10}s`,
    },
  },
  thresholds: { http_req_failed: ['rate==0'] },
};

function params(role, name, key) {
  const headers = { Authorization: `Bearer ${tokens[role]}`, 'Content-Type': 'application/json' };
  // As the screens do: a client that resends after a lost answer gets the first answer back.
  if (key) headers['Idempotency-Key'] = key;
  return { headers, tags: { name }, timeout: '10s' };
}

function post(role, path, name, body) {
  const key = `k6-${__VU}-${__ITER}-${name}-${Date.now()}`;
  const response = http.post(base + path, JSON.stringify(body), params(role, name, key));
  if (!check(response, { [`${name} 2xx`]: (r) => r.status >= 200 && r.status < 300 })) {
    fail(`${name}: ${response.status} ${response.body}`);
  }
  return response.json();
}

// Polls until `condition` holds on a 2xx answer; gives the visit up after the deadline.
function until(role, path, name, condition, deadline) {
  for (;;) {
    const response = http.get(base + path, params(role, name));
    if (!check(response, { [`${name} 2xx`]: (r) => r.status >= 200 && r.status < 300 })) {
      console.warn(`${name}: ${response.status} ${String(response.body).slice(0, 200)}`);  // for the test's message
    }
    if (response.status === 200 && condition(response.json())) return response.json();
    if (Date.now() > deadline) fail(`${name}: not reached within ${deadlineSeconds} s (${response.status} ${response.body})`);
    sleep(0.1);
  }
}

export default function () {
  const deadline = Date.now() + deadlineSeconds * 1000;
  const reception = post('desk', '/receptions', 'register', { patientName: `무중단${__VU}-${__ITER}`, department: '내과' });
  started.add(1);
  const worklist = until('doctor', `/diagnoses?receptionId=${reception.id}`, 'worklist', (b) => b.items.length > 0, deadline);
  const diagnosis = worklist.items[0].id;
  post('doctor', `/diagnoses/${diagnosis}/prescriptions`, 'prescribe', { examinations: [{ code: 'CBC', name: '혈액검사' }] });
  const exams = until('examiner', `/examinations?diagnosisId=${diagnosis}`, 'exams', (b) => b.items.length > 0, deadline);
  post('examiner', `/examinations/${exams.items[0].id}/perform`, 'perform', { result: '정상' });
  until('doctor', `/diagnoses/${diagnosis}`, 'exam-done', (b) => b.status === 'EXAM_DONE', deadline);
  post('doctor', `/diagnoses/${diagnosis}/complete`, 'complete', { note: '이상 없음' });
  until('desk', `/receptions/${reception.id}`, 'completed', (b) => b.status === 'COMPLETED', deadline);
  // And the desk's board (the read model) shows it completed.
  until('desk', `/patientManagements/${reception.id}`, 'board', (b) => b.status === 'COMPLETED', deadline);
  completed.add(1);
}
