import t from 'tap';
import { eq } from 'drizzle-orm';
import { clients } from '../../src/db/schema.js';
import { createClient, rotateClientSecret } from '../../src/identity/clients.js';
import { ClientSecrets, scryptHash } from '../../src/identity/secrets.js';
import type { App } from '../../src/app.js';
import { buildTestApp, forEachDriver, TEST_KEY_ENCRYPTION_KEY } from '../helpers/app.js';
import { assertProblem } from '../helpers/problem.js';

const HMAC_FORM = /^hmac-sha256\$1\$[A-Za-z0-9_-]{43}$/;

function token(app: App, id: string, secret: string) {
  return app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}` },
    payload: 'grant_type=client_credentials',
  });
}

async function storedHash(app: App, id: string): Promise<string> {
  const [row] = await app.db.select({ hash: clients.secretHash }).from(clients).where(eq(clients.id, id));
  return String(row?.hash);
}

forEachDriver(t, 'client secrets are stored as HMAC-SHA-256 under a key from KEY_ENCRYPTION_KEY', async (t, driver) => {
  const app = await buildTestApp(t, driver);

  t.test('a new secret: the HMAC form, never the secret, and the token follows', async (t) => {
    const { client, secret } = await createClient(app.db, app.clientSecrets, { agency: 'zj-edu', scopes: ['catalog:read'] });
    const hash = await storedHash(app, client.id);
    t.match(hash, HMAC_FORM);
    t.notOk(hash.includes(String(secret)), 'the secret is not in the row');
    t.equal((await token(app, client.id, String(secret))).statusCode, 200);
    const wrong = await token(app, client.id, `${String(secret).slice(0, -1)}x`);
    assertProblem(t, wrong, 401, 'invalid_client');
  });

  t.test('the table alone is not enough: another key makes another hash of the same secret', async (t) => {
    const ours = new ClientSecrets(Buffer.from(TEST_KEY_ENCRYPTION_KEY, 'base64url'));
    const theirs = new ClientSecrets(Buffer.alloc(32, 1));
    const secret = 'gws_the-same-secret';
    t.equal(ours.hash(secret), app.clientSecrets.hash(secret), 'the gateway uses the configured key');
    t.not(theirs.hash(secret), ours.hash(secret));
    t.same(await theirs.verify(secret, ours.hash(secret)), { matches: false });
    t.same(await ours.verify(secret, 'md5$1$abc'), { matches: false }, 'an unknown scheme never matches');
    t.same(await ours.verify(secret, 'hmac-sha256$2$' + ours.hash(secret).split('$')[2]), { matches: false }, 'nor an unknown key version');
  });

  t.test('an scrypt hash from before still works and is upgraded on its first successful use', async (t) => {
    const { client } = await createClient(app.db, app.clientSecrets, { agency: 'zj-edu', scopes: ['catalog:read'] });
    const secret = 'gws_an-older-secret-of-256-bits-xxxxxxxxxxxxx';
    const old = await scryptHash(secret);
    await app.db.update(clients).set({ secretHash: old }).where(eq(clients.id, client.id));

    assertProblem(t, await token(app, client.id, 'gws_wrong'), 401, 'invalid_client');
    t.equal(await storedHash(app, client.id), old, 'a failed attempt changes nothing');

    t.equal((await token(app, client.id, secret)).statusCode, 200);
    const upgraded = await storedHash(app, client.id);
    t.match(upgraded, HMAC_FORM, 'stored in the HMAC form now');
    t.equal(upgraded, app.clientSecrets.hash(secret));
    t.equal((await token(app, client.id, secret)).statusCode, 200, 'and the same secret keeps working');
  });

  t.test('a rotated secret is stored in the HMAC form and the old one stops', async (t) => {
    const { client, secret } = await createClient(app.db, app.clientSecrets, { agency: 'zj-edu', scopes: ['catalog:read'] });
    const rotated = await rotateClientSecret(app.db, app.clientSecrets, client.id);
    t.match(await storedHash(app, client.id), HMAC_FORM);
    assertProblem(t, await token(app, client.id, String(secret)), 401, 'invalid_client');
    t.equal((await token(app, client.id, rotated.secret)).statusCode, 200);
  });
});
