import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { and, eq, gt, isNull } from 'drizzle-orm';
import type { AuditInput } from '../audit/index.js';
import { findResource } from '../catalog/index.js';
import type { Database } from '../db/index.js';
import { applications, clients, grants } from '../db/schema.js';
import { createClient, rotateClientSecret, type ClientSecrets } from '../identity/index.js';
import { apply, decide, GRANTS_CHANNEL, type Mode, type SharingSettings } from '../sharing/index.js';

/** The demo's supervisor agency (电子监察): in SUPERVISOR_AGENCIES when the embedded demo runs. */
export const DEMO_SUPERVISOR_AGENCY = 'zj-dsj';

export type DemoRole = 'consumer' | 'provider' | 'supervisor' | 'admin';

interface DemoGrant {
  resource: string;
  mode: Mode;
  fields: string[];
  purpose: string;
  legal_basis: string;
}

interface DemoParty {
  agency: string;
  /** The client's name; the demo finds its own clients again by agency and name. */
  name: string;
  scopes: string[];
  /** Applied for by this party and approved by the resource's provider, as in real use. */
  grants?: DemoGrant[];
  /** Applied for by this party and waiting for the provider: submitted that many days ago (the first one is overdue). */
  pending?: Array<DemoGrant & { submittedDaysAgo: number }>;
}

/**
 * Who the demo sets up: the human-resources department checking student status for an
 * employment subsidy (就业补贴资格审核), the education department that provides student status,
 * the big-data administration that supervises every exchange, and an administrator.
 */
export const DEMO_PARTIES: Record<DemoRole, DemoParty> = {
  consumer: {
    agency: 'zj-hrss',
    name: '就业补贴审核系统（演示）',
    scopes: ['catalog:read', 'records:read', 'records:verify', 'applications:write'],
    grants: [
      {
        resource: '330000-EDU-00001',
        mode: 'verify',
        fields: ['name', 'id_number', 'school', 'status'],
        purpose: '就业补贴资格审核：核验申请人的在读状态',
        legal_basis: '《浙江省就业补助资金管理办法》；《浙江省公共数据条例》第二十二条',
      },
      {
        resource: '330000-PSB-00001',
        mode: 'read',
        fields: ['id_number', 'name', 'gender', 'birth_date', 'region_code'],
        purpose: '就业补贴资格审核：核对申请人的户籍所在地',
        legal_basis: '《浙江省就业补助资金管理办法》；《浙江省公共数据条例》第二十二条',
      },
    ],
    pending: [
      {
        resource: '330000-EDU-00003',
        mode: 'verify',
        fields: ['certificate_number', 'name', 'id_number', 'qualification_type'],
        purpose: '职业技能培训讲师资格审查：核验讲师的教师资格证书',
        legal_basis: '《教师资格条例》；《浙江省职业技能提升行动实施方案》；《浙江省公共数据条例》第二十二条',
        submittedDaysAgo: 30,
      },
      {
        resource: '330000-EDU-00001',
        mode: 'read',
        fields: ['student_id', 'name', 'school', 'grade', 'status'],
        purpose: '技能培训补贴：核对在读学员的年级和学籍状态',
        legal_basis: '《浙江省就业补助资金管理办法》；《浙江省公共数据条例》第二十二条',
        submittedDaysAgo: 1,
      },
    ],
  },
  provider: { agency: 'zj-edu', name: '学籍共享管理系统（演示）', scopes: ['catalog:read', 'grants:manage', 'audit:read'] },
  supervisor: { agency: DEMO_SUPERVISOR_AGENCY, name: '电子监察系统（演示）', scopes: ['catalog:read', 'audit:read'] },
  admin: { agency: DEMO_SUPERVISOR_AGENCY, name: '平台管理（演示）', scopes: ['admin'] },
};

export interface DemoClientCredentials {
  client_id: string;
  client_secret: string;
  agency: string;
  name: string;
  scope: string;
}

export type DemoCredentials = Record<DemoRole, DemoClientCredentials> & { note: string };

/**
 * Where the demo's credentials go: beside a PGlite data directory (./data/pglite → ./data);
 * undefined for a database without a directory (PostgreSQL, memory://).
 */
export function demoCredentialsFile(database: Database): string | undefined {
  if (database.driver !== 'pglite' || database.location === 'memory://') return undefined;
  return `${dirname(database.location)}/demo-credentials.json`;
}

/**
 * The demo credentials file as a JSON object: the clients (by role) and the people of the demo
 * identity provider (`people`, src/demo/people.ts). Empty when there is no file or it is not a JSON object.
 */
