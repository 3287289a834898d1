import type { App } from '../../src/app.js';
import { createClient } from '../../src/identity/clients.js';
import type { Caller } from '../../src/plugins/auth.js';

/** A registered client of an agency, with a bearer token it got as a client would. */
export interface Party {
  agency: string;
  clientId: string;
  /** The caller the decision point sees for this client. */
  caller: Extract<Caller, { kind: 'agency' }>;
  headers: { authorization: string };
}

export async function party(app: App, agency: string, scopes: string[]): Promise<Party> {
  const { client, secret } = await createClient(app.db, app.clientSecrets, { agency, scopes });
  const response = await app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'client_credentials', client_id: client.id, client_secret: secret as string }).toString(),
  });
  if (response.statusCode !== 200) throw new Error(`token for ${agency}: ${response.statusCode} ${response.body}`);
  return {
    agency,
    clientId: client.id,
    caller: { kind: 'agency', clientId: client.id, agency, scopes: new Set(scopes) },
    headers: { authorization: `Bearer ${response.json().access_token as string}` },
  };
}
