import type { Command } from 'commander';
import type { JSONWebKeySet } from 'jose';
import { readJsonFile, type CliContext } from '../commands.js';
import { clientView, createClient, disableClient, listClients, rotateClientSecret, scopeWords } from './clients.js';
import { clientSecretsFor, keyEncryptionKey } from './kek.js';
import { KeyStore } from './keys.js';
import { announce } from './revocation.js';

/** `gateway client` and `gateway keys`: the OAuth clients of the agencies, and the gateway's signing keys. */
export function identityCommands(program: Command, cli: CliContext): void {
  clientCommands(program.command('client').description('OAuth clients: systems of an agency'), cli);

  program
    .command('keys')
    .description('the gateway\'s token signing keys')
    .command('rotate')
    .description('sign with a new key from now on; the old one stays published until its tokens expire')
    .action(async () => {
      const settings = cli.config();
      await cli.withDatabase(async (database) => {
        const keys = new KeyStore(database.db, await keyEncryptionKey(settings), settings.TOKEN_SIGNING_ALG, settings.TOKEN_TTL_SECONDS);
        // Loading first proves KEY_ENCRYPTION_KEY opens the stored keys before anything is written.
        const madeFirstKey = await keys.start();
        const kid = madeFirstKey ? keys.signingKey().kid : await keys.rotate();
        await announce(database, { type: 'keys_rotated' });
        cli.line(`signing with ${kid}`);
      });
    });
}

function clientCommands(client: Command, cli: CliContext): void {
  const printClient = (view: object, json: boolean | undefined) => {
    if (json) return cli.json(view);
    cli.line(Object.entries(view).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(' ') : String(v)}`).join('\n'));
  };

  client
    .command('create')
    .description('register a client; prints its id and, for secret clients, the secret (shown once)')
    .requiredOption('--agency <code>', 'the agency the client belongs to')
    .requiredOption('--scopes <words>', `space-separated scope words: ${scopeWords.join(' ')}`)
    .option('--name <name>', 'a name people recognise')
    .option('--jwks <file>', 'public JWK Set for private_key_jwt (no secret is made)')
    .option('--json', 'print JSON')
    .action(async (options: { agency: string; scopes: string; name?: string; jwks?: string; json?: boolean }) => {
      const jwks = options.jwks ? ((await readJsonFile(options.jwks)) as JSONWebKeySet) : undefined;
      await cli.withDatabase(async (database) => {
        const created = await createClient(database.db, await clientSecretsFor(cli.config()), {
          agency: options.agency,
          scopes: options.scopes.split(/[\s,]+/).filter(Boolean),
          ...(options.name ? { name: options.name } : {}),
          ...(jwks ? { jwks } : {}),
        });
        printClient({ ...clientView(created.client), ...(created.secret ? { client_secret: created.secret } : {}) }, options.json);
      }, { needsCatalog: true });
    });

  client
    .command('list')
    .description('list clients')
    .option('--agency <code>', 'only this agency\'s clients')
    .option('--json', 'print JSON')
    .action(async (options: { agency?: string; json?: boolean }) => {
      await cli.withDatabase(async (database) => {
        const { items } = await listClients(database.db, { limit: 10_000, ...(options.agency ? { agency: options.agency } : {}) });
        cli.list(items.map(clientView), options.json, (view) => `${view.client_id}\t${view.agency}\t${view.status}\t${view.auth_method}\t${view.scopes.join(' ')}`);
      });
    });

  client
    .command('disable')
    .argument('<client_id>')
    .description('disable a client; its tokens stop working on every instance within a second')
    .action(async (id: string) => {
      await cli.withDatabase(async (database) => {
        await disableClient(database.db, id);
        await announce(database, { type: 'client_disabled', client_id: id });
        cli.line(`disabled ${id}`);
      });
    });

  client
    .command('rotate-secret')
    .argument('<client_id>')
    .description('give a client a new secret (shown once); the old one stops working at once')
    .option('--json', 'print JSON')
    .action(async (id: string, options: { json?: boolean }) => {
      await cli.withDatabase(async (database) => {
        const rotated = await rotateClientSecret(database.db, await clientSecretsFor(cli.config()), id);
        printClient({ client_id: rotated.client.id, client_secret: rotated.secret }, options.json);
      });
    });
}
