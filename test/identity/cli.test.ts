import { existsSync, readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import pino from 'pino';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose';
import type { App } from '../../src/app.js';
import { openGateway } from '../../src/startup.js';
import { runCli } from '../../src/cli.js';
import { loadConfig } from '../../src/config.js';
import { TEST_KEY_ENCRYPTION_KEY } from '../helpers/app.js';
import { assertProblem } from '../helpers/problem.js';

/** What the CLI shows of a client: never a secret (except once, on creation or rotation), never a hash. */
const VIEW_KEYS = ['agency', 'auth_method', 'client_id', 'created_at', 'name', 'scopes', 'status'];

async function cli(argv: string[], env: Record<string, string>) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { env, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s) });
  return { code, out: out.join(''), err: err.join('') };
}

/** The gateway on the directory the CLI worked on, as `gateway serve` would open it. */
async function servedGateway(env: Record<string, string>): Promise<App> {
  return openGateway(loadConfig({ ...env, LOG_LEVEL: 'silent', MAX_EVENT_LOOP_DELAY_MS: '0', DEMO_DATA: 'off', OPEN_PREBUILD: 'false' }), {
    logger: pino({ level: 'silent' }),
  });
}

function requestToken(app: App, id: string, secret: string) {
  return app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'client_credentials', client_id: id, client_secret: secret }).toString(),
  });
}

async function jwksKids(app: App): Promise<string[]> {
  const response = await app.inject({ url: '/.well-known/jwks.json' });
  return (response.json().keys as Array<{ kid: string }>).map((key) => key.kid).sort();
}

