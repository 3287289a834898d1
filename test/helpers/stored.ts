import { sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../../src/db/index.js';
import { RECORDS_SCHEMA } from '../../src/records/index.js';

/**
 * What the database holds, in a form cheap to compare: the number of audit records, a digest of
 * every row of every other gateway table (so that an update shows, not only an insert), and the
 * row count of every record table (written by imports only).
 */
export interface StoredState {
  auditRecords: number;
  tables: Record<string, string>;
}

/** The tables that differ between two states. */
export function changedTables(before: StoredState, after: StoredState): string[] {
  const names = new Set([...Object.keys(before.tables), ...Object.keys(after.tables)]);
  return [...names].filter((name) => before.tables[name] !== after.tables[name]).sort();
}

const identifier = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * A reader of the stored state, as one statement over the tables there are now (audit partitions
 * aside: their rows are counted through audit_events; so is audit_hourly, which counts them).
 */
export async function storedStateReader(db: Db): Promise<() => Promise<StoredState>> {
  const tables = rowsOf<{ schema: string; name: string }>(
    await db.execute(sql`select table_schema as schema, table_name as name from information_schema.tables
      where table_schema in ('public', ${RECORDS_SCHEMA}) and table_type = 'BASE TABLE' and table_name not like 'audit_events%' and table_name <> 'audit_hourly'
      order by 1, 2`),
  );
  const columns = tables.map(({ schema, name }, index) => {
    const table = `${identifier(schema)}.${identifier(name)}`;
    const digest = schema === 'public' ? `(select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from ${table} t)` : `(select count(*)::text from ${table})`;
    return `${digest} as t${index}`;
  });
  const statement = sql.raw(`select (select count(*)::int from audit_events) as audit_records${columns.map((column) => `, ${column}`).join('')}`);
  return async () => {
    const [row] = rowsOf<Record<string, string | number>>(await db.execute(statement));
    if (!row) throw new Error('no stored state');
    return {
      auditRecords: Number(row.audit_records),
      tables: Object.fromEntries(tables.map(({ schema, name }, index) => [`${schema}.${name}`, String(row[`t${index}`])])),
    };
  };
}