export async function readCredentialsFile(file: string): Promise<Record<string, unknown>> {
  try {
    const parsed: unknown = JSON.parse(await readFile(file, 'utf8'));
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/**
 * Set some keys of the credentials file and keep the others (the clients keep the people, and the
 * people the clients), readable by its owner alone (0600), written whole or not at all.
 */
export async function updateCredentialsFile(file: string, update: Record<string, unknown>): Promise<void> {
  const merged = { ...(await readCredentialsFile(file)), ...update };
  await mkdir(dirname(file), { recursive: true });
  const partial = `${file}.${process.pid}.tmp`;
  await writeFile(partial, `${JSON.stringify(merged, null, 2)}\n`, { mode: 0o600 });
  await chmod(partial, 0o600);
  await rename(partial, file);
}

/** The credentials in `file` when every client it names is there and active, else undefined. */
export async function readDemoCredentials(database: Database, file: string): Promise<DemoCredentials | undefined> {
  const credentials = (await readCredentialsFile(file)) as Partial<DemoCredentials>;
  for (const role of Object.keys(DEMO_PARTIES) as DemoRole[]) {
    const id = credentials[role]?.client_id;
    if (typeof id !== 'string') return undefined;
    const [row] = await database.db.select({ status: clients.status }).from(clients).where(eq(clients.id, id));
    if (row?.status !== 'active') return undefined;
  }
  return credentials as DemoCredentials;
}

export interface DemoClientOptions {
  /** Records the set-up's applications and decisions on the audit trail. */
  record: (input: AuditInput) => Promise<string>;
  settings: SharingSettings;
  /** How the clients' secrets are stored (the gateway's: under its KEY_ENCRYPTION_KEY). */
  secrets: ClientSecrets;
  now: Date;
}

/**
 * The consumer's applications that wait for the provider, for the supervision pages to show (one
 * past its legal due date): made once, as if submitted `submittedDaysAgo` days ago, and made again
 * only when none of that resource and mode is pending any more (decided in a walk-through).
 */
async function seedPendingApplications(database: Database, options: DemoClientOptions, clientId: string) {
  const consumer = DEMO_PARTIES.consumer;
  for (const wanted of consumer.pending ?? []) {
    const [waiting] = await database.db
      .select({ id: applications.id })
      .from(applications)
      .where(and(eq(applications.agency, consumer.agency), eq(applications.resource, wanted.resource), eq(applications.mode, wanted.mode), eq(applications.status, 'pending')));
    if (waiting) continue;
    const stored = await findResource(database.db, wanted.resource);
    if (!stored) throw new Error(`the demo needs ${wanted.resource} in the catalog: sync the catalog first`);
    const { submittedDaysAgo, ...input } = wanted;
    const submitted = new Date(options.now.getTime() - submittedDaysAgo * 86_400_000);
    const { application } = await apply(database.db, stored.document, { agency: consumer.agency, clientId }, { ...input, duration_days: options.settings.maxDurationDays }, options.settings, submitted);
    await options.record({
      resource: wanted.resource,
      provider: stored.document.provider,
      purpose: wanted.purpose,
      legal_basis: wanted.legal_basis,
      fields: wanted.fields,
      action: 'application.create',
      outcome: 'allowed',
      status: 202,
      agency: consumer.agency,
      client_id: clientId,
      reason: `demo set-up: ${application.id}`,
    });
  }
}

/**
 * Make the demo's clients (or give the ones an earlier start made new secrets) and the consumer's
 * grants: applied for and approved by the provider through the same acts as over the API, each on
 * the audit trail. A grant that is still active is not applied for again, so running this twice
 * leaves one grant per resource.
 */
export async function seedDemoClients(database: Database, options: DemoClientOptions): Promise<DemoCredentials> {
  const { db } = database;
  const made = {} as Record<DemoRole, DemoClientCredentials>;
  for (const [role, party] of Object.entries(DEMO_PARTIES) as Array<[DemoRole, DemoParty]>) {
    const [existing] = await db
      .select({ id: clients.id })
      .from(clients)
      .where(and(eq(clients.agency, party.agency), eq(clients.name, party.name), eq(clients.status, 'active')));
    const { client, secret } = existing
      ? await rotateClientSecret(db, options.secrets, existing.id)
      : await createClient(db, options.secrets, { agency: party.agency, name: party.name, scopes: party.scopes });
    made[role] = { client_id: client.id, client_secret: secret as string, agency: party.agency, name: party.name, scope: party.scopes.join(' ') };
  }

  const consumer = DEMO_PARTIES.consumer;
  for (const wanted of consumer.grants ?? []) {
    const [active] = await db
      .select({ id: grants.id })
      .from(grants)
      .where(
        and(
          eq(grants.agency, consumer.agency),
          eq(grants.resource, wanted.resource),
          eq(grants.mode, wanted.mode),
          isNull(grants.revokedAt),
          gt(grants.validUntil, options.now),
        ),
      );
    if (active) continue;
    const stored = await findResource(db, wanted.resource);
    if (!stored) throw new Error(`the demo needs ${wanted.resource} in the catalog: sync the catalog first`);
    const resource = stored.document;
    const applied = await apply(
      db,
      resource,
      { agency: consumer.agency, clientId: made.consumer.client_id },
      { ...wanted, duration_days: options.settings.maxDurationDays },
      options.settings,
      options.now,
    );
    const common = { resource: resource.code, provider: resource.provider, purpose: wanted.purpose, legal_basis: wanted.legal_basis, fields: wanted.fields };
    await options.record({ ...common, action: 'application.create', outcome: 'allowed', status: 202, agency: consumer.agency, client_id: made.consumer.client_id, reason: 'demo set-up' });
    const decided = applied.grant
      ? applied
      : await decide(db, applied.application, { decision: 'approve' }, `client:${made.provider.client_id}`, options.now);
    await options.record({
      ...common,
      action: 'application.decide',
      outcome: 'allowed',
      status: 200,
      agency: resource.provider,
      client_id: made.provider.client_id,
      grant_id: decided.grant?.id ?? null,
      reason: 'demo set-up',
    });
    if (decided.grant) await database.notify(GRANTS_CHANNEL, decided.grant.id);
  }

  await seedPendingApplications(database, options, made.consumer.client_id);
  return {
    note: 'Demo clients of this gateway (DEMO_DATA=auto). Each secret works until the demo makes them again; never use them outside the demo.',
    ...made,
  };
}

/** Write the clients' credentials into the file (0600, whole or not at all), keeping its other keys (the demo's people). */
export async function writeDemoCredentials(file: string, credentials: DemoCredentials): Promise<void> {
  await updateCredentialsFile(file, credentials);
}
