import { createHash } from 'node:crypto';

/** The villages' items, in the order every digest hashes them. */
export const VILLAGE_COLUMNS = ['code', 'name', 'town_code', 'county_code', 'city_code', 'province_code'] as const;

/** Rows in key order, hashed as one line of tab-separated values each: the same for every source. */
export class RowDigest {
  private readonly hash = createHash('sha256');
  rows = 0;
  outOfOrder = 0;
  private last = '';

  add(values: unknown[]) {
    const code = String(values[0]);
    if (code <= this.last) this.outOfOrder += 1;
    this.last = code;
    this.hash.update(`${values.map((v) => (v === null || v === undefined ? '' : String(v))).join('\t')}\n`);
    this.rows += 1;
  }

  hex() {
    return this.hash.digest('hex');
  }
}
