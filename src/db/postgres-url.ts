/** Where libpq looks for the server's socket when neither the URL nor PGHOST names a host (Debian's default). */
export const DEFAULT_SOCKET_DIRECTORY = '/var/run/postgresql';

export interface PostgresTarget {
  /** The URL to hand to postgres.js: always with a host part. */
  url: string;
  /** A socket directory (or host) that overrides the URL's host, when the URL named one libpq's way. */
  host?: string;
  port?: number;
}

/**
 * Read a PostgreSQL URL as libpq does. postgres.js needs a host in the URL itself; libpq also takes
 * an empty one, `postgres://user@/db?host=/var/run/postgresql` (or with PGHOST, or neither: the
 * default socket directory), meaning the Unix socket in that directory. Such a URL becomes one with
 * a placeholder host plus the `host` option, from which postgres.js makes the socket's path
 * (`<dir>/.s.PGSQL.<port>`). A `host` query parameter wins over the URL's host, as in libpq.
 */
export function postgresTarget(url: string, env: NodeJS.ProcessEnv = process.env): PostgresTarget {
  const parts = /^(postgres(?:ql)?:\/\/)([^@/?#]*@)?([^/?#]*)([^?#]*)(\?[^#]*)?$/.exec(url);
  if (!parts) return { url };
  const [, scheme, credentials = '', host = '', path = '', query = ''] = parts;
  const params = new URLSearchParams(query.slice(1));
  const named = params.get('host');
  if (host !== '' && named === null) return { url };
  params.delete('host');
  const port = params.get('port');
  params.delete('port');
  const rest = params.toString();
  return {
    url: `${scheme}${credentials}localhost${path}${rest ? `?${rest}` : ''}`,
    host: named ?? env.PGHOST ?? DEFAULT_SOCKET_DIRECTORY,
    ...(port ? { port: Number(port) } : {}),
  };
}
