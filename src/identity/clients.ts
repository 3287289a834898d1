import { and, asc, eq, gt, sql } from 'drizzle-orm';
import type { JSONWebKeySet } from 'jose';
import type { Db } from '../db/index.js';
import { agencies, clients } from '../db/schema.js';
import { defineProblem } from '../errors.js';
import { IDENTITY_CHANNEL, type IdentityEvent } from './revocation.js';
import { newClientId, newClientSecret, type ClientSecrets } from './secrets.js';

/** Scope words (API.md, Tokens): what kind of act a client may do. Grants say on what. */
export const scopeWords = [
  'catalog:read',
  'records:read',
  'records:verify',
  'applications:write',
  'grants:manage',
  'audit:read',
  'admin',
] as const;
export type Scope = (typeof scopeWords)[number];

export type AuthMethod = 'client_secret' | 'private_key_jwt';

export interface Client {
  id: string;
  agency: string;
  name: string;
  scopes: string[];
  authMethod: AuthMethod;
  secretHash: string | null;
  jwks: JSONWebKeySet | null;
  status: 'active' | 'disabled';
  createdAt: Date;
  disabledAt: Date | null;
}

export const UnknownAgency = defineProblem('unknown_agency', 'No agency %s in the catalog.', 400);
export const UnknownScope = defineProblem('invalid_scope', 'Unknown scope word(s): %s.', 400);
export const ClientNotFound = defineProblem('client_not_found', 'No client %s.', 404);
export const InvalidJwks = defineProblem('invalid_jwks', 'The JWKS is not usable: %s.', 400);
export const NoClientSecret = defineProblem<[]>(
  'no_client_secret',
  'This client authenticates with private_key_jwt and has no secret; register new keys instead.',
  400,
);

export interface NewClient {
  agency: string;
  name?: string;
  scopes: string[];
  /** Register public keys for private_key_jwt; without them the client gets a secret. */
  jwks?: JSONWebKeySet;
}

function checkScopes(scopes: string[]) {
  const unknown = scopes.filter((scope) => !(scopeWords as readonly string[]).includes(scope));
  if (unknown.length > 0) throw new UnknownScope(unknown.join(', '));
}

function checkJwks(jwks: JSONWebKeySet) {
  if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) throw new InvalidJwks('it has no keys');
  for (const key of jwks.keys) {
    if ('d' in key || 'p' in key || 'k' in key) throw new InvalidJwks('it holds private or symmetric key material');
    if (!['EC', 'OKP', 'RSA'].includes(String(key.kty))) throw new InvalidJwks(`key type ${String(key.kty)} is not accepted`);
  }
}

/** Register a client. The secret, when there is one, is returned here once and never stored. */
export async function createClient(db: Db, secrets: ClientSecrets, input: NewClient): Promise<{ client: Client; secret?: string }> {
  checkScopes(input.scopes);
  if (input.jwks) checkJwks(input.jwks);
  const [agency] = await db.select({ code: agencies.code }).from(agencies).where(eq(agencies.code, input.agency));
  if (!agency) throw new UnknownAgency(input.agency);
  const secret = input.jwks ? undefined : newClientSecret();
  const [row] = await db
    .insert(clients)
    .values({
      id: newClientId(),
      agency: input.agency,
      name: input.name ?? `${input.agency} client`,
      scopes: [...new Set(input.scopes)].sort(),
      authMethod: input.jwks ? 'private_key_jwt' : 'client_secret',
      secretHash: secret ? secrets.hash(secret) : null,
      jwks: input.jwks ?? null,
    })
    .returning();
  return { client: row as Client, ...(secret ? { secret } : {}) };
}

export async function findClient(db: Db, id: string): Promise<Client | undefined> {
  const [row] = await db.select().from(clients).where(eq(clients.id, id));
  return row as Client | undefined;
}

export async function listClients(db: Db, options: { agency?: string; limit: number; after?: string }) {
  const conditions = [
    ...(options.agency ? [eq(clients.agency, options.agency)] : []),
    ...(options.after ? [gt(clients.id, options.after)] : []),
  ];
  const rows = (await db
    .select()
    .from(clients)
    .where(and(...conditions))
    .orderBy(asc(clients.id))
    .limit(options.limit + 1)) as Client[];
  const items = rows.slice(0, options.limit);
  return { items, next: rows.length > options.limit ? (items.at(-1)?.id ?? null) : null };
}

/** Disable a client; disabling it again changes nothing (it keeps its first `disabled_at`). */
export async function disableClient(db: Db, id: string): Promise<Client> {
  const now = new Date();
  const [row] = await db
    .update(clients)
    .set({ status: 'disabled', disabledAt: now, updatedAt: now })
    .where(and(eq(clients.id, id), eq(clients.status, 'active')))
    .returning();
  const client = (row as Client | undefined) ?? (await findClient(db, id));
  if (!client) throw new ClientNotFound(id);
  return client;
}

/** A new secret for a secret client; the old one stops working at once. */
export async function rotateClientSecret(db: Db, secrets: ClientSecrets, id: string): Promise<{ client: Client; secret: string }> {
  const client = await findClient(db, id);
  if (!client) throw new ClientNotFound(id);
  if (client.authMethod !== 'client_secret') throw new NoClientSecret();
  const secret = newClientSecret();
  const [row] = await db
    .update(clients)
    .set({ secretHash: secrets.hash(secret), updatedAt: new Date() })
    .where(eq(clients.id, id))
    .returning();
  // Every instance forgets the copy it holds (in a transaction, on its commit).
  const changed: IdentityEvent = { type: 'client_changed', client_id: id };
  await db.execute(sql`select pg_notify(${IDENTITY_CHANNEL}, ${JSON.stringify(changed)})`);
  return { client: row as Client, secret };
}

/** A client as the admin API and the CLI show it: never the hash. */
export function clientView(client: Client) {
  return {
    client_id: client.id,
    agency: client.agency,
    name: client.name,
    scopes: client.scopes,
    auth_method: client.authMethod,
    status: client.status,
    created_at: client.createdAt.toISOString(),
    ...(client.disabledAt ? { disabled_at: client.disabledAt.toISOString() } : {}),
  };
}
