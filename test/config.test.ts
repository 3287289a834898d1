import { spawnSync } from 'node:child_process';
import t from 'tap';
import { ConfigError, loadConfig, publicUrl, tokenIssuer } from '../src/config.js';
import { projectRoot } from '../src/paths.js';

t.test('defaults give a gateway on a PGlite directory under ./data', async (t) => {
  const config = loadConfig({});
  t.equal(config.DATABASE_URL, './data/pglite');
  t.equal(config.PORT, 3000);
  t.equal(config.HOST, '127.0.0.1');
  t.equal(config.LOG_LEVEL, 'info');
  t.equal(publicUrl(config), 'http://127.0.0.1:3000');
});

t.test('the token issuer: one for every instance on PostgreSQL, required there', async (t) => {
  t.equal(tokenIssuer(loadConfig({})), 'http://127.0.0.1:3000', 'PGlite (one process): its own address by default');
  t.equal(tokenIssuer(loadConfig({ PORT: '4000' })), 'http://127.0.0.1:4000');
  const pg = 'postgres://postgres@127.0.0.1:5432/gateway';
  t.throws(() => tokenIssuer(loadConfig({ DATABASE_URL: pg })), new ConfigError('PUBLIC_URL or TOKEN_ISSUER: one is required with PostgreSQL, so that every instance signs and accepts the same token issuer'));
  t.equal(tokenIssuer(loadConfig({ DATABASE_URL: pg, PORT: '4000', PUBLIC_URL: 'https://data.example.gov.cn/' })), 'https://data.example.gov.cn', 'PUBLIC_URL, whatever the port');
  t.equal(tokenIssuer(loadConfig({ DATABASE_URL: pg, PUBLIC_URL: 'https://data.example.gov.cn', TOKEN_ISSUER: 'https://id.example.gov.cn' })), 'https://id.example.gov.cn', 'TOKEN_ISSUER first');
});

t.test('values are coerced from strings', async (t) => {
  const config = loadConfig({ PORT: '8080', BODY_LIMIT: '2048', TRUST_PROXY: 'true', HOST: '0.0.0.0' });
  t.equal(config.PORT, 8080);
  t.equal(config.BODY_LIMIT, 2048);
  t.equal(config.TRUST_PROXY, true);
  t.equal(publicUrl(config), 'http://localhost:8080');
  t.equal(publicUrl(loadConfig({ HOST: '::1' })), 'http://[::1]:3000');
  t.equal(publicUrl(loadConfig({ PUBLIC_URL: 'https://data.example.gov.cn/' })), 'https://data.example.gov.cn');
  t.equal(loadConfig({ TRUST_PROXY: '10.0.0.0/8' }).TRUST_PROXY, '10.0.0.0/8');
});

t.test('a variable set to the empty string is not set: its default applies', async (t) => {
  const config = loadConfig({ DATABASE_URL: '', PORT: '', KEY_ENCRYPTION_KEY: '', TRUST_PROXY: '', LOG_PRETTY: '', LOG_LEVEL: '' });
  t.equal(config.DATABASE_URL, './data/pglite', 'DATABASE_URL= is the default directory');
  t.equal(config.PORT, 3000, 'PORT= is the default port');
  t.equal(config.LOG_LEVEL, 'info');
  t.equal(config.TRUST_PROXY, false);
  t.notOk('KEY_ENCRYPTION_KEY' in config, 'an optional variable set empty is absent');
  t.notOk('LOG_PRETTY' in config);
  t.equal(loadConfig({ SUPERVISOR_AGENCIES: '' }).SUPERVISOR_AGENCIES, '');
});

t.test('a bad value is one line naming the variable and what is wrong', async (t) => {
  const cases: Array<[Record<string, string>, string]> = [
    [{ PORT: 'abc' }, 'PORT: must be integer'],
    [{ PORT: '70000' }, 'PORT: must be <= 65535'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent'],
    [{ DATABASE_URL: 'mysql://root@db/x' }, 'DATABASE_URL: has the wrong form'],
    [{ BODY_LIMIT: '10' }, 'BODY_LIMIT: must be >= 1024'],
    [{ PUBLIC_URL: 'ftp://x' }, 'PUBLIC_URL: has the wrong form'],
    [{ MAX_EVENT_LOOP_UTILIZATION: '2' }, 'MAX_EVENT_LOOP_UTILIZATION: must be <= 1'],
  ];
  for (const [env, message] of cases) {
    t.throws(() => loadConfig(env), new ConfigError(message), JSON.stringify(env));
  }
  const both = t.throws(() => loadConfig({ PORT: 'x', LOG_LEVEL: 'y' })) as Error;
  t.match(both.message, /^PORT: must be integer; LOG_LEVEL: must be one of/);
  t.notMatch(both.message, /\n/);
});

t.test('the message never echoes the value (it may be a secret)', async (t) => {
  const error = t.throws(() => loadConfig({ DATABASE_URL: 'mysql://root:hunter2@db/x' })) as Error;
  t.notMatch(error.message, /hunter2/);
});

t.test('the server stops at start-up with one line and exit code 1 on a bad variable', async (t) => {
  const result = spawnSync(process.execPath, ['dist/src/server.js'], {
    cwd: projectRoot,
    env: { ...process.env, PORT: 'not-a-port', DATABASE_URL: 'memory://' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.equal(result.status, 1);
  t.equal(result.stderr, 'gateway: configuration error: PORT: must be integer\n');
  t.equal(result.stdout, '');
});
