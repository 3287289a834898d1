import { randomUUID } from 'node:crypto';
import { link, open, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The lock that keeps a PGlite data directory to one process (PGlite corrupts a directory that
 * two processes open at once). Written here rather than taken from npm: proper-lockfile and
 * lockfile judge a lock by its age alone, so a start right after a crash waits out the stale
 * period, and none of the maintained packages records who holds a lock, tells a dead holder from
 * a live one by its pid and start time, or lets a holder say that it is closing.
 *
 * The lock is one JSON file, `gateway.lock`, naming its holder. A holder on this host is judged by
 * its process (gone: no such pid, or that pid now belongs to a process started at another time,
 * or the machine has booted since); a holder on another host (a shared volume) cannot be, so
 * there its heartbeat counts: the holder refreshes the file's mtime every HEARTBEAT_MS.
 */

const LOCK_FILE = 'gateway.lock';
const HEARTBEAT_MS = 5_000;
/** A heartbeat older than this means its holder is gone (three missed beats). */
const STALE_MS = 15_000;
const POLL_MS = 100;
/** How long past its announced deadline a closing holder is still waited for. */
const CLOSE_MARGIN_MS = 5_000;
/** The longest a start waits for a closing holder, whatever that holder announced. */
const MAX_WAIT_MS = 60_000;

export interface LockHolder {
  pid: number;
  /**
   * When the process started: /proc/<pid>/stat field 22 (clock ticks since boot), so that a pid
   * reused by another process is not taken for the holder. Null where there is no /proc.
   */
  startTime: string | null;
  /** /proc/sys/kernel/random/boot_id: a pid and start time from before a reboot name nobody. */
  bootId: string | null;
  host: string;
  /** When the lock was taken (ISO 8601). */
  since: string;
  state: 'open' | 'closing';
  /** While closing: the time by which the holder means to be done (ISO 8601). */
  closeBy?: string;
  /** Tells this lock from any other, whoever holds it. */
  token: string;
}

export interface LockLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface DirectoryLock {
  readonly holder: LockHolder;
  /** Record that the holder is closing and means to be done within `withinMs`. Never throws. */
  closing(withinMs: number): Promise<void>;
  /** Remove the lock, if it is still ours. */
  release(): Promise<void>;
}

/** Thrown when a PGlite directory is already held by another process. */
export class DatabaseInUseError extends Error {
  override name = 'DatabaseInUseError';
  readonly code = 'database_in_use';
  constructor(
    readonly directory: string,
    readonly holder?: LockHolder,
    detail = holder ? describeHolder(holder) : 'holder unknown',
  ) {
    super(
      `The PGlite data directory ${directory} is in use by another process (${detail}: a running gateway?). ` +
        'PGlite allows one process per directory: stop that process, or do this through its admin API.',
    );
  }
}

function describeHolder(holder: LockHolder): string {
  const closing = holder.state === 'closing' ? `, closing, meant to be closed by ${holder.closeBy}` : '';
  return `pid ${holder.pid} on ${holder.host}, holding it since ${holder.since}${closing}`;
}

/** What is found where the lock should be. */
type Found =
  | { kind: 'none' }
  | { kind: 'record'; holder: LockHolder; mtimeMs: number; ino: number }
  /** A file that names no holder (written by hand, damaged) or a directory (the proper-lockfile lock of earlier builds). */
  | { kind: 'unreadable'; mtimeMs: number; ino: number };

/**
 * Take the lock on `directory`, or throw DatabaseInUseError naming its live holder. A lock whose
 * holder is gone is taken over at once; a holder that is closing is waited for, up to its
 * announced deadline plus CLOSE_MARGIN_MS (at most MAX_WAIT_MS).
 */
export async function lockDirectory(directory: string, logger?: LockLogger): Promise<DirectoryLock> {
  const path = join(directory, LOCK_FILE);
  const holder: LockHolder = {
    ...(await identity(process.pid)),
    since: new Date().toISOString(),
    state: 'open',
    token: randomUUID(),
  };
  const began = Date.now();
  let waitedFor: string | undefined;
  let attempt = true;
  for (;;) {
    const tried = attempt;
    if (tried && (await createExclusive(path, holder))) {
      await sweepClaims(path);
      return held(path, holder, logger);
    }
    attempt = true;
    const found = await readLock(path);
    if (found.kind === 'none') {
      // Released while we waited: take it now. Released between our attempt and the read: try
      // again, a moment later and not forever (a lock path that can be neither created nor
      // read, such as a dangling symlink).
      if (tried) {
        if (Date.now() - began > MAX_WAIT_MS) throw new DatabaseInUseError(directory);
        await sleep(POLL_MS);
      }
      continue;
    }
    const gone = await goneBecause(found);
    if (gone) {
      logger?.warn(
        { directory, ...(found.kind === 'record' ? { holder: found.holder } : {}), reason: gone },
        `taking over the PGlite data directory lock: its holder is gone (${gone})`,
      );
      await takeOver(path, found);
      continue;
    }
    if (found.kind === 'record' && found.holder.state === 'closing') {
      const closeBy = Date.parse(found.holder.closeBy ?? '') || 0;
      const until = Math.min(began + MAX_WAIT_MS, closeBy + CLOSE_MARGIN_MS);
      if (Date.now() < until) {
        if (waitedFor !== found.holder.token) {
          waitedFor = found.holder.token;
          logger?.info(
            { directory, holder: found.holder, until: new Date(until).toISOString() },
            `waiting for pid ${found.holder.pid} on ${found.holder.host} to close the PGlite data directory`,
          );
        }
        await sleep(POLL_MS);
        // Only read again: the lock is tried once it is gone or its holder is.
        attempt = false;
        continue;
      }
    }
    if (found.kind === 'record') throw new DatabaseInUseError(directory, found.holder);
    const refreshed = Math.round((Date.now() - found.mtimeMs) / 1000);
    throw new DatabaseInUseError(directory, undefined, `an unreadable lock, refreshed ${refreshed} s ago`);
  }
}

/**
 * The record is written in full (and synced) under a name of its own, then linked into place:
 * link() fails if the lock exists, so taking it is atomic and nobody reads a half-written lock.
 */
async function createExclusive(path: string, holder: LockHolder): Promise<boolean> {
  const draft = `${path}.${holder.token}.tmp`;
  await writeSynced(draft, holder);
  try {
    return await linkExclusive(draft, path);
  } finally {
    await rm(draft, { force: true });
  }
}

function held(path: string, holder: LockHolder, logger?: LockLogger): DirectoryLock {
  let current = holder;
  let released = false;
  const heartbeat = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch((error: unknown) => {
      if (!released) logger?.warn({ err: error, path }, 'could not refresh the heartbeat of the PGlite data directory lock');
    });
  }, HEARTBEAT_MS);
  heartbeat.unref();

  return {
    holder,
    async closing(withinMs) {
      if (released || current.state === 'closing') return;
      current = { ...current, state: 'closing', closeBy: new Date(Date.now() + withinMs).toISOString() };
      // Rewritten whole under another name, then renamed over the lock: a reader sees the old
      // record or the new one, never half of either.
      const draft = `${path}.${holder.token}.closing.tmp`;
      try {
        await writeSynced(draft, current);
        // Checked, then replaced: only a take-over replaces a lock, and a live holder's is not
        // taken over, so the lock cannot change hands in between.
        if (await isOurs(path, holder.token)) await rename(draft, path);
        else logger?.warn({ path }, 'the PGlite data directory lock is no longer ours');
      } catch (error) {
        logger?.warn({ err: error, path }, 'could not mark the PGlite data directory lock as closing');
      } finally {
        await rm(draft, { force: true });
      }
    },
    async release() {
      if (released) return;
      released = true;
      clearInterval(heartbeat);
      if (await isOurs(path, holder.token)) await rm(path, { force: true });
      else logger?.warn({ path }, 'the PGlite data directory lock was no longer ours when it was released');
    },
  };
}

