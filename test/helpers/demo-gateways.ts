import { Agent, request } from 'undici';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import { inArray, sql } from 'drizzle-orm';
import { rowsOf, type Database } from '../../src/db/index.js';
import { auditEvents } from '../../src/db/schema.js';
import { runCli } from '../../src/cli.js';
import type { DemoCredentials } from '../../src/demo/clients.js';
import { freshDatabaseUrl, TEST_AUDIT_HASH_KEY, TEST_KEY_ENCRYPTION_KEY } from './app.js';
import type { GatewayProcess } from './server.js';

// What the tests of gateways in processes of their own share (scaling, faults): a demo database
// on the test PostgreSQL, the demo's calls, and a load that records every answer.

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** The demo consumer's verify: a student who is enrolled. */
export const VERIFY = { subject: { name: '孙思远', id_number: '331022201110043439', school: '三门县第2初级中学' } };
export const PURPOSE = encodeURIComponent('就业补贴资格审核');

export async function cli(argv: string[], env: Record<string, string>) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { env, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s) });
  return { code, out: out.join(''), err: err.join('') };
}

export function basic(client: { client_id: string; client_secret: string }) {
  return `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`;
}

export async function tokenAt(gateway: { url: string }, client: { client_id: string; client_secret: string }) {
  return fetch(`${gateway.url}/oauth/token`, {
    method: 'POST',
    headers: { authorization: basic(client), 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
  });
}

export async function accessToken(gateway: { url: string }, client: { client_id: string; client_secret: string }): Promise<string> {
  const response = await tokenAt(gateway, client);
  if (response.status !== 200) throw new Error(`token: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { access_token: string }).access_token;
}

/** RFC 7009 revocation of `token` by the client it was issued to. */
export async function revokeAt(gateway: { url: string }, client: { client_id: string; client_secret: string }, token: string) {
  return fetch(`${gateway.url}/oauth/revoke`, {
    method: 'POST',
    headers: { authorization: basic(client), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }).toString(),
  });
}

/** The verify the fault tests send: one student, with a token and a purpose. */
function verifyRequest(gateway: { url: string }, token: string) {
  return {
    url: `${gateway.url}/v1/resources/330000-EDU-00001/verify`,
    init: {
      method: 'POST' as const,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-purpose': PURPOSE },
      body: JSON.stringify(VERIFY),
    },
  };
}

export async function verifyAt(gateway: { url: string }, token: string, signal?: AbortSignal) {
  const { url, init } = verifyRequest(gateway, token);
  return fetch(url, { ...init, ...(signal ? { signal } : {}) });
}

/**
 * The status of a verify on a connection of its own: with workers, the primary hands each new
 * connection to the next worker, so that asks on new connections reach every worker (asks on a
 * kept-alive connection all go to the one worker that took it).
 */
export async function verifyOnNewConnectionAt(gateway: { url: string }, token: string): Promise<number> {
  const { url, init } = verifyRequest(gateway, token);
  return statusOnNewConnection(url, init);
}

/** The status of one request on a connection of its own (see verifyOnNewConnectionAt). */
export async function statusOnNewConnection(url: string, options: Omit<Parameters<typeof request>[1] & object, 'dispatcher'> = {}): Promise<number> {
  const dispatcher = new Agent({ pipelining: 0 });
  try {
    const response = await request(url, { ...options, dispatcher });
    await response.body.dump();
    return response.statusCode;
  } finally {
    await dispatcher.close();
  }
}

export async function readAt(gateway: { url: string }, token: string, signal?: AbortSignal) {
  return fetch(`${gateway.url}/v1/resources/330000-PSB-00001/records/331022201110043439`, {
    headers: { authorization: `Bearer ${token}`, 'x-purpose': PURPOSE },
    ...(signal ? { signal } : {}),
  });
}

/** Poll until `check` holds; the milliseconds it took, or undefined past `ms`. */
export async function within(ms: number, check: () => Promise<boolean>, every = 25): Promise<number | undefined> {
  const started = Date.now();
  while (Date.now() - started <= ms) {
    if (await check().catch(() => false)) return Date.now() - started;
    await sleep(every);
  }
  return undefined;
}

/** A fresh database on the test server with the demo's records and clients, and the settings every gateway on it shares. */
export async function demoDatabase(t: Test, extra: Record<string, string> = {}) {
  const url = await freshDatabaseUrl('postgres');
  const file = join(t.testdir(), 'demo-credentials.json');
  const env = {
    DATABASE_URL: url,
    REDIS_URL,
    TOKEN_ISSUER: 'https://gateway.test.invalid',
    KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY,
    AUDIT_HASH_KEY: TEST_AUDIT_HASH_KEY,
    SUPERVISOR_AGENCIES: 'zj-dsj',
    DEMO_DATA: 'off',
    OPEN_PREBUILD: 'false',
    OPEN_DATA_DIR: join(t.testdir(), 'downloads'),
    MAX_EVENT_LOOP_DELAY_MS: '0',
    ...extra,
  };
  const seeded = await cli(['demo', 'seed', '--clients', '--credentials', file], { ...env, LOG_LEVEL: 'silent' });
  t.equal(seeded.code, 0, seeded.err);
  return { url, env, credentials: JSON.parse(readFileSync(file, 'utf8')) as DemoCredentials };
}

export async function stop(t: Test, gateway: GatewayProcess, what: string) {
  gateway.child.kill('SIGTERM');
  t.equal(await gateway.exited, 0, `${what} exits 0 on SIGTERM`);
}

/** One answer a load got: when it was asked, how long it took, and what came back. */
export interface Answer {
  kind: 'verify' | 'read';
  startedAt: number;
  ms: number;
  /** 0: no answer at all (the connection failed or the client gave up). */
  status: number;
  auditId: string | null;
  code: string | undefined;
  contentType: string;
  retryAfter: string | null;
  /** The error, when there was no answer. */
  failure?: string;
}

/**
 * Verify and read in turn from `concurrency` loops until stopped, every answer kept. A request that
 * takes longer than `giveUpMs` is abandoned and counted as having no answer; after a 503 a loop
 * waits `pauseAfter503Ms` (none by default).
 */
export function driveLoad(gateway: { url: string }, token: () => string, options: { concurrency?: number; giveUpMs?: number; pauseAfter503Ms?: number } = {}) {
  const answers: Answer[] = [];
  let running = true;
  const loops = Array.from({ length: options.concurrency ?? 6 }, async (_, index) => {
    let n = index;
    while (running) {
      const kind = n++ % 2 === 0 ? 'verify' : 'read';
      const startedAt = Date.now();
      const signal = AbortSignal.timeout(options.giveUpMs ?? 60_000);
      try {
        const response = await (kind === 'verify' ? verifyAt(gateway, token(), signal) : readAt(gateway, token(), signal));
        const contentType = response.headers.get('content-type') ?? '';
        const body = await response.text();
        let code: string | undefined;
        if (contentType.startsWith('application/problem+json')) code = (JSON.parse(body) as { code?: string }).code;
        answers.push({
          kind,
          startedAt,
          ms: Date.now() - startedAt,
          status: response.status,
          auditId: response.headers.get('x-audit-id'),
          code,
          contentType,
          retryAfter: response.headers.get('retry-after'),
        });
        // A client told to retry waits a little first, as a well-behaved one does.
        if (response.status === 503 && options.pauseAfter503Ms) await sleep(options.pauseAfter503Ms);
      } catch (error) {
        answers.push({ kind, startedAt, ms: Date.now() - startedAt, status: 0, auditId: null, code: undefined, contentType: '', retryAfter: null, failure: String((error as Error).cause ?? error) });
        // A gateway that is not listening: do not spin.
        await sleep(50);
      }
    }
  });
  return {
    answers,
    async stop(): Promise<Answer[]> {
      running = false;
      await Promise.all(loops);
      return answers;
    },
  };
}

/** How many of these audit record ids are committed in the trail. */
export async function committedRecords(database: Database, ids: string[]): Promise<number> {
  let found = 0;
  for (let i = 0; i < ids.length; i += 1000) {
    found += rowsOf<{ n: number }>(await database.db.execute(sql`select count(*)::int as n from ${auditEvents} where ${inArray(auditEvents.id, ids.slice(i, i + 1000))}`))[0]?.n ?? 0;
  }
  return found;
}
