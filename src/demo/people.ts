import { randomBytes } from 'node:crypto';
import { readCredentialsFile, updateCredentialsFile } from './clients.js';

/** Who signs in at the demo identity provider (/demo-idp), with what it says about them. */
export interface DemoPerson {
  role: 'supervisor' | 'provider' | 'consumer' | 'citizen';
  username: string;
  password: string;
  sub: string;
  name: string;
  /** What the ID token says beyond sub and name, by the scopes asked for (agency, roles; id_number). */
  claims: Record<string, unknown>;
}

/**
 * The demo's people: an official of each of the demo's agencies (the supervisor 电子监察, the
 * education department that provides student status, the human-resources department that
 * verifies it) with the gateway scopes their roles give, and the student the README's demo
 * verification checks, who signs in as a citizen to see who looked at their records.
 */
export const DEMO_PEOPLE: ReadonlyArray<Omit<DemoPerson, 'password'>> = [
  { role: 'supervisor', username: 'supervisor', sub: 'demo-supervisor', name: '周监察（演示）', claims: { agency: 'zj-dsj', roles: ['catalog:read', 'audit:read'] } },
  {
    role: 'provider',
    username: 'provider',
    sub: 'demo-provider',
    name: '陈学籍（演示）',
    claims: { agency: 'zj-edu', roles: ['catalog:read', 'grants:manage', 'audit:read'] },
  },
  {
    role: 'consumer',
    username: 'consumer',
    sub: 'demo-consumer',
    name: '王人社（演示）',
    claims: { agency: 'zj-hrss', roles: ['catalog:read', 'audit:read', 'applications:write'] },
  },
  { role: 'citizen', username: 'citizen', sub: 'demo-citizen', name: '孙思远', claims: { id_number: '331022201110043439' } },
];

/** 12 random bytes: 16 characters of base64url. */
const newPassword = () => randomBytes(12).toString('base64url');

function storedPassword(stored: unknown, username: string): string | undefined {
  if (!Array.isArray(stored)) return undefined;
  const entry = stored.find((person: unknown) => (person as Partial<DemoPerson> | null)?.username === username) as Partial<DemoPerson> | undefined;
  return typeof entry?.password === 'string' && entry.password.length >= 16 ? entry.password : undefined;
}

/**
 * The demo's people with their passwords: those the credentials file holds under `people`, a new
 * random one for anyone it does not. Who they are (sub, name, claims) always comes from
 * DEMO_PEOPLE; the file is written again (0600, its other keys kept) when it differs.
 */
export async function ensureDemoPeople(file: string): Promise<DemoPerson[]> {
  const stored = await readCredentialsFile(file);
  const people = DEMO_PEOPLE.map((person) => ({ ...person, password: storedPassword(stored.people, person.username) ?? newPassword() }));
  if (JSON.stringify(stored.people) !== JSON.stringify(people)) await updateCredentialsFile(file, { people });
  return people;
}