/**
 * Remove a lock whose holder is gone, safely against others who judged the same lock at the same
 * time. Of everyone who judged this very lock (its inode and mtime, and its holder's token),
 * exactly one creates its take-over claim (`O_EXCL`); the others wait and look again. A lock whose
 * holder is gone changes only by that claimant's removal, so what the claimant removes is the lock
 * it judged. A claimant that died between claim and removal leaves a claim that ages: after
 * CLAIM_STALE_MS the next generation of claim may be made. As a last guard (a claimant stalled past
 * that), the lock is moved aside before it is removed, and put back if it is not the one judged.
 * Claims stay until a holder sweeps old ones (sweepClaims), so that a racer slow to judge cannot
 * claim the same lock twice.
 */
async function takeOver(path: string, judged: Exclude<Found, { kind: 'none' }>): Promise<void> {
  const id = lockIdentity(judged);
  for (let generation = 1; ; generation++) {
    const claim = `${path}.${id}.${generation}${CLAIM_SUFFIX}`;
    try {
      await writeFile(claim, '', { flag: 'wx' });
      break;
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw error;
    }
    const { mtimeMs } = await stat(claim).catch(() => ({ mtimeMs: 0 }));
    // Claimed lately: its claimant is removing the lock; look again in a moment.
    if (Date.now() - mtimeMs < CLAIM_STALE_MS) return void (await sleep(POLL_MS));
  }
  const aside = `${path}.${randomUUID()}.stale`;
  try {
    await rename(path, aside);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return;
    throw error;
  }
  try {
    const moved = await readLock(aside);
    if (moved.kind !== 'none' && lockIdentity(moved) !== id) await linkExclusive(aside, path);
  } finally {
    await rm(aside, { recursive: true, force: true });
  }
}

