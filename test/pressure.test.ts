import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { buildTestApp } from './helpers/app.js';
import { assertProblem } from './helpers/problem.js';

t.test('under event-loop pressure new requests get 503 with Retry-After, then service resumes', async (t) => {
  const app = await buildTestApp(t, 'pglite', { env: { MAX_EVENT_LOOP_DELAY_MS: '100' } });
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200);

  // Block the event loop well past the limit and past under-pressure's sampling interval.
  const until = Date.now() + 1500;
  while (Date.now() < until);
  await sleep(50);

  const shed = await app.inject({ url: '/healthz' });
  assertProblem(t, shed, 503, 'overloaded');
  t.equal(shed.headers['retry-after'], '10');

  let recovered = false;
  for (let attempt = 0; attempt < 40 && !recovered; attempt++) {
    await sleep(100);
    recovered = (await app.inject({ url: '/healthz' })).statusCode === 200;
  }
  t.ok(recovered, 'answers again once the loop is free');
});
