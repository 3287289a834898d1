import { listAgencies, type Agency } from '../catalog/index.js';
import type { Db } from '../db/index.js';
import { allDatasets, lastModified, type Dataset } from '../open/index.js';

interface Shelved {
  datasets: Map<string, Dataset>;
  agencies: Map<string, Agency>;
  at: number;
}

/**
 * What the portal's lists show beside the catalog search (row counts, last import, provider
 * names): the open datasets and the agencies, read through the open data's and the catalog's own
 * services and kept for `maxAgeMs`, so that a busy search page does not read them for every request.
 * Readers that arrive while a read is under way share it.
 */
export class Shelf {
  private current: Shelved | undefined;
  private reading: Promise<Shelved> | undefined;

  constructor(
    private readonly db: Db,
    private readonly maxAgeMs = 2000,
  ) {}

  async get(): Promise<Shelved> {
    if (this.current && Date.now() - this.current.at < this.maxAgeMs) return this.current;
    this.reading ??= this.read().finally(() => (this.reading = undefined));
    return this.reading;
  }

  private async read(): Promise<Shelved> {
    const [datasets, agencies] = await Promise.all([allDatasets(this.db), allAgencies(this.db)]);
    this.current = {
      datasets: new Map(datasets.map((dataset) => [dataset.resource.code, dataset])),
      agencies: new Map(agencies.map((agency) => [agency.code, agency])),
      at: Date.now(),
    };
    return this.current;
  }
}

async function allAgencies(db: Db): Promise<Agency[]> {
  const all: Agency[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await listAgencies(db, 200, after);
    all.push(...page.items);
    if (!page.next) return all;
    after = page.next;
  }
}

/** Newest first: the last import or catalog change, then the code. */
export function byLastModified(a: Dataset, b: Dataset): number {
  return lastModified(b).getTime() - lastModified(a).getTime() || (a.resource.code < b.resource.code ? -1 : 1);
}