t.test('gateway client … and keys rotate on a PGlite directory, then the gateway on that directory', async (t) => {
  const base = t.testdir();
  const dir = join(base, 'pglite');
  const env = { DATABASE_URL: dir, KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY };
  const { publicKey } = await generateKeyPair('EdDSA', { extractable: true });
  const jwksFile = join(base, 'jwks.json');
  const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: 'psb-1', alg: 'EdDSA', use: 'sig' }] };
  await writeFile(jwksFile, JSON.stringify(jwks));

  // Filled in as the subtests go, in order.
  const state = { edu: { id: '', secret: '', rotated: '' }, psb: { id: '' }, hrss: { id: '', secret: '' }, kids: [] as string[] };

  t.test('client create --json on a fresh database (the CLI loads the catalog) prints the secret once', async (t) => {
    const run = await cli(['client', 'create', '--agency', 'zj-edu', '--scopes', 'catalog:read records:verify', '--json'], env);
    t.equal(run.code, 0, run.err);
    t.equal(run.err, '');
    const created = JSON.parse(run.out);
    t.same(Object.keys(created).sort(), [...VIEW_KEYS, 'client_secret'].sort());
    t.match(created, {
      client_id: /^cl_[A-Za-z0-9_-]{22}$/,
      agency: 'zj-edu',
      name: 'zj-edu client',
      scopes: ['catalog:read', 'records:verify'],
      auth_method: 'client_secret',
      status: 'active',
      client_secret: /^gws_[A-Za-z0-9_-]{43}$/,
    });
    state.edu.id = created.client_id;
    state.edu.secret = created.client_secret;

    const second = await cli(['client', 'create', '--agency', 'zj-hrss', '--scopes', 'catalog:read', '--json'], env);
    t.equal(second.code, 0, second.err);
    state.hrss = { id: JSON.parse(second.out).client_id, secret: JSON.parse(second.out).client_secret };
  });

  t.test('client create --jwks makes a private_key_jwt client without a secret', async (t) => {
    const run = await cli(['client', 'create', '--agency', 'zj-psb', '--scopes', 'records:read', '--name', '公安核验', '--jwks', jwksFile], env);
    t.equal(run.code, 0, run.err);
    const lines = run.out.trim().split('\n');
    const fields = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(': ')), line.slice(line.indexOf(': ') + 2)]));
    t.same(Object.keys(fields).sort(), VIEW_KEYS, 'one `key: value` line per field, no client_secret');
    t.match(fields, { client_id: /^cl_/, agency: 'zj-psb', name: '公安核验', scopes: 'records:read', auth_method: 'private_key_jwt', status: 'active' });
    t.notMatch(run.out, /gws_/);
    state.psb.id = fields.client_id as string;
  });

  t.test('client list and client list --json show every client and never a secret', async (t) => {
    const table = await cli(['client', 'list'], env);
    t.equal(table.code, 0, table.err);
    const expected = [
      `${state.edu.id}\tzj-edu\tactive\tclient_secret\tcatalog:read records:verify`,
      `${state.hrss.id}\tzj-hrss\tactive\tclient_secret\tcatalog:read`,
      `${state.psb.id}\tzj-psb\tactive\tprivate_key_jwt\trecords:read`,
    ].sort();
    t.same(table.out.trim().split('\n'), expected, 'one line per client, in id order');
    t.notMatch(table.out, /gws_|hmac-sha256|scrypt/);

    const json = await cli(['client', 'list', '--json'], env);
    t.equal(json.code, 0, json.err);
    const views = JSON.parse(json.out) as Array<Record<string, unknown>>;
    t.same(views.map((view) => view.client_id), expected.map((line) => line.split('\t')[0]));
    for (const view of views) t.same(Object.keys(view).sort(), VIEW_KEYS, `${String(view.client_id)}: no secret, no hash`);
    t.notMatch(json.out, /gws_|hmac-sha256|scrypt|psb-1/);

    const filtered = await cli(['client', 'list', '--agency', 'zj-psb', '--json'], env);
    t.same((JSON.parse(filtered.out) as Array<{ client_id: string }>).map((view) => view.client_id), [state.psb.id]);
  });

  t.test('client disable and client rotate-secret', async (t) => {
    const disable = await cli(['client', 'disable', state.hrss.id], env);
    t.equal(disable.code, 0, disable.err);
    t.equal(disable.out, `disabled ${state.hrss.id}\n`);
    const listed = JSON.parse((await cli(['client', 'list', '--agency', 'zj-hrss', '--json'], env)).out);
    t.match(listed, [{ client_id: state.hrss.id, status: 'disabled', disabled_at: /Z$/ }]);

    const rotate = await cli(['client', 'rotate-secret', state.edu.id, '--json'], env);
    t.equal(rotate.code, 0, rotate.err);
    const rotated = JSON.parse(rotate.out);
    t.same(Object.keys(rotated).sort(), ['client_id', 'client_secret']);
    t.equal(rotated.client_id, state.edu.id);
    t.match(rotated.client_secret, /^gws_[A-Za-z0-9_-]{43}$/);
    t.not(rotated.client_secret, state.edu.secret);
    state.edu.rotated = rotated.client_secret;
  });

  t.test('errors: one line, exit 1, nothing stored', async (t) => {
    const agency = await cli(['client', 'create', '--agency', 'nope', '--scopes', 'catalog:read'], env);
    t.equal(agency.code, 1);
    t.equal(agency.err, 'gateway: No agency nope in the catalog.\n');
    t.equal(agency.out, '');

    const scope = await cli(['client', 'create', '--agency', 'zj-edu', '--scopes', 'catalog:read catalog:write'], env);
    t.equal(scope.code, 1);
    t.equal(scope.err, 'gateway: Unknown scope word(s): catalog:write.\n');
    t.equal(scope.out, '');

    const disable = await cli(['client', 'disable', 'cl_nobody'], env);
    t.equal(disable.code, 1);
    t.equal(disable.err, 'gateway: No client cl_nobody.\n');
    t.equal(disable.out, '');

    const rotateJwt = await cli(['client', 'rotate-secret', state.psb.id], env);
    t.equal(rotateJwt.code, 1, 'a private_key_jwt client has no secret to rotate');
    t.match(rotateJwt.err, /^gateway: .*private_key_jwt.*\n$/);
    t.notMatch(rotateJwt.out, /gws_/);

    const missingOption = await cli(['client', 'create', '--agency', 'zj-edu'], env);
    t.equal(missingOption.code, 1);
    t.match(missingOption.err, /required option '--scopes <words>'/);

    t.equal(JSON.parse((await cli(['client', 'list', '--json'], env)).out).length, 3, 'still three clients');
  });

  t.test('keys rotate prints the new kid; a second rotation keeps the first key published', async (t) => {
    for (let i = 0; i < 2; i += 1) {
      const run = await cli(['keys', 'rotate'], env);
      t.equal(run.code, 0, run.err);
      const match = /^signing with (\S+)\n$/.exec(run.out);
      t.ok(match, `prints the kid: ${run.out}`);
      state.kids.push(match?.[1] ?? '');
    }
    t.not(state.kids[0], state.kids[1]);
  });

  t.test('the gateway on that directory sees what the CLI did', async (t) => {
    const app = await servedGateway(env);
    t.teardown(() => app.close());

    t.same(await jwksKids(app), [...state.kids].sort(), 'both keys the CLI made are published');

    const rotated = await requestToken(app, state.edu.id, state.edu.rotated);
    t.equal(rotated.statusCode, 200, 'the rotated secret obtains a token');
    const token = rotated.json().access_token as string;
    t.equal(decodeProtectedHeader(token).kid, state.kids[1], 'signed with the key of the last rotation');
    t.match(decodeJwt(token), { client_id: state.edu.id, agency: 'zj-edu', scope: 'catalog:read records:verify' });
    const search = await app.inject({ url: `/v1/catalog/resources?q=${encodeURIComponent('学籍')}`, headers: { authorization: `Bearer ${token}` } });
    t.equal(search.statusCode, 200);
    t.equal(search.json().items[0]?.code, '330000-EDU-00001');

    assertProblem(t, await requestToken(app, state.edu.id, state.edu.secret), 401, 'invalid_client');
    assertProblem(t, await requestToken(app, state.hrss.id, state.hrss.secret), 401, 'invalid_client');

    const admin = await app.inject({ url: '/v1/admin/clients', headers: { authorization: `Bearer ${token}` } });
    assertProblem(t, admin, 403, 'insufficient_scope');
  });
});

