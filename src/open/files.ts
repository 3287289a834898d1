import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Database } from '../db/index.js';
import { datasetFormats } from '../catalog/dcat.js';
import { findDataset, stampOf, type Dataset } from './datasets.js';
import { recordStream, type FileFormat } from './formats.js';

/** The formats a dataset's whole-dataset files come in (GeoJSON only for located datasets). */
export function fileFormatsOf(dataset: Dataset): FileFormat[] {
  return datasetFormats(dataset.resource)
    .map((format) => format.name)
    .filter((name): name is FileFormat => name !== 'datapackage');
}

/** XLSX is a zip already; the text formats get a gzip twin. */
export function gzipped(format: FileFormat): boolean {
  return format !== 'xlsx';
}

export interface PrebuiltFile {
  path: string;
  size: number;
  /** `gzip` for the compressed twin. */
  encoding: 'gzip' | null;
}

/**
 * Whole-dataset download files, built after an import and named by the dataset's stamp, so that a
 * file is never served for data it was not made from. Each is written to a temporary name and
 * renamed into place: a reader sees a whole file or none. Older stamps are removed after a build.
 */
export class DownloadFiles {
  private readonly building = new Map<string, Promise<void>>();

  constructor(
    readonly dir: string,
    private readonly database: Database,
    private readonly fetchRows: number,
    /** Aborted when the gateway stops: a build in progress gives up and removes its temporaries. */
    private readonly signal?: AbortSignal,
  ) {}

  private file(code: string, stamp: string, format: FileFormat, encoding: 'gzip' | null): string {
    return join(this.dir, code, `${stamp}.${format}${encoding ? '.gz' : ''}`);
  }

  /** The prebuilt file for the dataset's current stamp, the gzip twin when the caller takes gzip. */
  async find(dataset: Dataset, format: FileFormat, acceptsGzip: boolean): Promise<PrebuiltFile | undefined> {
    const encodings: Array<'gzip' | null> = acceptsGzip && gzipped(format) ? ['gzip', null] : [null];
    for (const encoding of encodings) {
      const path = this.file(dataset.resource.code, stampOf(dataset), format, encoding);
      try {
        const info = await stat(path);
        return { path, size: info.size, encoding };
      } catch {
        continue;
      }
    }
    return undefined;
  }

  /** Whether every file of the dataset's current stamp is there. */
  async complete(dataset: Dataset): Promise<boolean> {
    for (const format of fileFormatsOf(dataset)) {
      for (const encoding of gzipped(format) ? (['gzip', null] as const) : ([null] as const)) {
        try {
          await stat(this.file(dataset.resource.code, stampOf(dataset), format, encoding));
        } catch {
          return false;
        }
      }
    }
    return true;
  }

  /** Build the dataset's files for its stamp (once at a time per dataset in this process). */
  build(dataset: Dataset): Promise<void> {
    const key = `${dataset.resource.code}@${stampOf(dataset)}`;
    const running = this.building.get(key);
    if (running) return running;
    const work = this.buildNow(dataset).finally(() => this.building.delete(key));
    this.building.set(key, work);
    return work;
  }

  private async buildNow(dataset: Dataset): Promise<void> {
    if (await this.complete(dataset)) return;
    const { resource } = dataset;
    const folder = join(this.dir, resource.code);
    await mkdir(folder, { recursive: true });
    await this.removeStaleTemporaries(folder);
    const stamp = stampOf(dataset);
    const fields = resource.items.map((item) => item.name);
    for (const format of fileFormatsOf(dataset)) {
      const target = this.file(resource.code, stamp, format, null);
      const temporary = join(folder, `.${randomUUID()}.tmp`);
      const compressed = join(folder, `.${randomUUID()}.tmp`);
      try {
        const records = recordStream(this.database, resource, format, fields, [], this.fetchRows, this.signal ? { signal: this.signal } : {});
        await pipeline(records, createWriteStream(temporary));
        // Records change only by an import, and every import changes the stamp: the same stamp
        // after the read means the file holds exactly the data the stamp names.
        const now = await findDataset(this.database.db, resource.code);
        if (!now || stampOf(now) !== stamp) return;
        if (gzipped(format)) {
          await pipeline(createReadStream(temporary), createGzip(), createWriteStream(compressed));
          await rename(compressed, `${target}.gz`);
        }
        await rename(temporary, target);
      } finally {
        await rm(temporary, { force: true });
        await rm(compressed, { force: true });
      }
    }
    // Files of other stamps (older data) go.
    for (const name of await readdir(folder)) {
      if (!name.startsWith('.') && !name.startsWith(`${stamp}.`)) await rm(join(folder, name), { force: true });
    }
  }

  /** Temporaries an interrupted build left behind (a crash): an hour old is long past any build. */
  private async removeStaleTemporaries(folder: string): Promise<void> {
    for (const name of await readdir(folder)) {
      if (!name.endsWith('.tmp')) continue;
      const info = await stat(join(folder, name)).catch(() => undefined);
      if (info && Date.now() - info.mtimeMs > 3_600_000) await rm(join(folder, name), { force: true });
    }
  }
}
