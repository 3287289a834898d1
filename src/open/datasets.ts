import { createHash } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import type { Resource } from '../catalog/index.js';
import { rowsOf, type Db } from '../db/index.js';
import { openTermsAcceptances } from '../db/schema.js';

/**
 * An open dataset as the public sees it: the catalog entry without sensitive personal items (a
 * safeguard beneath the catalog's own open attribute), its version and its data's last import.
 */
export interface Dataset {
  resource: Resource;
  providerName: string;
  providerNameEn: string;
  version: number;
  updatedAt: Date;
  /** The last import's history id (0 before any import): with the version, what the data is. */
  importId: number;
  importedAt: Date | null;
  /** Rows loaded by the last import (the records are only ever replaced by an import). */
  rows: number;
}

/** The stamp of a dataset's current content: catalog version and import; ETags and files are named by it. */
export function stampOf(dataset: Dataset): string {
  return `${dataset.version}.${dataset.importId}`;
}

export function lastModified(dataset: Dataset): Date {
  const times = [dataset.updatedAt.getTime(), dataset.importedAt?.getTime() ?? 0];
  // HTTP dates have whole seconds.
  return new Date(Math.floor(Math.max(...times) / 1000) * 1000);
}

/** The resource with the items the public may see: sensitive personal items never leave as open data. */
export function openView(resource: Resource): Resource {
  return { ...resource, items: resource.items.filter((item) => !item.sensitive || resource.record_key.includes(item.name)) };
}

interface DatasetRow {
  document: Resource;
  version: number;
  updated_at: Date | string;
  provider_name: string;
  provider_name_en: string;
  import_id: number | string | null;
  imported_at: Date | string | null;
  rows: number | string | null;
}

const datasetColumns = sql`r.document, r.version, r.updated_at, a.name as provider_name, a.name_en as provider_name_en,
  i.id as import_id, i.changed_at as imported_at, (i.detail->>'rows')::bigint as rows`;
const lastImport = sql`left join lateral (
    select h.id, h.changed_at, h.detail from catalog_history h
    where h.kind = 'resource' and h.code = r.code and h.change = 'imported' order by h.id desc limit 1
  ) i on true`;

function datasetOf(row: DatasetRow): Dataset {
  return {
    resource: openView(row.document),
    providerName: row.provider_name,
    providerNameEn: row.provider_name_en,
    version: Number(row.version),
    updatedAt: new Date(row.updated_at),
    importId: row.import_id === null ? 0 : Number(row.import_id),
    importedAt: row.imported_at === null ? null : new Date(row.imported_at),
    rows: row.rows === null ? 0 : Number(row.rows),
  };
}

/** An open dataset (not retired, open attribute not `none`) by its code. */
export async function findDataset(db: Db, code: string): Promise<Dataset | undefined> {
  const rows = rowsOf<DatasetRow>(
    await db.execute(sql`select ${datasetColumns} from resources r join agencies a on a.code = r.provider ${lastImport}
      where r.code = ${code} and r.retired_at is null and r.open <> 'none'`),
  );
  return rows[0] ? datasetOf(rows[0]) : undefined;
}

/** Open datasets in code order, a page after a code; optionally of one provider or open type. */
export async function listDatasets(db: Db, options: { limit: number; after?: string; provider?: string; open?: string }) {
  const conditions = [sql`r.retired_at is null`, sql`r.open <> 'none'`];
  if (options.after) conditions.push(sql`r.code > ${options.after}`);
  if (options.provider) conditions.push(sql`r.provider = ${options.provider}`);
  if (options.open) conditions.push(sql`r.open = ${options.open}`);
  const rows = rowsOf<DatasetRow>(
    await db.execute(sql`select ${datasetColumns} from resources r join agencies a on a.code = r.provider ${lastImport}
      where ${sql.join(conditions, sql` and `)} order by r.code limit ${options.limit + 1}`),
  );
  const page = rows.slice(0, options.limit).map(datasetOf);
  return { items: page, next: rows.length > options.limit ? (page.at(-1)?.resource.code ?? null) : null };
}

/** Every open dataset hosted here (for prebuilding downloads). */
export async function allDatasets(db: Db): Promise<Dataset[]> {
  const all: Dataset[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await listDatasets(db, { limit: 200, ...(after ? { after } : {}) });
    all.push(...page.items);
    if (!page.next) return all;
    after = page.next;
  }
}

/** The terms a conditional dataset's users accept: its conditions, legal basis and licence. */
export function termsOf(resource: Resource): { text: string; sha256: string } | undefined {
  if (resource.open.type !== 'conditional') return undefined;
  const text = [
    resource.open.conditions ? `开放条件 Conditions: ${resource.open.conditions}` : undefined,
    resource.open.legal_basis ? `依据 Legal basis: ${resource.open.legal_basis}` : undefined,
    resource.open.license ? `许可 Licence: ${resource.open.license}` : undefined,
  ]
    .filter(Boolean)
    .join('\n');
  return { text, sha256: createHash('sha256').update(text).digest('hex') };
}

/** Whether a client, or another client of its agency, accepted these terms of the dataset. */
export async function hasAccepted(db: Db, code: string, termsSha256: string, agency: string): Promise<boolean> {
  const [row] = await db
    .select({ id: openTermsAcceptances.id })
    .from(openTermsAcceptances)
    .where(and(eq(openTermsAcceptances.resource, code), eq(openTermsAcceptances.agency, agency), eq(openTermsAcceptances.termsSha256, termsSha256)))
    .limit(1);
  return row !== undefined;
}

export async function acceptTerms(
  db: Db,
  acceptance: { resource: string; termsSha256: string; agency: string; clientId: string; purpose: string; requestId: string },
) {
  const [row] = await db.insert(openTermsAcceptances).values(acceptance).returning();
  return row as typeof openTermsAcceptances.$inferSelect;
}