t.test('without KEY_ENCRYPTION_KEY, keys rotate makes <dir>.kek (0600) once and reuses it', async (t) => {
  const dir = join(t.testdir(), 'pglite');
  const env = { DATABASE_URL: dir };
  const kekFile = `${dir}.kek`;

  const first = await cli(['keys', 'rotate'], env);
  t.equal(first.code, 0, first.err);
  t.match(first.out, /^signing with \S+\n$/);
  t.ok(existsSync(kekFile), `${kekFile} made`);
  t.equal(statSync(kekFile).mode & 0o777, 0o600, 'readable by the owner only');
  const kek = readFileSync(kekFile, 'utf8');
  t.match(kek, /^[A-Za-z0-9_-]{43}\n$/, '32 bytes, base64url');

  const second = await cli(['keys', 'rotate'], env);
  t.equal(second.code, 0, second.err);
  t.equal(readFileSync(kekFile, 'utf8'), kek, 'the same key encryption key');
  t.equal(statSync(kekFile).mode & 0o777, 0o600);

  const created = await cli(['client', 'create', '--agency', 'zj-ca', '--scopes', 'catalog:read', '--json'], env);
  t.equal(created.code, 0, created.err);
  const { client_id: id, client_secret: secret } = JSON.parse(created.out);

  // The gateway decrypts the keys the two commands made with the key file beside the directory.
  const app = await servedGateway(env);
  t.teardown(() => app.close());
  t.equal((await jwksKids(app)).length, 2);
  const token = await requestToken(app, id, secret);
  t.equal(token.statusCode, 200, 'the gateway signs with the key the second rotation made');
  t.equal(decodeProtectedHeader(token.json().access_token).kid, /^signing with (\S+)\n$/.exec(second.out)?.[1]);
});

t.test('keys rotate with a key encryption key that does not open the stored keys is refused and writes nothing', async (t) => {
  const dir = join(t.testdir(), 'pglite');
  const env = { DATABASE_URL: dir, KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY };
  const first = await cli(['keys', 'rotate'], env);
  t.equal(first.code, 0, first.err);
  const kid = /^signing with (\S+)\n$/.exec(first.out)?.[1];

  const wrong = await cli(['keys', 'rotate'], { ...env, KEY_ENCRYPTION_KEY: Buffer.alloc(32, 9).toString('base64url') });
  t.equal(wrong.code, 1, 'a wrong KEY_ENCRYPTION_KEY is caught before a key is written with it');
  t.equal(wrong.err, 'gateway: KEY_ENCRYPTION_KEY does not decrypt the signing keys in this database.\n');
  t.equal(wrong.out, '');

  // The gateway with the right key must still start and sign with the key it had.
  let app: App | undefined;
  try {
    app = await servedGateway(env);
  } catch (error) {
    t.fail(`the gateway no longer starts: ${(error as Error).message}`);
    return;
  }
  t.teardown(() => app?.close());
  t.same(await jwksKids(app), [kid], 'no key was added');
});

t.test('client create --jwks with a file that cannot be read fails with one line', async (t) => {
  const dir = join(t.testdir(), 'pglite');
  const env = { DATABASE_URL: dir, KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY };
  const missing = join(dir, '..', 'no-such-jwks.json');
  let run: Awaited<ReturnType<typeof cli>> | undefined;
  try {
    run = await cli(['client', 'create', '--agency', 'zj-psb', '--scopes', 'records:read', '--jwks', missing], env);
  } catch (error) {
    t.fail(`runCli threw instead of exiting 1: ${(error as Error).message}`);
    return;
  }
  t.equal(run.code, 1);
  t.match(run.err, /^gateway: .*no-such-jwks\.json.*\n$/);
  t.equal(run.err.split('\n').length, 2, 'one line');
});