const CLAIM_SUFFIX = '.takeover';
/** A take-over takes milliseconds; a claim this old was left by a claimant that died. */
const CLAIM_STALE_MS = 5_000;
/** Take-over claims older than this are swept by the next holder: no racer judges a lock that long. */
const CLAIM_KEEP_MS = 10 * 60_000;

function lockIdentity(found: Exclude<Found, { kind: 'none' }>): string {
  const token = found.kind === 'record' ? `-${found.holder.token.replace(/[^A-Za-z0-9-]/g, '').slice(0, 64)}` : '';
  return `${found.ino}-${Math.round(found.mtimeMs)}${token}`;
}

/** Remove the take-over claims of locks long gone. */
async function sweepClaims(path: string): Promise<void> {
  const directory = dirname(path);
  const prefix = `${basename(path)}.`;
  for (const name of await readdir(directory).catch(() => [] as string[])) {
    if (!name.startsWith(prefix) || !name.endsWith(CLAIM_SUFFIX)) continue;
    const claim = join(directory, name);
    const { mtimeMs } = await stat(claim).catch(() => ({ mtimeMs: Date.now() }));
    if (Date.now() - mtimeMs > CLAIM_KEEP_MS) await rm(claim, { force: true });
  }
}

/** Why the holder of `found` is gone, or undefined while it may be alive. */
async function goneBecause(found: Exclude<Found, { kind: 'none' }>): Promise<string | undefined> {
  const silentMs = Date.now() - found.mtimeMs;
  const silent = `no heartbeat for ${Math.round(silentMs / 1000)} s`;
  if (found.kind === 'unreadable' || found.holder.host !== hostname()) return silentMs > STALE_MS ? silent : undefined;
  const { pid, startTime, bootId } = found.holder;
  const here = await identity(pid);
  if (bootId && here.bootId && bootId !== here.bootId) return 'the machine has restarted since';
  if (!alive(pid)) return `no process ${pid}`;
  if (startTime && here.startTime && startTime !== here.startTime) return `pid ${pid} is now another process`;
  return undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return errorCode(error) !== 'ESRCH';
  }
}

/** This host's view of process `pid`: its start time and the boot it belongs to, where /proc tells. */
export async function identity(pid: number): Promise<Pick<LockHolder, 'pid' | 'startTime' | 'bootId' | 'host'>> {
  return { pid, startTime: await processStartTime(pid), bootId: await procText('/proc/sys/kernel/random/boot_id'), host: hostname() };
}

/** Field 22 of /proc/<pid>/stat; null without /proc or without that process. */
export async function processStartTime(pid: number): Promise<string | null> {
  const stat = await procText(`/proc/${pid}/stat`);
  // Field 2, the command name, is in parentheses and may itself hold spaces and parentheses:
  // count from the last ')', after which field 3 comes first.
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
}

async function procText(path: string): Promise<string | null> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return null;
  }
}

async function readLock(path: string): Promise<Found> {
  let file;
  try {
    file = await open(path, 'r');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return { kind: 'none' };
    throw error;
  }
  try {
    // One handle for both, so that the mtime and the record are of the same file.
    const { mtimeMs, ino } = await file.stat();
    const holder = parseHolder(await file.readFile('utf8').catch(() => ''));
    return holder ? { kind: 'record', holder, mtimeMs, ino } : { kind: 'unreadable', mtimeMs, ino };
  } finally {
    await file.close();
  }
}

function parseHolder(text: string): LockHolder | undefined {
  let value: Partial<LockHolder>;
  try {
    value = JSON.parse(text) as Partial<LockHolder>;
  } catch {
    return undefined;
  }
  const valid =
    typeof value === 'object' &&
    value !== null &&
    // A pid of 0 or below would signal a process group in process.kill.
    Number.isSafeInteger(value.pid) &&
    (value.pid as number) > 0 &&
    typeof value.host === 'string' &&
    typeof value.token === 'string' &&
    typeof value.since === 'string' &&
    (value.state === 'open' || value.state === 'closing');
  return valid ? (value as LockHolder) : undefined;
}

async function isOurs(path: string, token: string): Promise<boolean> {
  const found = await readLock(path);
  return found.kind === 'record' && found.holder.token === token;
}

async function linkExclusive(from: string, to: string): Promise<boolean> {
  try {
    await link(from, to);
    return true;
  } catch (error) {
    if (errorCode(error) === 'EEXIST') return false;
    throw error;
  }
}

/** Synced before it is linked into place, so that a power cut cannot leave an empty lock. */
async function writeSynced(path: string, holder: LockHolder): Promise<void> {
  const file = await open(path, 'wx');
  try {
    await file.writeFile(`${JSON.stringify(holder)}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
}

function errorCode(error: unknown): string | undefined {
  return (error as { code?: string }).code;
}
