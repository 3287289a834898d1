import { once } from 'node:events';
import { createServer } from 'node:http';
import type { Test } from 'tap';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

export const CITIZEN_ISSUER = 'https://citizen.zj.example';

/**
 * A trusted identity provider for citizens: its JWK Set served on loopback, the TRUSTED_ISSUERS
 * value that names it, and tokens whose `sub` is the person.
 */
export async function citizenIdentityProvider(t: Test) {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'citizen-idp-1', alg: 'ES256', use: 'sig' };
  const idp = createServer((_request, response) => {
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ keys: [jwk] }));
  }).listen(0, '127.0.0.1');
  await once(idp, 'listening');
  t.teardown(() => idp.close());
  const jwksUri = `http://127.0.0.1:${(idp.address() as { port: number }).port}/jwks`;
  const trusted = [
    { issuer: CITIZEN_ISSUER, jwks_uri: jwksUri, audience: 'gateway', algorithms: ['ES256'], kind: 'citizen', person_claim: 'sub', typ: ['JWT'] },
  ];
  const tokenFor = (person: string) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'citizen-idp-1', typ: 'JWT' })
      .setIssuer(CITIZEN_ISSUER)
      .setAudience('gateway')
      .setSubject(person)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey);
  return { trustedIssuers: JSON.stringify(trusted), tokenFor };
}
